"""Optuna's NSGA-II, safe for many workers on a conditional space."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """`optuna.samplers.NSGAIISampler` whose children inherit only the parameters every parent holds.

    A jointnas space is conditional (``s1_*`` exists only when ``n_stages`` > 1). Optuna takes the
    relative search space (the parameters of every complete trial) when a trial starts, and the parent
    population a moment later. With several workers on one storage, a trial that completes in between
    can join the parents without a parameter of that space, and the stock crossover fails with
    ``KeyError`` (seen: two processes on SQLite, ``KeyError: 's1_abits'``). Here a parameter some parent
    lacks is left to `sample_independent`, as Optuna does for any parameter outside the relative space;
    in one process every parent holds the whole space, so proposals are the stock sampler's.

    Example:
        >>> sampler = NSGAIISampler(seed=0, population_size=4)
        >>> isinstance(sampler, optuna.samplers.NSGAIISampler)
        True
    """

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        generation = self.get_trial_generation(study, trial)
        parents = self.get_parent_population(study, generation)
        if not parents:
            return {}
        shared = {n: d for n, d in search_space.items() if all(n in p.params for p in parents)}
        return self._child_generation_strategy(study, shared, parents)
