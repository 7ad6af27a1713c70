"""The Optuna objective: trial → candidate → compress-and-finetune → objective values + user attrs."""

from __future__ import annotations

import json
import math
from typing import Any

import optuna
import torch

from jointnas.compression import TrainingDivergedError
from jointnas.devices import LatencyTable
from jointnas.objectives import Evaluation, TaskData, evaluate_candidate
from jointnas.spaces import UserInputError, sample_candidate

from .budget import interrupt_reason
from .config import StudyConfig
from .memory_filter import RestrictedChoices, SpaceFilter, filter_space, memory_limits


class TrialFailed(Exception):
    """A trial that cannot produce values (diverged, out of memory); its reason is in user attrs."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return json.loads(json.dumps(value, default=str))


class Objective:
    """Callable objective of a jointnas study.

    Each trial trains with seed ``study.seed + trial.number``, so a trial's values depend only on its
    parameters and number.
    """

    def __init__(self, config: StudyConfig, task: TaskData, table: LatencyTable) -> None:
        self.config = config
        self.task = task
        self.table = table
        self.bounds = list(config.constraints.bounds()) + [f"fits:{n}" for n in config.constraints.fits]
        profile = getattr(table, "profile", None)
        #: The device's weight bit-widths (`DeviceProfile.supported_weight_bits`): plan validation refuses others.
        self.supported_weight_bits = None if profile is None else profile.supported_weight_bits
        #: The board every trial is built and run on (``[device] verify = true``), else ``None``.
        self.verify = profile if config.device.verify else None
        #: The memory filter of the space's precision options (`jointnas.search.memory_filter`); ``None``
        #: without a memory limit. Trials are asked only the options it keeps.
        self.space_filter: SpaceFilter | None = None
        self.allowed: dict[str, list[Any]] = {}
        if memory_limits(config, profile) != (None, None):
            self.space_filter = filter_space(config, task.input_shape, task.num_classes, profile)
            self.allowed = self.space_filter.allowed(config.space.compression)
        #: The last successful evaluation (its ``model`` is exported as the trial's ONNX artifact).
        self.last_evaluation: Evaluation | None = None

    def __call__(self, trial: optuna.Trial) -> list[float]:
        cfg = self.config
        # Samplers that propose their own parameters (the supernet ones, with `set_context`) keep the full
        # choices: a narrower distribution than the one they propose from would be refused by Optuna.
        own = callable(getattr(trial.study.sampler, "set_context", None))
        suggester = RestrictedChoices(trial, self.allowed) if self.allowed and not own else trial
        candidate = sample_candidate(suggester, cfg.space, self.task.input_shape, self.task.num_classes)
        seed = cfg.study.seed + trial.number
        trial.set_user_attr("seed", seed)
        # Training numerics depend on torch's intra-op thread count: record it so export can retrain alike.
        trial.set_user_attr("torch_threads", torch.get_num_threads())
        pipeline, initial_model = cfg.pipeline, None
        prepare = getattr(trial.study.sampler, "prepare_evaluation", None)
        if prepare is not None:  # supernet samplers: infeasible budgets, inherited weights
            reason, initial_model, pipeline = prepare(trial, candidate, cfg.pipeline)
            if reason:
                trial.set_user_attr("fail_reason", reason)
                raise TrialFailed(reason)
        try:
            ev = evaluate_candidate(
                candidate,
                self.task,
                pipeline,
                self.table,
                cfg.objectives,
                cfg.constraints,
                seed=seed,
                supported_weight_bits=self.supported_weight_bits,
                initial_model=initial_model,
                verify=self.verify,
            )
        except UserInputError as exc:  # a plan the device cannot run (validate_plan, before any training)
            trial.set_user_attr("fail_reason", f"plan refused: {exc}")
            raise TrialFailed(str(exc)) from None
        except TrainingDivergedError as exc:
            trial.set_user_attr("fail_reason", f"diverged: {exc}")
            raise TrialFailed(str(exc)) from None
        except (torch.OutOfMemoryError, MemoryError) as exc:
            trial.set_user_attr("fail_reason", f"out of memory: {str(exc).splitlines()[0] if str(exc) else ''}")
            raise TrialFailed("out of memory") from None
        except KeyboardInterrupt as exc:
            trial.set_user_attr("fail_reason", interrupt_reason(exc))
            raise
        self.last_evaluation = ev
        for key, value in ev.attrs.items():
            trial.set_user_attr(key, _jsonable(value))
        for key in self.bounds:
            # Optuna >= 5 stores constraints on the trial; samplers and `best_trials` read them there.
            trial.set_constraint(key, ev.violations[key])
        return [ev.values[m] for m in cfg.objectives.metrics]
