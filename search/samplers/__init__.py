"""Samplers by name: Optuna's built-ins (NSGA-II made safe for many workers, `_nsga2.py`) and the supernet
samplers, with options from the study file."""

from __future__ import annotations

import inspect
from typing import Any

import optuna

from jointnas.spaces import SpaceConfig, UserInputError, grid_search_space

from ._dnas import DNASSampler
from ._hardcore import HardCoReNASSampler
from ._nsga2 import NSGAIISampler
from ._options import SamplerOptions, signature_options


def _construct(cls: type, name: str, options: dict[str, Any], **fixed: Any) -> optuna.samplers.BaseSampler:
    """``cls(**fixed, **options)`` once ``options`` pass its declared options (`signature_options` for
    Optuna's samplers, the sampler's `SamplerOptions` model for jointnas's)."""
    model = getattr(cls, "Options", None)
    if isinstance(model, type) and issubclass(model, SamplerOptions):
        model.parse(options)
    else:
        signature_options(cls, name, options, fixed)
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in fixed.items() if k in params}
    try:
        return cls(**kwargs, **options)
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"sampler {name!r}: bad options {options}: {exc}") from None


def make_sampler(
    name: str,
    options: dict[str, Any],
    *,
    seed: int,
    space: SpaceConfig,
) -> optuna.samplers.BaseSampler:
    """Build the sampler ``name`` (tpe, nsga2, random, grid, gp, dnas) with ``options``.

    Constraints reach the samplers that use them (TPE, NSGA-II, GP) through the values the objective
    records with ``trial.set_constraint`` (Optuna >= 5 deprecates ``constraints_func``), so feasible
    trials dominate infeasible ones.
    """
    if name == "tpe":
        return _construct(optuna.samplers.TPESampler, name, options, seed=seed, constraints_func=None)
    if name == "nsga2":
        return _construct(NSGAIISampler, name, options, seed=seed, constraints_func=None)
    if name == "gp":
        return _construct(optuna.samplers.GPSampler, name, options, seed=seed, constraints_func=None)
    if name == "random":
        return _construct(optuna.samplers.RandomSampler, name, options, seed=seed)
    if name == "grid":
        grid = grid_search_space(space)
        return _construct(optuna.samplers.GridSampler, name, options, search_space=grid, seed=seed)
    if name == "dnas":
        # Task data and the latency table reach it later through `DNASSampler.set_context`.
        return _construct(DNASSampler, name, options, space=space, seed=seed, task=None, table=None)
    if name == "hardcore":
        # Likewise through `HardCoReNASSampler.set_context`.
        return _construct(HardCoReNASSampler, name, options, space=space, seed=seed, task=None, table=None)
    raise UserInputError(f"unknown sampler {name!r}; choose one of tpe, nsga2, random, grid, gp, dnas, hardcore")


__all__ = ["DNASSampler", "HardCoReNASSampler", "NSGAIISampler", "make_sampler"]
