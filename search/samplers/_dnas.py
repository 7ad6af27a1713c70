"""`DNASSampler`: differentiable supernet search over architecture and per-stage precision, as an Optuna sampler."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState
from pydantic import Field, InstanceOf, field_validator, model_validator

from jointnas.compression import resolve_device
from jointnas.compression.dnas import TAU_SCHEDULES, DNASConfig, Penalty, train_dnas
from jointnas.devices import LatencyTable
from jointnas.objectives import TaskData
from jointnas.spaces import SpaceConfig, UserInputError, sample_candidate
from jointnas.spaces.families import family_names, get_family
from jointnas.spaces.params import FixedParams
from jointnas.spaces.supernet import CostModel, Supernet

from ._artifact_once import default_artifact_store, train_once
from ._inherit import inherited_start
from ._options import DeviceLatency, RecordsTrials, SamplerOptions
from ._supernet_costs import flash_costs, latency_costs, sram_costs

ATTR_PREFIX = "dnas"
#: Study user attr recording the trained supernet: ``{"key": fingerprint, "artifact_id", "train_s"}``.
ATTR_SUPERNET = f"{ATTR_PREFIX}:supernet"
#: Study and trial user attr: supernet training seconds this study paid (0: reused from the store).
ATTR_TRAIN_HERE = f"{ATTR_PREFIX}:supernet_train_s"


def _distribution(kind: str, *args: Any) -> BaseDistribution:
    """The Optuna distribution of one `FixedParams.asked` record."""
    if kind == "categorical":
        return CategoricalDistribution(args[0])
    low, high, step = args
    return IntDistribution(low, high, step=step) if kind == "int" else FloatDistribution(low, high, step=step)


def _anchor(item: Any, lambda_sram: float) -> dict[str, float]:
    if isinstance(item, int | float) and not isinstance(item, bool):
        lat = flash = float(item)
    else:
        try:
            lat, flash = (float(v) for v in item)
        except (TypeError, ValueError):
            raise ValueError(
                f"lambdas entry {item!r} must be a number or a [lambda_latency, lambda_flash] pair"
            ) from None
    if lat < 0 or flash < 0:
        raise ValueError(f"lambdas entry {item!r} must not be negative")
    return {"latency_ms": lat, "flash_bytes": flash, "sram_bytes": float(lambda_sram)}


class DNASOptions(SamplerOptions):
    """The options of `DNASSampler` (``[sampler] options`` of ``name = "dnas"``); see its docstring."""

    sampler: ClassVar[str] = "dnas"

    lambdas: list[Any] = Field(default_factory=lambda: [0.0, 0.1, 0.3, 1.0, 3.0], min_length=1)
    lambda_sram: float = Field(0.0, ge=0)
    epochs: int = Field(8, ge=1)
    warmup_epochs: int = Field(2, ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-2, gt=0)
    arch_lr: float = Field(1e-1, gt=0)
    tau_start: float = Field(5.0, gt=0)
    tau_end: float = Field(0.5, gt=0)
    schedule: Literal[TAU_SCHEDULES] = "exponential"  # type: ignore[valid-type]
    grad_clip: float = Field(5.0, gt=0)
    weight_sampling: Literal["path", "mixed"] = "path"
    init_bias: dict[str, float] | None = None
    width_mult: float | None = None
    stem_channels: int | None = None
    head_bits: int | None = None
    explore_temperature: float = Field(1.0, gt=0)
    scoring: Literal["full", "inherited"] = "full"
    finetune_epochs: int = Field(2, ge=0)
    fallback: Literal["random", "tpe"] | InstanceOf[BaseSampler] = "random"
    artifact_store: Any = None
    lock_timeout_s: float = Field(3600.0, gt=0)

    @field_validator("lambdas")
    @classmethod
    def _pairs(cls, lambdas: list[Any]) -> list[Any]:
        for item in lambdas:
            _anchor(item, 0.0)
        return lambdas

    @model_validator(mode="after")
    def _warmup(self) -> DNASOptions:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} must be below epochs {self.epochs}")
        return self

    def anchors(self) -> list[dict[str, float]]:
        return [_anchor(item, self.lambda_sram) for item in self.lambdas]

    def train_config(self) -> DNASConfig:
        knobs = (
            *("epochs", "warmup_epochs", "batch_size", "lr", "arch_lr"),
            *("tau_start", "tau_end", "schedule", "grad_clip"),
        )
        kwargs: dict[str, Any] = {k: getattr(self, k) for k in knobs}
        if self.init_bias is not None:
            kwargs["init_bias"] = dict(self.init_bias)
        return DNASConfig(weight_sampling=self.weight_sampling, **kwargs)


class DNASSampler(RecordsTrials, BaseSampler):
    """Differentiable NAS (FBNet / EdMIPS style) over widths, kernel, expansion, depth and per-stage bit-widths.

    On first use the sampler trains a weight-sharing `Supernet` of ``space`` with alternating
    optimization (weights on the training split, architecture logits α on the validation split) and the
    loss ``CE + λ_lat·E[latency]/latency_max + λ_flash·E[Flash]/flash_max (+ λ_sram·E[SRAM])``, with
    latency from the device LUT. One α is trained per entry of ``lambdas`` ("anchors", sharing the
    weights), so one training spans the trade-off. The trained supernet is stored in the study's
    artifact store; other workers load it instead of training (a study user-attr lock elects one
    trainer). Trial ``n`` gets anchor ``n mod len(lambdas)``: in the first pass its most probable
    architecture, later a sample from softmax(α / ``explore_temperature``). Parameters outside the
    supernet (pruning, rank, head bits) come from ``fallback``.

    Example:
        >>> import optuna
        >>> from jointnas.devices import LatencyTable
        >>> from jointnas.objectives import TaskConfig, load_task
        >>> from jointnas.spaces import SpaceConfig, sample_candidate
        >>> space = SpaceConfig(stages=[8], strides=[1], stem_channels=[8], expansion=[2], depth=(1, 1))
        >>> task = load_task(TaskConfig())
        >>> sampler = DNASSampler(space, task=task, table=LatencyTable(None, repeats=3), epochs=1,
        ...                       warmup_epochs=0, lambdas=[0.0, 1.0], seed=0)
        >>> study = optuna.create_study(sampler=sampler)
        >>> def objective(trial):
        ...     c = sample_candidate(trial, space, task.input_shape, task.num_classes)
        ...     sampler.record(trial)  # the sampler's per-trial record into the trial's user attrs
        ...     return c.stages[0].kernel
        >>> study.optimize(objective, n_trials=2)
        >>> sorted(study.trials[0].user_attrs["dnas:lambda"])
        ['flash_bytes', 'latency_ms', 'sram_bytes']

    Args:
        space: the study's space (a family a supernet covers: ``supernet = True``).
        task: the data (train / validation splits are used; never test). In a jointnas study the
            runner supplies it through `set_context`.
        table: the device latency model, a `LatencyTable` or the cycle model (default: an in-memory ORT
            table, measured on demand). In a jointnas study the runner supplies the study's.
        options (`DNASOptions`; the study file's ``[sampler] options``):
        lambdas: one trade-off per anchor: a number (λ for latency and Flash) or ``[λ_lat, λ_flash]``.
        lambda_sram: λ of the peak-SRAM penalty (soft max over layers), for every anchor.
        epochs, warmup_epochs, batch_size, lr, arch_lr, tau_start, tau_end, schedule, grad_clip,
        weight_sampling, init_bias:
            supernet training knobs (`jointnas.compression.dnas.DNASConfig`).
        width_mult, stem_channels: fix the supernet's stage width multiplier / stem (one of the space's);
            default ``None``: both are searched (elastic width: ``s{i}_width`` and ``stem_channels``
            decisions, channel-masked in the mixed forward, priced like the others).
        head_bits: stem/classifier weight bits assumed by the Flash penalty.
        explore_temperature: temperature of later passes' samples from softmax(α).
        scoring: ``"full"`` (default): the jointnas objective trains each proposal from scratch
            (``[pipeline] train_epochs``); ``"inherited"``: it starts from the supernet's weights
            (`Supernet.extract`) and trains ``finetune_epochs`` instead, then compresses as usual.
        finetune_epochs: training epochs of an inherited-weight trial before compression.
        fallback: ``"random"``, ``"tpe"`` or a sampler for parameters outside the supernet.
        artifact_store: a folder path or an Optuna ``ArtifactStore`` (default: the study's artifact
            directory, see `default_artifact_store`).
        lock_timeout_s: a trainer's lock older than this without a stored supernet is taken over.
        seed: seed of the supernet training, the samples and the fallback.
    """

    Options = DNASOptions

    def __init__(
        self,
        space: SpaceConfig | Mapping[str, Any],
        *,
        task: TaskData | None = None,
        table: DeviceLatency | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        self.space = space if isinstance(space, SpaceConfig) else SpaceConfig.model_validate(space)
        if not get_family(self.space.family).supernet:
            covered = ", ".join(repr(n) for n in family_names() if get_family(n).supernet)
            raise UserInputError(
                f"the dnas sampler needs a [space] family a supernet covers ({covered}), not {self.space.family!r}"
            )
        knobs = self.space.compression
        if knobs.granularity == "layer":
            raise UserInputError(
                "the dnas sampler's supernet has one bit-width α per stage; set [space.compression] granularity = "
                '"stage" or use another sampler'
            )
        if "fp16" in (*knobs.weight_bits, *knobs.act_bits):
            raise UserInputError(
                'the dnas sampler\'s supernet has no "fp16" option yet; drop "fp16" from [space.compression] '
                "weight_bits and act_bits, or use another sampler"
            )
        self.options = opts = DNASOptions.parse(options)
        self.anchors = opts.anchors()
        self.train_config = opts.train_config()
        self.width_mult, self.stem_channels = opts.width_mult, opts.stem_channels
        self.head_bits = max(self.space.compression.head_bits) if opts.head_bits is None else opts.head_bits
        self.explore_temperature = opts.explore_temperature
        self.scoring, self.finetune_epochs = opts.scoring, opts.finetune_epochs
        self.seed = 0 if seed is None else int(seed)
        if isinstance(opts.fallback, BaseSampler):
            self.fallback = opts.fallback
        else:
            make = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}[opts.fallback]
            self.fallback = make(seed=seed)
        self.artifact_store = opts.artifact_store
        #: The trial artifacts' directory of the jointnas runner (`set_context`): the supernet's store
        #: when no ``artifact_store`` option is given.
        self.run_artifact_dir: Path | None = None
        self.lock_timeout_s = opts.lock_timeout_s
        #: Where the supernet trains (a ``[pipeline] device`` value; `set_context` gives the study's).
        self.device = "auto"
        self.task = task
        self.table = table
        self._lock = threading.Lock()
        self._net: Supernet | None = None
        self._logits: list[dict[str, torch.Tensor]] | None = None
        self._space_cache: dict[str, BaseDistribution] | None = None
        self._priced: tuple[CostModel, list[Penalty], dict[str, float]] | None = None
        #: The stored supernet's record (`train_once`); ``train_s_here`` is 0 when an earlier study's was reused.
        self.supernet_record: dict[str, Any] = {}
        #: Per-trial record (``dnas:lambda``, ``dnas:anchor``, ``dnas:pass``) by trial number; `record`
        #: writes it into the trial's user attrs.
        self.records: dict[int, dict[str, Any]] = {}

    # ---- context ---------------------------------------------------------------------------------
    def set_context(
        self,
        *,
        task: TaskData,
        table: DeviceLatency | None = None,
        latency_cap_ms: float | None = None,
        artifact_dir: Path | None = None,
        device: str | None = None,
        objectives: Sequence[str] | None = None,
    ) -> None:
        """Give the sampler the study's task data, latency table and ``[pipeline] device`` (where the
        supernet trains) (the jointnas runner calls this).

        ``latency_cap_ms`` (``[constraints] latency_ms``) and ``objectives`` are not used: DNAS prices
        latency and Flash as penalties, weighted by its λ anchors."""
        self.task = task
        if table is not None:
            self.table = table
        self.run_artifact_dir = artifact_dir or self.run_artifact_dir
        self.device = device or self.device

    def _supernet(self) -> Supernet:
        if self._net is None:
            if self.task is None:
                raise UserInputError(
                    "the dnas sampler has no task data; pass task=load_task(...) or run it through a jointnas study"
                )
            with torch.random.fork_rng():
                torch.manual_seed(self.seed)
                self._net = Supernet(
                    self.space,
                    tuple(self.task.input_shape),
                    int(self.task.num_classes),
                    width_mult=self.width_mult,
                    stem_channels=self.stem_channels,
                )
        return self._net

    def fingerprint(self) -> str:
        """Identifies a supernet training (space, data shape, knobs, seed): one artifact per value."""
        net = self._supernet()
        data = {
            "space": self.space.model_dump(mode="json"),
            "input_shape": list(net.input_shape),
            "num_classes": net.num_classes,
            "n_train": int(len(self.task.x_train)),
            "n_val": int(len(self.task.x_val)),
            "anchors": self.anchors,
            "train": {k: v for k, v in vars(self.train_config).items()},
            "width_mult": net.width_mult,
            "stem_channels": net.stem_channels,
            "head_bits": self.head_bits,
            "seed": self.seed,
            # α is trained against the device's costs: another device is another supernet.
            "device": self._device_identity(),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]

    # ---- Optuna sampler API ------------------------------------------------------------------------
    def reseed_rng(self) -> None:
        self.fallback.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._space_cache is None:
            net = self._supernet()
            params = net.params_of(net.largest_choice())
            asked = FixedParams(params)
            sample_candidate(asked, self.space, net.input_shape, net.num_classes)
            self._space_cache = {k: _distribution(*asked.asked[k]) for k in params}
        return dict(self._space_cache)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        net = self._supernet()
        logits = self._ensure_trained(study)
        k = trial.number % len(self.anchors)
        rnd = trial.number // len(self.anchors)
        if rnd == 0:
            choice = net.choice_from_probs({n: torch.softmax(v, 0) for n, v in logits[k].items()})
        else:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + trial.number)
            picked = {}
            for n, v in logits[k].items():
                p = torch.softmax(v / self.explore_temperature, 0)
                picked[n] = net.decision(n).options[int(torch.multinomial(p, 1, generator=gen))]
            choice = net._full(picked)
        params = net.params_of(choice)
        with self._lock:
            self.records[trial.number] = {
                f"{ATTR_PREFIX}:lambda": self.anchors[k],
                f"{ATTR_PREFIX}:anchor": k,
                f"{ATTR_PREFIX}:pass": rnd,
                ATTR_TRAIN_HERE: float(
                    self.supernet_record.get("train_s_here", self.supernet_record.get("train_s", 0))
                ),
            }
        return {name: params[name] for name in search_space if name in params}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.fallback.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.fallback.after_trial(study, trial, state, values)

    # ---- per-trial records -----------------------------------------------------------------------
    def prepare_evaluation(self, trial: optuna.Trial, candidate: Any, pipeline: Any) -> tuple[None, Any, Any]:
        """Hook of the jointnas objective: records the trial (`record`); with ``scoring="inherited"``
        the model starts from the supernet's weights and trains ``finetune_epochs`` (`inherited_start`)."""
        self.record(trial)
        if self.scoring != "inherited" or self._logits is None:
            return None, None, pipeline
        with self._lock:
            model, pipeline = inherited_start(self._supernet(), candidate, pipeline, self.finetune_epochs)
        trial.set_user_attr(f"{ATTR_PREFIX}:scoring", "inherited")
        return None, model, pipeline

    # ---- training, sharing ----------------------------------------------------------------------
    def _ensure_trained(self, study: Study) -> list[dict[str, torch.Tensor]]:
        with self._lock:
            if self._logits is None:
                self._logits = self._train_or_load(study)
            return self._logits

    def _train_or_load(self, study: Study) -> list[dict[str, torch.Tensor]]:
        """Train the supernet here, or load the one another worker of ``study`` trained (`train_once`)."""
        store = default_artifact_store(study, self.artifact_store, self.run_artifact_dir)
        state, record = train_once(
            study,
            ATTR_SUPERNET,
            self.fingerprint(),
            lambda: self._train(study),
            store,
            lock_timeout_s=self.lock_timeout_s,
        )
        self.supernet_record = record
        if record["trained_here"] or record.get("reused"):
            study.set_user_attr(ATTR_TRAIN_HERE, float(record.get("train_s_here", record.get("train_s", 0.0))))
        net = self._supernet()
        net.load_state_dict(state["supernet"])
        net.eval()
        return [{k: v.clone() for k, v in lg.items()} for lg in state["logits"]]

    def _device_identity(self) -> Any:
        """What identifies the device the costs come from: a latency table's device profile and threads
        (workers measuring the same device on demand agree), else the priced costs themselves."""
        if self.table is None:
            self.table = LatencyTable(None)
        profile = getattr(self.table, "profile", None)
        if profile is not None:
            return {
                "model": type(self.table).__name__,
                "device": profile.name,
                "threads": getattr(self.table, "threads", None),
            }
        return self._costs_digest()

    def _costs_digest(self) -> str:
        _, penalties, scales = self._penalties(self._supernet())
        digest = hashlib.sha256(json.dumps(scales, sort_keys=True).encode())
        for pen in penalties:
            digest.update(pen.costs.to(torch.float64).numpy().round(9).tobytes())
        return digest.hexdigest()[:12]

    def _penalties(self, net: Supernet) -> tuple[CostModel, list[Penalty], dict[str, float]]:
        """The cost model and the penalties priced with the study's table (priced once, then cached)."""
        if self._priced is None:
            self._priced = self._price(net)
        return self._priced

    def _price(self, net: Supernet) -> tuple[CostModel, list[Penalty], dict[str, float]]:
        layers = net.choice_layers(head_bits=self.head_bits)
        layer_model = CostModel(layers, net.decisions)
        blocks = net.choice_blocks(head_bits=self.head_bits)
        block_model = CostModel(blocks, net.decisions)
        if self.table is None:
            self.table = LatencyTable(None)
        lat, constant = latency_costs(self.table, blocks)
        lat = lat.float()
        flash = flash_costs(net, self.head_bits)
        sram = sram_costs(net, self.head_bits)
        largest = net.largest_choice()
        scales = {
            "latency_ms": max(block_model.of_choice(lat, largest) + constant, 1e-9),
            "flash_bytes": max(layer_model.of_choice(flash, largest), 1.0),
            "sram_bytes": max(float(layer_model.per_slot(sram, layer_model.one_hot(largest)).max()), 1.0),
        }
        penalties = [
            Penalty("latency_ms", lat, scales["latency_ms"], cost_model=block_model),
            Penalty("flash_bytes", flash, scales["flash_bytes"]),
            Penalty("sram_bytes", sram, scales["sram_bytes"], reduce="max"),
        ]
        return layer_model, penalties, scales

    def _train(self, study: Study) -> tuple[dict[str, Any], dict[str, Any]]:
        """Train the supernet and α of every anchor; record the training in the study's user attrs."""
        net = self._supernet()
        task = self.task
        cost_model, penalties, scales = self._penalties(net)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            result = train_dnas(
                net,
                task.x_train,
                task.y_train,
                task.x_val,
                task.y_val,
                cost_model,
                penalties,
                self.anchors,
                self.train_config,
                seed=self.seed,
                device=resolve_device(self.device),
            )
        study.set_user_attr(f"{ATTR_PREFIX}:train_s", round(result.train_s, 3))
        study.set_user_attr(f"{ATTR_PREFIX}:alpha_entropy", [round(v, 5) for v in result.alpha_entropy])
        study.set_user_attr(f"{ATTR_PREFIX}:val_loss", [round(v, 5) for v in result.val_loss])
        study.set_user_attr(f"{ATTR_PREFIX}:anchors", self.anchors)
        study.set_user_attr(f"{ATTR_PREFIX}:cost_scales", scales)
        return {"supernet": net.state_dict(), "logits": result.logits}, {"train_s": round(result.train_s, 3)}
