"""HardCoReNAS constrained search: block-coordinate Frank-Wolfe over (α, β), argmax, exact repair.

For a latency budget ``T`` (ms) and one macro, minimize an accuracy-proxy loss ``f(α, β)`` subject to
``E[lat](α, β) ≤ T`` over the product of per-stage simplices (Nayman et al. 2021, sec. 3.3):

1. start from a feasible point (uniform α, β pulled toward the fastest sub-network until feasible);
2. each iteration picks one block — all α or all β (stochastic block choice) — and solves the linear
   minimization oracle over that block's simplices intersected with the latency half-space, which is
   linear in the block while the other block is fixed (an LP, ``scipy.optimize.linprog``/HiGHS);
   the iterate moves a step ``γ_t = 2/(t+2)`` toward the LP vertex, so it stays feasible;
3. the argmax sub-network is extracted and *repaired*: while its LUT latency exceeds ``T``, apply the
   per-stage change with the smallest proxy-loss increase per millisecond saved. Every move strictly
   lowers latency and the per-stage minimum is reachable, so repair ends feasible whenever
   ``T ≥`` the fastest sub-network's latency; then, greedily, moves that lower the proxy loss while
   staying within ``T`` use any slack left.

The proxy is a `ScoreModel`: an additive model of the supernet's validation loss fitted on sampled
sub-networks with inherited weights, ``loss ≈ μ + macro terms + Σ_s Θ_s[c_s, j_s]``, so
``f(α, β) = Σ_s α_sᵀ Θ_s β_s`` (bilinear like the latency) with exact gradients ``Θ_s β_s`` and
``Θ_sᵀ α_s``; ``grad_noise`` adds Gaussian noise to emulate mini-batch gradient estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import linprog

from ._hardcore_latency import Arch, LatencyModel, Macro, SpaceChoices


@dataclass
class ScoreModel:
    """Additive proxy of a sub-network's validation loss (lower is better).

    Args:
        intercept: μ.
        macro_terms: loss offset per macro feature (``("stem", w)``, ``("n", n)``, ``("width", s, m)``).
        stage_terms: per stage index, ``Θ_s`` of shape ``[n_choices, n_depths]``.
    """

    intercept: float
    macro_terms: dict[tuple, float]
    stage_terms: list[np.ndarray]

    def macro_offset(self, macro: Macro) -> float:
        keys = [("stem", macro.stem_channels), ("n", macro.n_stages)]
        keys += [("width", s, m) for s, m in enumerate(macro.width_mults)]
        return self.intercept + sum(self.macro_terms.get(k, 0.0) for k in keys)

    def arch_loss(self, arch: Arch) -> float:
        return self.macro_offset(arch.macro) + float(
            sum(self.stage_terms[s][c, j] for s, (c, j) in enumerate(zip(arch.choices, arch.depths, strict=True)))
        )

    def penalized(self, cost: LatencyModel, weight: float) -> ScoreModel:
        """This proxy plus ``weight`` × ``cost`` for the sub-networks of ``cost.macro`` (a cost additive over
        blocks in `LatencyModel`'s layout, e.g. Flash bytes from `flash_models`): still additive, so
        Frank-Wolfe and repair minimize ``loss + weight · cost`` unchanged."""
        n = cost.n_stages
        terms = [t + weight * c for t, c in zip(self.stage_terms[:n], cost.stage_ms, strict=True)]
        return ScoreModel(self.intercept + weight * cost.fixed_ms, self.macro_terms, terms + self.stage_terms[n:])

    @classmethod
    def fit(
        cls, choices: SpaceChoices, archs: Sequence[Arch], losses: Sequence[float], ridge: float = 1e-2
    ) -> ScoreModel:
        """Ridge least squares of ``losses`` on one-hot macro and per-stage (choice, depth) features."""
        n_stages = len(choices.space.stages)
        n_c, n_d = len(choices.block_choices), len(choices.depths)
        index: dict[tuple, int] = {}

        def col(key: tuple) -> int:
            return index.setdefault(key, len(index))

        rows = []
        for arch in archs:
            m = arch.macro
            keys = [("stem", m.stem_channels), ("n", m.n_stages)]
            keys += [("width", s, w) for s, w in enumerate(m.width_mults)]
            keys += [("stage", s, c, j) for s, (c, j) in enumerate(zip(arch.choices, arch.depths, strict=True))]
            rows.append([col(k) for k in keys])
        y = np.asarray(losses, dtype=float)
        mu = float(y.mean())
        x = np.zeros((len(rows), len(index)))
        for i, cols in enumerate(rows):
            x[i, cols] = 1.0
        coef = np.linalg.solve(x.T @ x + ridge * np.eye(len(index)), x.T @ (y - mu)) if index else np.zeros(0)
        stage_terms = [np.zeros((n_c, n_d)) for _ in range(n_stages)]
        seen = [np.zeros((n_c, n_d), dtype=bool) for _ in range(n_stages)]
        macro_terms: dict[tuple, float] = {}
        for key, i in index.items():
            if key[0] == "stage":
                _, s, c, j = key
                stage_terms[s][c, j] = coef[i]
                seen[s][c, j] = True
            else:
                macro_terms[key] = float(coef[i])
        # Cells never sampled get the stage's worst fitted value: no optimism about unseen choices.
        for terms, mask in zip(stage_terms, seen, strict=True):
            if mask.any() and not mask.all():
                terms[~mask] = terms[mask].max()
        return cls(mu, macro_terms, stage_terms)


@dataclass(frozen=True)
class SearchResult:
    """What `search_budget` found for one budget: the sub-network or why there is none."""

    budget_ms: float
    arch: Arch | None
    latency_ms: float | None
    proxy_loss: float | None
    expected_ms: float | None = None
    repair_moves: int = 0
    infeasible_reason: str | None = None

    @classmethod
    def infeasible(cls, budget_ms: float, floor_ms: float) -> SearchResult:
        """No sub-network fits ``budget_ms``: the fastest one takes ``floor_ms``."""
        reason = (
            f"latency budget {budget_ms:.4g} ms is below the smallest sub-network's LUT latency {floor_ms:.4g} ms "
            "(infeasible); raise the budget or the latency constraint"
        )
        return cls(budget_ms, None, None, None, infeasible_reason=reason)


def _lmo(grad: list[np.ndarray], cost: list[np.ndarray], capacity: float) -> list[np.ndarray] | None:
    """argmin_v Σ grad·v over per-stage simplices with Σ cost·v ≤ capacity (None if the LP fails)."""
    sizes = [len(g) for g in grad]
    n = sum(sizes)
    a_eq = np.zeros((len(sizes), n))
    start = 0
    for s, size in enumerate(sizes):
        a_eq[s, start : start + size] = 1.0
        start += size
    res = linprog(
        np.concatenate(grad),
        A_ub=np.concatenate(cost)[None, :],
        b_ub=[capacity],
        A_eq=a_eq,
        b_eq=np.ones(len(sizes)),
        bounds=(0.0, 1.0),
        method="highs",
    )
    if res.status != 0:
        return None
    out, start = [], 0
    for size in sizes:
        v = np.clip(res.x[start : start + size], 0.0, None)
        out.append(v / v.sum())
        start += size
    return out


def _one_hot(index: int, size: int) -> np.ndarray:
    v = np.zeros(size)
    v[index] = 1.0
    return v


def frank_wolfe(
    latency: LatencyModel,
    theta: list[np.ndarray],
    budget_ms: float,
    *,
    iterations: int = 40,
    rng: np.random.Generator | None = None,
    grad_noise: float = 0.0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Block-coordinate stochastic Frank-Wolfe for min Σ_s α_sᵀΘ_sβ_s s.t. E[lat](α, β) ≤ budget_ms.

    Requires ``budget_ms ≥ latency.min_ms``; returns feasible per-stage α and β.
    """
    rng = rng or np.random.default_rng(0)
    n_c, n_d = theta[0].shape
    c_min, j_min = latency.min_arch()
    v_alpha = [_one_hot(c, n_c) for c in c_min]
    v_beta = [_one_hot(j, n_d) for j in j_min]
    alpha = [np.full(n_c, 1.0 / n_c) for _ in theta]
    beta = [np.full(n_d, 1.0 / n_d) for _ in theta]
    if latency.expected_ms(alpha, beta) > budget_ms:
        # Pull the uniform point toward the fastest vertex until E[lat] fits (bisection on the blend).
        lo, hi = 0.0, 1.0
        for _ in range(30):
            lam = 0.5 * (lo + hi)
            a = [lam * u + (1 - lam) * v for u, v in zip(alpha, v_alpha, strict=True)]
            b = [lam * u + (1 - lam) * v for u, v in zip(beta, v_beta, strict=True)]
            lo, hi = (lam, hi) if latency.expected_ms(a, b) <= budget_ms else (lo, lam)
        alpha = [lo * u + (1 - lo) * v for u, v in zip(alpha, v_alpha, strict=True)]
        beta = [lo * u + (1 - lo) * v for u, v in zip(beta, v_beta, strict=True)]
    capacity = budget_ms - latency.fixed_ms
    for t in range(iterations):
        gamma = 2.0 / (t + 2.0)
        on_alpha = bool(rng.random() < 0.5)
        if on_alpha:
            grad = [th @ b for th, b in zip(theta, beta, strict=True)]
            cost = [m @ b for m, b in zip(latency.stage_ms, beta, strict=True)]
        else:
            grad = [th.T @ a for th, a in zip(theta, alpha, strict=True)]
            cost = [m.T @ a for m, a in zip(latency.stage_ms, alpha, strict=True)]
        if grad_noise > 0:
            grad = [g + rng.normal(0.0, grad_noise, g.shape) for g in grad]
        vertex = _lmo(grad, cost, capacity)
        if vertex is None:
            continue
        block = alpha if on_alpha else beta
        for s in range(len(block)):
            block[s] = (1 - gamma) * block[s] + gamma * vertex[s]
    return alpha, beta


def repair(
    latency: LatencyModel, theta: list[np.ndarray], choices: list[int], depths: list[int], budget_ms: float
) -> int:
    """Greedy moves (in place) until the sub-network's LUT latency ≤ ``budget_ms``; returns the move count.

    Each move changes one stage's (choice, depth) to one with lower stage latency, picking the smallest
    proxy-loss increase per millisecond saved. Then moves that lower the loss and keep the budget apply.
    """
    moves = 0
    m = latency.stage_ms
    while latency.arch_ms(choices, depths) > budget_ms:
        best, best_ratio = None, np.inf
        for s, (c, j) in enumerate(zip(choices, depths, strict=True)):
            saved = m[s][c, j] - m[s]
            added = theta[s] - theta[s][c, j]
            for c2, j2 in zip(*np.nonzero(saved > 0), strict=True):
                ratio = added[c2, j2] / saved[c2, j2]
                if ratio < best_ratio:
                    best, best_ratio = (s, int(c2), int(j2)), ratio
        if best is None:  # already the fastest sub-network: the caller checked the budget
            break
        s, choices[s], depths[s] = best
        moves += 1
    while True:  # spend the slack: best loss decrease that still fits
        slack = budget_ms - latency.arch_ms(choices, depths)
        best, best_gain = None, 1e-12
        for s, (c, j) in enumerate(zip(choices, depths, strict=True)):
            gain = theta[s][c, j] - theta[s]
            extra = m[s] - m[s][c, j]
            gain = np.where(extra <= slack, gain, -np.inf)
            c2, j2 = np.unravel_index(int(np.argmax(gain)), gain.shape)
            if gain[c2, j2] > best_gain:
                best, best_gain = (s, int(c2), int(j2)), gain[c2, j2]
        if best is None:
            break
        s, choices[s], depths[s] = best
        moves += 1
    return moves


def search_budget(
    latency: LatencyModel,
    scores: ScoreModel,
    budget_ms: float,
    *,
    iterations: int = 40,
    rng: np.random.Generator | None = None,
    grad_noise: float = 0.0,
) -> SearchResult:
    """Frank-Wolfe, argmax extraction and repair for one macro and budget (ms)."""
    if budget_ms < latency.min_ms:
        return SearchResult.infeasible(budget_ms, latency.min_ms)
    theta = [scores.stage_terms[s] for s in range(latency.n_stages)]
    alpha, beta = frank_wolfe(latency, theta, budget_ms, iterations=iterations, rng=rng, grad_noise=grad_noise)
    expected = latency.expected_ms(alpha, beta)
    choices = [int(np.argmax(a)) for a in alpha]
    depths = [int(np.argmax(b)) for b in beta]
    moves = repair(latency, theta, choices, depths, budget_ms)
    arch = Arch(latency.macro, tuple(choices), tuple(depths))
    return SearchResult(budget_ms, arch, latency.arch_ms(choices, depths), scores.arch_loss(arch), expected, moves)


def greedy_budget(latency: LatencyModel, scores: ScoreModel, budget_ms: float) -> SearchResult:
    """The cheap screen of a macro: each stage's best proxy cell, then `repair` into the budget."""
    theta = [scores.stage_terms[s] for s in range(latency.n_stages)]
    picks = [np.unravel_index(int(np.argmin(th)), th.shape) for th in theta]
    choices, depths = [int(c) for c, _ in picks], [int(j) for _, j in picks]
    moves = repair(latency, theta, choices, depths, budget_ms)
    arch = Arch(latency.macro, tuple(choices), tuple(depths))
    return SearchResult(budget_ms, arch, latency.arch_ms(choices, depths), scores.arch_loss(arch), None, moves)


def search_macros(
    models: Sequence[LatencyModel],
    scores: ScoreModel,
    budget_ms: float,
    *,
    iterations: int = 40,
    seed: int = 0,
    grad_noise: float = 0.0,
    top_k: int | None = None,
    macro_scores: Sequence[ScoreModel] | None = None,
) -> SearchResult:
    """`search_budget` on every macro's `LatencyModel`; the feasible result with the lowest proxy loss.

    ``top_k``: run Frank-Wolfe only on the ``top_k`` feasible macros whose `greedy_budget` screen has
    the lowest proxy loss (an elastic supernet has one macro per stem × stage count × stage widths).
    ``macro_scores``: the proxy of each model's macro (default ``scores`` for all), e.g.
    `ScoreModel.penalized` by its Flash. With no macro fitting the budget, the result is infeasible
    and names the smallest latency.
    """
    proxy = list(macro_scores) if macro_scores is not None else [scores] * len(models)
    feasible = [(i, m) for i, m in enumerate(models) if budget_ms >= m.min_ms]
    if not feasible:
        return SearchResult.infeasible(budget_ms, min(m.min_ms for m in models))
    best: SearchResult | None = None
    if top_k is not None and len(feasible) > top_k:
        screened = [(greedy_budget(m, proxy[i], budget_ms), i, m) for i, m in feasible]
        screened.sort(key=lambda item: item[0].proxy_loss)
        best = screened[0][0]
        feasible = [(i, m) for _, i, m in screened[:top_k]]
    for i, latency in feasible:
        rng = np.random.default_rng([seed, i])
        result = search_budget(latency, proxy[i], budget_ms, iterations=iterations, rng=rng, grad_noise=grad_noise)
        if best is None or result.proxy_loss < best.proxy_loss:
            best = result
    assert best is not None
    return best


def flash_penalized(scores: ScoreModel, flash: Sequence[LatencyModel], weight: float) -> list[ScoreModel] | None:
    """Per macro, ``scores`` plus ``weight`` × Flash / the largest sub-network's Flash (``flash``:
    `flash_models`), for `search_macros`'s ``macro_scores``; None (the plain proxy) at weight 0."""
    if weight <= 0:
        return None
    scale = weight / max(f.max_ms for f in flash)
    return [scores.penalized(f, scale) for f in flash]


def search_flash_capped(
    models: Sequence[LatencyModel],
    flash: Sequence[LatencyModel],
    scores: ScoreModel,
    budget_ms: float,
    flash_cap: float,
    *,
    weight: float = 0.0,
    bisections: int = 6,
    raise_cap: bool = False,
    **search: Any,
) -> tuple[SearchResult, float]:
    """`search_macros` under ``budget_ms`` whose sub-network's Flash is ≤ ``flash_cap`` (bytes) too.

    ``flash[i]`` prices the Flash of ``models[i]``'s macro (`flash_models`). The proxy is penalized by
    ``w · Flash / Flash_max`` (`ScoreModel.penalized`), starting at ``weight``: while the result's Flash
    exceeds the cap, ``w`` doubles, then ``bisections`` halvings of the interval find the smallest ``w``
    that fits, whose result (its ``proxy_loss`` the plain proxy's) is returned with ``w`` (the hard
    budget of `search_macros` holds at every ``w``). If no ``w`` fits, each macro's smallest-Flash
    sub-network within ``budget_ms`` is tried; with none under the cap the result is infeasible and
    names the smallest Flash, or with ``raise_cap`` (a scheduled cap below what the latency budget
    allows) the smallest-Flash sub-network found is taken.
    """
    of = {m.macro: f for m, f in zip(models, flash, strict=True)}

    def run(w: float) -> tuple[SearchResult, float]:
        result = search_macros(models, scores, budget_ms, macro_scores=flash_penalized(scores, flash, w), **search)
        size = np.inf if result.arch is None else of[result.arch.macro].arch_ms(result.arch.choices, result.arch.depths)
        return result, size

    result, size = run(weight)
    if result.arch is None or size <= flash_cap:
        return result, weight
    low, high = weight, max(1.0, 2.0 * weight)
    for _ in range(20):
        found, size = run(high)
        if size <= flash_cap:
            break
        low, high = high, 2.0 * high
    else:
        return _smallest_flash(models, flash, scores, budget_ms, flash_cap, (found, size), raise_cap), high
    for _ in range(bisections):
        mid = 0.5 * (low + high)
        candidate, size = run(mid)
        if size <= flash_cap:
            found, high = candidate, mid
        else:
            low = mid
    assert found.arch is not None
    return replace(found, proxy_loss=scores.arch_loss(found.arch)), high


def _smallest_flash(
    models: Sequence[LatencyModel],
    flash: Sequence[LatencyModel],
    scores: ScoreModel,
    budget_ms: float,
    cap: float,
    found: tuple[SearchResult, float],
    raise_cap: bool,
) -> SearchResult:
    """Among ``found`` (the most penalized search's result and its Flash) and each macro's smallest-Flash
    sub-network within ``budget_ms``: the best proxy under ``cap``; else (``raise_cap``) the smallest."""
    model = {m.macro: m for m in models}
    fits = [(found[1], found[0].arch)] if found[0].arch is not None else []
    for latency, size in zip(models, flash, strict=True):
        choices, depths = size.min_arch()
        if latency.arch_ms(choices, depths) <= budget_ms:
            fits.append((size.arch_ms(choices, depths), Arch(latency.macro, choices, depths)))
    under = [arch for b, arch in fits if b <= cap]
    if under:
        arch = min(under, key=scores.arch_loss)
    elif raise_cap and fits:
        arch = min(fits, key=lambda item: item[0])[1]
    else:
        floor = min((b for b, _ in fits), default=np.inf)
        reason = (
            f"Flash budget {cap:.0f} B is below the smallest sub-network's Flash {floor:.0f} B within the latency "
            f"budget {budget_ms:.4g} ms (infeasible); raise flash_budget or the latency budget"
        )
        return SearchResult(budget_ms, None, None, None, infeasible_reason=reason)
    ms = model[arch.macro].arch_ms(arch.choices, arch.depths)
    return SearchResult(budget_ms, arch, ms, scores.arch_loss(arch))
