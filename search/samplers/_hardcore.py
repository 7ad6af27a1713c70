"""`HardCoReNASSampler`: one-shot supernet + hard latency budgets (Nayman et al., ICML 2021) for Optuna.

Per study, a weight-sharing supernet over the space's block choices (kernel × expansion), depths and
widths is trained once with uniform path sampling (sandwich: plus the largest and smallest path) and
stored as a study artifact that every worker reuses. An additive proxy of the supernet's validation
loss is fitted on sampled sub-networks with inherited weights. Each trial then gets a latency budget
``T`` from a schedule over the device's latency range; block-coordinate Frank-Wolfe over per-stage
choice/depth probabilities minimizes the proxy subject to ``E[latency] ≤ T`` (LUT-priced), and the
argmax sub-network is repaired until its LUT latency is ≤ ``T`` exactly. Compression knobs come from
an inner sampler.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState
from pydantic import Field, InstanceOf, ValidationInfo, field_validator

from jointnas.compression import resolve_device
from jointnas.devices import LatencyTable
from jointnas.objectives import TaskData
from jointnas.spaces import Candidate, SpaceConfig, UserInputError
from jointnas.spaces.params import stage_param

from ._artifact_once import default_artifact_store, train_once
from ._hardcore_fw import ScoreModel, SearchResult, flash_penalized, search_flash_capped, search_macros
from ._hardcore_latency import Arch, LatencyModel, Macro, SpaceChoices, covers
from ._inherit import compute_matched_epochs, inherited_start
from ._options import DeviceLatency, RecordsTrials, SamplerOptions

ATTR_SUPERNET = "hardcore:supernet"
ATTR_BUDGET = "hardcore:budget_ms"
#: Study and trial user attr: supernet training seconds this study paid (0: reused from the store).
ATTR_TRAIN_HERE = "hardcore:supernet_train_s"
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
#: 1/ρ² for the plastic number ρ (the second coordinate of the R2 low-discrepancy sequence): spreads the
#: Flash weights of successive trials over [0, 1) independently of the golden-ratio budgets.
_PLASTIC2 = 0.5698402909980532
#: 1/ρ (the R2 sequence's first coordinate): spreads the Flash budgets of successive trials over [0, 1)
#: beside the golden-ratio latency budgets (min pairwise distance of the first 30 pairs 0.068, vs 0.040
#: with 1/ρ²).
_PLASTIC1 = 0.7548776662466927


#: What each budget option's validator says of a value it refuses.
_BUDGET_ERRORS = {
    "budget_ms": "budget_ms must be a positive number or [low, high]",
    "flash_budget": 'flash_budget must be a positive number of bytes, [low, high], "range" or "auto"',
}


def _as_pair(value: float | list[float] | str | None) -> list[float] | None:
    """A budget option as ``[low, high]``: a number twice, a list as given; None for None or a keyword."""
    if isinstance(value, int | float):
        return [value, value]
    return value if isinstance(value, list) else None


class HardCoReOptions(SamplerOptions):
    """The options of `HardCoReNASSampler` (``[sampler] options`` of ``name = "hardcore"``); see its docstring."""

    sampler: ClassVar[str] = "hardcore"

    budget_ms: float | list[float] | None = None
    schedule: Literal["golden", "sweep"] = "golden"
    spacing: Literal["linear", "log"] = "linear"
    n_budgets: int = Field(10, ge=1)
    width_mult: float | None = None
    stem_channels: int | None = None
    scoring: Literal["inherited", "full"] = "inherited"
    finetune_epochs: int = Field(2, ge=0)
    finetune_budget: Literal["compute", "epochs"] = "compute"
    supernet_epochs: int = Field(20, ge=0)
    supernet_batch_size: int = Field(64, ge=1)
    supernet_lr: float = Field(5e-3, gt=0, le=10)
    sandwich: bool = True
    score_samples: int = Field(48, ge=1)
    fw_iterations: int = Field(30, ge=0)
    macro_top_k: int = Field(3, ge=1)
    flash_weight: float = Field(0.0, ge=0)
    flash_budget: float | list[float] | Literal["range", "auto"] | None = "auto"
    artifact_store: Any = None
    inner_sampler: Literal["random", "tpe"] | InstanceOf[BaseSampler] = "tpe"

    @field_validator("budget_ms", "flash_budget")
    @classmethod
    def _positive_pair(
        cls, value: float | list[float] | str | None, info: ValidationInfo
    ) -> float | list[float] | str | None:
        """Both budget options: a positive number or ``[low, high]`` of positive numbers (or a keyword)."""
        bounds = _as_pair(value)
        if bounds is not None and (len(bounds) != 2 or not all(b > 0 for b in bounds)):
            raise ValueError(_BUDGET_ERRORS[info.field_name])
        return value

    def budget_bounds(self) -> tuple[float, float] | None:
        bounds = _as_pair(self.budget_ms)
        return None if bounds is None else (float(min(bounds)), float(max(bounds)))


class HardCoReNASSampler(RecordsTrials, BaseSampler):
    """HardCoReNAS as an Optuna sampler: each trial is the best sub-network under a hard LUT budget.

    Architecture parameters (``stem_channels``, ``n_stages``, ``s{i}_width``, ``s{i}_kernel``,
    ``s{i}_expansion``, ``s{i}_depth``, as `jointnas.spaces.sample_candidate` suggests them) come from
    `sample_relative`; every other parameter (compression knobs) from ``inner_sampler``.

    Example:
        >>> import optuna
        >>> from jointnas.devices import LatencyTable
        >>> from jointnas.objectives import TaskConfig, load_task
        >>> from jointnas.spaces import SpaceConfig, sample_candidate
        >>> space = SpaceConfig(stages=[8], strides=[1], kernel=[3], expansion=[2], stem_channels=[8])
        >>> task = load_task(TaskConfig())
        >>> sampler = HardCoReNASSampler(space, task=task, table=LatencyTable(None, repeats=3),
        ...                              supernet_epochs=1, score_samples=4, seed=0)
        >>> study = optuna.create_study(sampler=sampler)
        >>> def objective(trial):
        ...     c = sample_candidate(trial, space, task.input_shape, task.num_classes)
        ...     sampler.record(trial)  # the sampler's per-trial record into the trial's user attrs
        ...     return c.stages[0].depth
        >>> study.optimize(objective, n_trials=2)
        >>> all(ATTR_BUDGET in t.user_attrs for t in study.trials)
        True

    Args:
        space: the ``[space]`` (a family `covers` accepts: one with a supernet, ``cnn`` or ``cnn1d``).
        task: the data (train split trains the supernet, validation split fits the proxy); in a jointnas
            study the runner gives it through `set_context`.
        table: the device `LatencyTable` that prices sub-networks (share the objective's so priced and
            recorded latencies agree exactly). ``None``: given by `set_context`, else an in-memory table
            of this machine (`LatencyTable` defaults).
        seed: seeds the supernet, the proxy sample, the search and the inner sampler.
        options (`HardCoReOptions`; the study file's ``[sampler] options``):
        budget_ms: a fixed latency budget (ms) for every trial, or ``[low, high]`` for the schedule.
            ``None``: the space's LUT latency range, capped by the study's ``[constraints] latency_ms``.
        schedule: ``"golden"`` spreads trial ``k``'s budget over the range by the golden-ratio sequence
            (any prefix covers it evenly); ``"sweep"`` walks it low → high in ``n_budgets`` steps.
        n_budgets: steps of the ``"sweep"`` schedule.
        spacing: ``"linear"`` spreads the schedule evenly in ms; ``"log"`` evenly in log-latency (equal
            ratios: as many budgets between 0.02 and 0.04 ms as between 0.2 and 0.4 ms).
        width_mult: fix every stage's width multiplier (one of the space's); default ``None``: the
            supernet is elastic in width (per stage) and stem, and every macro (stem × stage count ×
            per-stage widths) is searched: each macro has its own exact latency model, a greedy screen
            ranks the feasible macros by the proxy and Frank-Wolfe runs on the best ``macro_top_k``.
        stem_channels: fix the stem width (one of the space's); default ``None``: searched.
        scoring: ``"inherited"``: the jointnas objective starts each trial from the supernet's weights
            and trains ``finetune_epochs`` instead of ``[pipeline] train_epochs`` (then compresses and
            fine-tunes as usual); ``"full"``: the normal compress-and-finetune objective.
        finetune_epochs: training epochs of an inherited-weight trial before compression (of the
            largest sub-network with ``finetune_budget = "compute"``).
        finetune_budget: ``"compute"`` (default): an inherited-weight trial spends the compute of
            ``finetune_epochs`` epochs of the space's slowest sub-network, so one ``k`` times faster (LUT
            latency) trains ``k`` times as many epochs, at most ``[pipeline] train_epochs``
            (`compute_matched_epochs`; weight sharing costs the smallest sub-networks the most accuracy,
            and their epochs are the cheapest); ``"epochs"``: every trial trains ``finetune_epochs``.
        supernet_epochs: epochs of one-shot supernet training (one path per step).
        supernet_batch_size: samples per step.
        supernet_lr: AdamW learning rate of supernet training.
        sandwich: add the largest and smallest path to each step's uniform path (sandwich rule).
        score_samples: sub-networks evaluated with inherited weights to fit the proxy.
        fw_iterations: Frank-Wolfe iterations per macro and budget.
        macro_top_k: macros (best by the greedy screen) that get the Frank-Wolfe search per budget.
        flash_weight: ``w > 0`` makes the search Flash-aware: trial ``k`` minimizes proxy loss
            ``+ w_k · Flash / Flash_max`` under its latency budget (Flash of the float sub-network,
            `flash_models`), ``w_k = w · frac(k / ρ²)`` spread over ``[0, w)`` beside the budgets;
            ``0`` (default): latency only, as in the paper.
        flash_budget: a hard Flash budget (bytes of the float sub-network, `flash_models`) beside the
            latency budget: a number for every trial, ``[low, high]`` or ``"range"`` (the space's
            smallest … largest sub-network) for a schedule, trial ``k`` at fraction ``frac(0.5 + k/ρ)``
            under ``spacing`` (ρ the plastic number: with the golden-ratio latency budgets the pairs
            cover the plane); the search penalizes Flash with the smallest weight that fits
            (`search_flash_capped`). A scheduled budget below every sub-network within the trial's
            latency budget is raised to the smallest such Flash; a fixed number is hard (the trial
            fails). ``"auto"`` (default): ``"range"`` when the study's objectives hold ``flash_bytes``
            (`set_context`), else ``None``: latency only, as in the paper.
        artifact_store: directory or Optuna ArtifactStore for the supernet weights; default the
            study's artifact directory (see `default_artifact_store`).
        inner_sampler: sampler of the parameters outside the architecture (compression knobs):
            ``"tpe"`` (default; multivariate TPE, seeded with ``seed``), ``"random"`` or any Optuna sampler.
    """

    Options = HardCoReOptions

    def __init__(
        self,
        space: SpaceConfig,
        *,
        task: TaskData | None = None,
        table: DeviceLatency | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        opts = HardCoReOptions.parse(options)
        SpaceChoices.from_space(space)  # refuses a space it cannot cover now, not at the first trial
        self.space, self.task, self.table = space, task, table
        self.seed = 0 if seed is None else int(seed)
        self.options = opts
        self.budget_bounds: tuple[float, float] | None = opts.budget_bounds()
        self.schedule, self.n_budgets, self.scoring = opts.schedule, opts.n_budgets, opts.scoring
        self.spacing = opts.spacing
        self.width_mult, self.stem_channels = opts.width_mult, opts.stem_channels
        self.finetune_epochs, self.finetune_budget = opts.finetune_epochs, opts.finetune_budget
        self.supernet_epochs, self.supernet_batch_size = opts.supernet_epochs, opts.supernet_batch_size
        self.supernet_lr, self.sandwich = opts.supernet_lr, opts.sandwich
        self.score_samples, self.fw_iterations = opts.score_samples, opts.fw_iterations
        self.macro_top_k, self.flash_weight = opts.macro_top_k, opts.flash_weight
        self.artifact_store = opts.artifact_store
        #: The trial artifacts' directory of the jointnas runner (`set_context`): the supernet's store
        #: when no ``artifact_store`` option is given.
        self.run_artifact_dir: Path | None = None
        self.latency_cap_ms: float | None = None
        #: The study's ``[objectives] metrics`` (`set_context`): ``flash_budget = "auto"`` reads them.
        self.objectives: tuple[str, ...] = ()
        #: Where the supernet trains (a ``[pipeline] device`` value; `set_context` gives the study's).
        self.device = "auto"
        if isinstance(opts.inner_sampler, BaseSampler):
            self._inner = opts.inner_sampler
        elif opts.inner_sampler == "tpe":
            self._inner = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        else:
            self._inner = RandomSampler(seed=seed)
        self._lock = threading.RLock()
        self._ready = False
        self.choices: SpaceChoices | None = None
        self.macros: list[Macro] = []
        self.models: list[LatencyModel] = []
        #: Flash bytes per macro in `LatencyModel`'s layout (`flash_models`), with ``flash_weight`` > 0.
        self.flash: list[LatencyModel] = []
        self.scores: ScoreModel | None = None
        self.supernet: Any = None
        self.supernet_record: dict[str, Any] = {}
        self.results: dict[int, SearchResult] = {}
        #: Per-trial record (``hardcore:budget_ms``, ``hardcore:lut_latency_ms``, …) by trial number;
        #: `record` writes it into the trial's user attrs.
        self.records: dict[int, dict[str, Any]] = {}
        self.completed: list[int] = []

    # ----------------------------------------------------------------------------------- context
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
        """Give the sampler the study's data, device table, ``[constraints] latency_ms``, ``[pipeline]
        device`` (where the supernet trains) and ``[objectives] metrics`` (jointnas runs)."""
        with self._lock:
            self.objectives = tuple(objectives) if objectives is not None else self.objectives
            self.device = device or self.device
            self.task = task or self.task
            self.table = table or self.table
            self.latency_cap_ms = latency_cap_ms if latency_cap_ms is not None else self.latency_cap_ms
            self.run_artifact_dir = artifact_dir or self.run_artifact_dir

    def _ensure_ready(self, study: Study) -> None:
        with self._lock:
            if self._ready:
                return
            if self.task is None:
                raise UserInputError(
                    "sampler 'hardcore' has no task data; pass task=load_task(...) or run it through a jointnas study"
                )
            if self.table is None:
                self.table = LatencyTable(None)  # an in-memory table of this machine, measured on demand
            self.choices = SpaceChoices.from_space(self.space)
            self.macros = self._macros()
            self._prepare_supernet(study)
            self._ready = True

    def _macros(self) -> list[Macro]:
        """Every macro searched: all stems × stage counts × per-stage widths, or those the options fix."""
        assert self.space is not None and self.choices is not None
        width, stem = self.width_mult, self.stem_channels
        if (width is not None and width not in self.space.width_mult) or (
            stem is not None and stem not in self.space.stem_channels
        ):
            raise UserInputError(
                f"sampler 'hardcore': width_mult={width} / stem_channels={stem} must be among the space's "
                f"width_mult {self.space.width_mult} / stem_channels {self.space.stem_channels}"
            )
        return self.choices.macros(width, stem)

    def _supernet_key(self) -> str:
        assert self.space is not None and self.task is not None
        settings = {
            "space": self.space.model_dump(mode="json"),
            "input_shape": list(self.task.input_shape),
            "num_classes": self.task.num_classes,
            "task": self.task.name,
            "epochs": self.supernet_epochs,
            "batch_size": self.supernet_batch_size,
            "lr": self.supernet_lr,
            "sandwich": self.sandwich,
            "seed": self.seed,
            "width_mult": self.width_mult,
            "stem_channels": self.stem_channels,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def _prepare_supernet(self, study: Study) -> None:
        from . import _hardcore_supernet as sn

        assert self.choices is not None and self.task is not None and self.table is not None
        task, choices = self.task, self.choices
        fixed = {"width_mult": self.width_mult, "stem_channels": self.stem_channels}

        def train() -> tuple[dict[str, Any], dict[str, Any]]:
            net = sn.build_supernet(choices, task.input_shape, task.num_classes, self.seed, **fixed)
            info = sn.train_supernet(
                net,
                task.x_train,
                task.y_train,
                epochs=self.supernet_epochs,
                batch_size=self.supernet_batch_size,
                lr=self.supernet_lr,
                sandwich=self.sandwich,
                seed=self.seed,
                device=resolve_device(self.device),
            )
            return net.state_dict(), info

        store = default_artifact_store(study, self.artifact_store, self.run_artifact_dir)
        state, record = train_once(study, ATTR_SUPERNET, self._supernet_key(), train, store)
        net = sn.build_supernet(choices, task.input_shape, task.num_classes, **fixed)
        net.load_state_dict(state)
        net.eval()
        self.supernet, self.supernet_record = net, record
        if record["trained_here"] or record.get("reused"):
            study.set_user_attr(ATTR_TRAIN_HERE, self._train_here())
        self.models = sn.latency_models(net, choices, self.macros, self.table)
        flash_aware = self.flash_weight > 0 or self.flash_budget() is not None
        self.flash = sn.flash_models(net, choices, self.macros) if flash_aware else []
        # The proxy: validation loss of sampled sub-networks with inherited weights, fitted additively.
        rng = np.random.default_rng([self.seed, 2])
        archs = [sn.random_arch(choices, self.macros, rng) for _ in range(self.score_samples)]
        losses = sn.path_losses(net, choices, archs, task.x_val, task.y_val)
        self.scores = ScoreModel.fit(choices, archs, losses)

    def _train_here(self) -> float:
        """Supernet training seconds of this study (0 when an earlier study's supernet was reused)."""
        rec = self.supernet_record
        return float(rec.get("train_s_here", rec.get("train_s", 0.0)))

    # ------------------------------------------------------------------------------- budgets
    def latency_range_ms(self) -> tuple[float, float]:
        """Smallest and largest LUT latency (ms) of the searched sub-networks."""
        return min(m.min_ms for m in self.models), max(m.max_ms for m in self.models)

    def budget_for(self, number: int) -> float:
        """The latency budget (ms) of trial ``number`` under the schedule."""
        low, high = self.budget_bounds or self.latency_range_ms()
        if self.budget_bounds is None and self.latency_cap_ms is not None:
            high = min(high, float(self.latency_cap_ms))
            low = min(low, high)
        if self.schedule == "sweep":
            frac = (number % self.n_budgets) / max(1, self.n_budgets - 1)
        else:
            frac = (0.5 + number * _GOLDEN) % 1.0
        return self._spread(low, high, frac)

    def _spread(self, low: float, high: float, frac: float) -> float:
        """The point at fraction ``frac`` of ``[low, high]`` under ``spacing`` (both schedules)."""
        return low * (high / low) ** frac if self.spacing == "log" else low + (high - low) * frac

    def flash_budget(self) -> float | list[float] | str | None:
        """The ``flash_budget`` option with ``"auto"`` resolved by the study's objectives."""
        value = self.options.flash_budget
        if value == "auto":
            return "range" if "flash_bytes" in self.objectives else None
        return value

    def flash_budget_for(self, number: int) -> float | None:
        """The Flash budget (bytes) of trial ``number`` (None without a Flash budget)."""
        value = self.flash_budget()
        if value is None:
            return None
        bounds = _as_pair(value) or [min(f.min_ms for f in self.flash), max(f.max_ms for f in self.flash)]
        return self._spread(float(min(bounds)), float(max(bounds)), (0.5 + number * _PLASTIC1) % 1.0)

    def flash_weight_for(self, number: int) -> float:
        """The Flash weight ``w_k`` of trial ``number`` (0 without ``flash_weight``)."""
        return self.flash_weight * ((number * _PLASTIC2) % 1.0)

    def _flash_scores(self, weight: float) -> list[ScoreModel] | None:
        """Per macro, the proxy plus ``weight`` × Flash / the largest sub-network's Flash (None at weight 0)."""
        if not self.flash:
            return None
        assert self.scores is not None
        return flash_penalized(self.scores, self.flash, weight)

    def _search(self, number: int, budget: float) -> tuple[SearchResult, dict[str, Any]]:
        """Trial ``number``'s search under its latency budget (and Flash budget), with its Flash record."""
        assert self.scores is not None
        weight, cap = self.flash_weight_for(number), self.flash_budget_for(number)
        search: dict[str, Any] = {
            "iterations": self.fw_iterations,
            "seed": self.seed + number,
            "top_k": self.macro_top_k,
        }
        if cap is None:
            result = search_macros(self.models, self.scores, budget, macro_scores=self._flash_scores(weight), **search)
        else:
            scheduled = not isinstance(self.flash_budget(), int | float)  # a fixed number stays hard
            result, weight = search_flash_capped(
                self.models, self.flash, self.scores, budget, cap, weight=weight, raise_cap=scheduled, **search
            )
        record: dict[str, Any] = {}
        if self.flash:
            record["hardcore:flash_weight"] = weight
        if cap is not None:
            record["hardcore:flash_budget_bytes"] = cap
        if self.flash and result.arch is not None:
            size = self.flash[self.macros.index(result.arch.macro)]
            record["hardcore:flash_bytes"] = size.arch_ms(result.arch.choices, result.arch.depths)
            if cap is not None and record["hardcore:flash_bytes"] > cap:
                record["hardcore:flash_budget_raised_to"] = record["hardcore:flash_bytes"]
        return result, record

    # ---------------------------------------------------------------------------- sampler API
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return arch_distributions(self.space)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        self._ensure_ready(study)
        assert self.choices is not None and self.scores is not None
        budget = self.budget_for(trial.number)
        t0 = time.perf_counter()
        result, flash_record = self._search(trial.number, budget)
        record: dict[str, Any] = {ATTR_BUDGET: budget, "hardcore:search_s": time.perf_counter() - t0, **flash_record}
        record[ATTR_TRAIN_HERE] = self._train_here()
        if result.arch is None:
            # Still propose a valid point (the fastest sub-network) so plain Optuna code runs; the jointnas
            # objective fails the trial with this reason (see `prepare_evaluation`).
            record["hardcore:infeasible"] = result.infeasible_reason
            fastest = min(self.models, key=lambda m: m.min_ms)
            arch = Arch(fastest.macro, *fastest.min_arch())
        else:
            arch = result.arch
            record["hardcore:lut_latency_ms"] = result.latency_ms
            record["hardcore:proxy_loss"] = result.proxy_loss
            record["hardcore:expected_ms"] = result.expected_ms
            record["hardcore:repair_moves"] = result.repair_moves
        with self._lock:
            self.results[trial.number] = result
            self.records[trial.number] = record
        params = self.choices.arch_params(arch)
        return {k: v for k, v in params.items() if k in search_space}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        with self._lock:
            self.completed.append(trial.number)
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()

    # --------------------------------------------------------------------- objective hooks
    def prepare_evaluation(
        self, trial: optuna.Trial, candidate: Candidate, pipeline: Any
    ) -> tuple[str | None, Any, Any]:
        """Hook of the jointnas objective: ``(fail_reason, initial_model, pipeline)`` for ``candidate``.

        An infeasible budget gives its reason (the trial fails with it). With ``scoring="inherited"`` the
        model starts from the supernet's weights and the pipeline trains ``finetune_epochs`` (scaled by
        ``finetune_budget``) before compressing; with ``"full"`` the pipeline is unchanged. Records the
        trial first (`record`).
        """
        self.record(trial)
        with self._lock:
            result = self.results.get(trial.number)
        if result is not None and result.infeasible_reason:
            return result.infeasible_reason, None, pipeline
        if self.scoring == "full" or self.supernet is None:
            return None, None, pipeline
        epochs = self.finetune_epochs
        if self.finetune_budget == "compute" and result is not None and result.arch is not None:
            slowest = self.latency_range_ms()[1]
            epochs = compute_matched_epochs(epochs, pipeline.train_epochs, result.latency_ms, slowest)
        with self._lock:
            model, pipeline = inherited_start(self.supernet, candidate, pipeline, epochs)
        trial.set_user_attr("hardcore:scoring", "inherited")
        trial.set_user_attr("hardcore:finetune_epochs", epochs)
        return None, model, pipeline


def arch_distributions(space: SpaceConfig) -> dict[str, BaseDistribution]:
    """Distributions of the architecture parameters `sample_candidate` suggests for a CNN ``space``."""
    out: dict[str, BaseDistribution] = {}
    if not covers(space.family):
        return out

    def cat(name: str, values: list[Any]) -> None:
        if len(values) > 1:
            out[name] = CategoricalDistribution(list(values))

    cat("stem_channels", list(space.stem_channels))
    if space.min_stages < len(space.stages):
        out["n_stages"] = IntDistribution(space.min_stages, len(space.stages))
    for i in range(len(space.stages)):
        cat(stage_param(i, "width"), list(space.width_mult))
        if space.depth[0] < space.depth[1]:
            out[stage_param(i, "depth")] = IntDistribution(*space.depth)
        cat(stage_param(i, "kernel"), list(space.kernel))
        cat(stage_param(i, "expansion"), list(space.expansion))
    return out
