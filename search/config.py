"""The study file: one TOML document that fully describes a study, validated at the boundary.

Every error is one line naming the key, the bad value and what is allowed; unknown keys name the
closest valid key. Validation happens before any storage is touched.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jointnas.compression import PipelineConfig
from jointnas.devices import DeviceConfig
from jointnas.objectives import ConstraintsConfig, ObjectivesConfig, TaskConfig
from jointnas.spaces import SpaceConfig, UserInputError

from .requirements import RequirementsConfig

SAMPLER_NAMES = ("tpe", "nsga2", "random", "grid", "gp", "dnas", "hardcore")

# Keys that may change between runs of one study without making it a different study.
RUNTIME_KEYS = ("study.storage", "study.artifact_dir", "budget")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySection(_Section):
    """``[study]``: name, storage URL (default: an SQLite file next to the config) and seed."""

    name: str = Field("jointnas", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    storage: str | None = None
    #: Directory of the trial artifacts (ONNX model, JSON summary); default ``<name>-artifacts`` next
    #: to the SQLite/journal file or the config. A runtime key: not part of the config hash.
    artifact_dir: str | None = None
    seed: int = Field(0, ge=0, le=2**31 - 1)


class SamplerSection(_Section):
    """``[sampler]``: a sampler by name and keyword options for its constructor."""

    name: Literal[SAMPLER_NAMES] = "nsga2"  # type: ignore[valid-type]
    options: dict[str, Any] = Field(default_factory=dict)


class BudgetSection(_Section):
    """``[budget]``: COMPLETE trials to reach and an optional wall-clock limit in seconds."""

    n_trials: int = Field(30, ge=1, le=1_000_000)
    timeout: float | None = Field(None, gt=0)


class StudyConfig(_Section):
    """A whole study file."""

    study: StudySection = Field(default_factory=StudySection)
    task: TaskConfig = Field(default_factory=TaskConfig)
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    objectives: ObjectivesConfig = Field(default_factory=ObjectivesConfig)
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig)
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    sampler: SamplerSection = Field(default_factory=SamplerSection)
    budget: BudgetSection = Field(default_factory=BudgetSection)
    requirements: RequirementsConfig | None = None

    def canonical(self) -> dict[str, Any]:
        """The config as JSON-able data, without the keys that may change between runs."""
        data = json.loads(self.model_dump_json())
        data["study"].pop("storage", None)
        data["study"].pop("artifact_dir", None)
        data.pop("budget", None)
        # Where trials compute is no part of what the study is (a GPU and a CPU worker may share it),
        # and configs from before the key keep their hash.
        data["pipeline"].pop("device", None)
        if data.get("requirements") is None:
            # Absent section: leave the canonical form (and hash) of configs without it unchanged.
            data.pop("requirements", None)
        for path, key, default in _LATER_KEYS:
            node = data
            for part in path:
                node = node[part]
            if node.get(key) == default:
                node.pop(key)
        return data

    def config_hash(self) -> str:
        """SHA-256 of `canonical` (sorted keys): what identifies the study's definition."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


_LATER_KEYS = (
    (("space", "compression"), "granularity", "stage"),
    (("space", "compression"), "memory_threshold", None),
    (("pipeline",), "sparsity_criterion", "magnitude"),
    (("pipeline",), "sparsity_layers", "all"),
    (("device",), "verify", False),
)
"""Keys added after studies were stored (path, key, default): at their defaults they are left out of the
canonical form, so the hash of a study made before them is unchanged and it resumes."""


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        # An optional section (``Model | None``) names its model among the union's members.
        ann = next((a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)), ann)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line for the first error: the dotted key, the problem and what is allowed."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        parent = _model_at(StudyConfig, loc[:-1])
        valid = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.4)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
        where = f"[{'.'.join(str(p) for p in loc[:-1])}]" if loc[:-1] else "top level"
        return f"{source}: unknown key {loc[-1]!r} in {where}; {hint}"
    return f"{source}: {key or 'config'}: {error_message(err)}"


def error_message(err: Any) -> str:
    """A pydantic error (one of ``exc.errors()``) as ``problem (got value)``, lower-case first."""
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    msg = msg[0].lower() + msg[1:] if msg else msg
    got = err.get("input")
    shown = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
    return f"{msg}{shown}"


def parse_config(data: dict[str, Any], source: str = "config") -> StudyConfig:
    """Validate a study config given as data; raise `UserInputError` with a one-line message."""
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(format_validation_error(exc, source)) from None


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a TOML study file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise UserInputError(f"config file {p} does not exist; check the path") from None
    except OSError as exc:
        raise UserInputError(f"config file {p} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{p}: not valid TOML: {exc}") from None
    return parse_config(data, str(p))


def apply_overrides(config: StudyConfig, **overrides: Any) -> StudyConfig:
    """Return ``config`` with dotted-key overrides (``{"study.seed": 3}``) applied and re-validated."""
    data = json.loads(config.model_dump_json())
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, key = dotted.split(".")
        data[section][key] = value
    return parse_config(data, "command line")


def diff_configs(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two canonical configs, with both values."""
    out: list[str] = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff_configs(a, b, name + "."))
        elif a != b:
            out.append(f"{name}: study has {a!r}, config has {b!r}")
    return out
