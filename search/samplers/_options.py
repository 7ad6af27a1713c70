"""Sampler options validated declaratively, with the study file's message style.

Each jointnas sampler declares its options as a pydantic model (`SamplerOptions` subclasses); Optuna's
own samplers get one built from their constructor's signature (`signature_options`), so a wrong type
(``multivariate = 7``) is refused with one line naming the option before any study is created.
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import optuna
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from jointnas.devices import CycleModel, LatencyTable
from jointnas.spaces import UserInputError

from ..config import error_message

DeviceLatency = LatencyTable | CycleModel
"""What prices a supernet sampler's latency: a device's block table, or a microcontroller's cycle model."""


class SamplerOptions(BaseModel):
    """A sampler's options: unknown keys and bad values are one-line `UserInputError`s (`parse`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)
    sampler: ClassVar[str] = ""

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> Self:
        """Validate ``options``; the first error becomes ``sampler 'name': options.key: problem (got value)``."""
        return _validate(cls, cls.sampler, options)


def _validate(model: type[BaseModel], sampler: str, options: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        # Union members add their type to the location (``fallback.literal['random','tpe']``): not a key.
        key = ".".join(str(p) for p in err["loc"] if isinstance(p, int) or str(p).isidentifier())
        if err["type"] == "extra_forbidden":
            raise UserInputError(
                f"sampler {sampler!r} has no option {key!r}; options: {', '.join(sorted(model.model_fields))}"
            ) from None
        where = f"options.{key}" if key else "options"
        raise UserInputError(f"sampler {sampler!r}: {where}: {error_message(err)}") from None


_NAMES = {name: getattr(collections.abc, name) for name in ("Callable", "Container", "Mapping", "Sequence")}
_NAMES.update({name: getattr(typing, name) for name in ("Any", "Literal", "Optional", "Union")})


def _annotation(cls: type, annotation: Any) -> Any:
    """A parameter's annotation as a type (``Any`` when its string form names what is not importable)."""
    if not isinstance(annotation, str):
        return Any if annotation is inspect.Parameter.empty else annotation
    try:
        return eval(annotation, {**_NAMES, **vars(sys.modules[cls.__module__])})  # noqa: S307 - the library's own annotation
    except Exception:
        return Any


def signature_options(cls: type, sampler: str, options: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    """Check ``options`` against ``cls``'s constructor (names and types, strictly); ``fixed`` ones are not options."""
    fields: dict[str, Any] = {}
    for name, p in inspect.signature(cls).parameters.items():
        if name in fixed or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        fields[name] = (_annotation(cls, p.annotation), None if p.default is p.empty else p.default)
    config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)
    _validate(create_model(f"{cls.__name__}Options", __config__=config, **fields), sampler, options)


class RecordsTrials:
    """Mixin of the supernet samplers: a per-trial record (``records``, by trial number) that `record`
    writes into the trial's user attrs.

    A sampler sees only a `FrozenTrial`, and Optuna gives it no public way to write one, so the
    objective calls `record` (the jointnas objective does, through ``prepare_evaluation``)."""

    records: dict[int, dict[str, Any]]
    _lock: Any

    def record(self, trial: optuna.Trial) -> None:
        """Write this sampler's record of ``trial`` into the trial's user attrs."""
        with self._lock:
            attrs = dict(self.records.get(trial.number, {}))
        for key, value in attrs.items():
            trial.set_user_attr(key, value)


__all__ = ["DeviceLatency", "RecordsTrials", "SamplerOptions", "signature_options"]
