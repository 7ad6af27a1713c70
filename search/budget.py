"""A global trial budget shared by every worker of a study: stop at exactly ``n_trials`` COMPLETE.

Semantics (the same for one process and for many processes on many hosts):

* A trial *claims* a slot of the budget while it is RUNNING (or WAITING in the retry queue) and keeps
  it once COMPLETE. A worker starts a new trial only while ``COMPLETE + RUNNING < n_trials``;
  otherwise it waits (polling) until the running trials finish, because one may still fail.
* Two workers can pass that check at the same moment. Trial numbers are handed out atomically by the
  storage, so the tie is broken by number: a trial that finds ``n_trials`` claims among the trials
  *numbered below it* is surplus and is ended as PRUNED at once (user attr ``jointnas:surplus``),
  before any training. Hence COMPLETE never exceeds ``n_trials``; surplus trials are not duplicates
  (they have their own numbers and no values) and every report counts COMPLETE trials only.
* A re-queued trial takes its original's place in that order (its claim is ordered by system attr
  ``failed_trial``, not by its own number), and a trial checks its claim again when its objective
  returns, before it is told: Optuna marks a stale trial FAIL *before* it re-queues its parameters,
  so a trial started in between finds neither, passes, and would crowd the retry out of the budget;
  the second check finds the retry ordered below it and ends that trial as surplus instead.
* A trial that FAILs gives its slot back and some worker runs another trial.
* A worker killed mid-trial (SIGKILL, power loss) stops beating; after the grace period the next
  worker marks its trial FAIL (``fail_reason``: ``worker HOST:PID stopped sending heartbeats``) and
  Optuna's `RetryHeartbeatStaleTrialCallback` re-queues it (WAITING, same parameters, system attr
  ``failed_trial``), which the next free worker runs.

Every storage `open_storage` opens has heartbeats: Optuna's on RDB storages (SQLite, PostgreSQL,
MySQL), a lease renewed in the trial's system attrs on journal storages (file, Redis; see
`jointnas.search.heartbeat`). The reservation is the RUNNING trial itself, numbered by the storage
(the journal's log order numbers trials as atomically as the RDB's study lock), so the count is exact
on each. A storage opened without heartbeats (``heartbeat_s=None``, or plain Optuna code) cannot tell
a RUNNING trial from a dead one, so there only COMPLETE trials are counted: workers stop at
``n_trials`` COMPLETE or slightly more (at most one extra trial per concurrently finishing worker).
"""

from __future__ import annotations

import bisect
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from .attrs import TRIAL_FAIL_REASON, TRIAL_RETRY_OF, TRIAL_SURPLUS, TRIAL_WORKER
from .heartbeat import STALE, storage_lost

#: Seconds a worker sleeps while the remaining budget is held by running trials.
POLL_S = 0.5

#: Trial user attr naming the worker that ran the trial, ``host:pid``.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"

Callback = Callable[[optuna.Study, FrozenTrial], None]


class Terminated(KeyboardInterrupt):
    """SIGTERM reached a worker (its parent died, or a scheduler stops it): handled like Ctrl-C."""


def interrupt_reason(exc: BaseException) -> str:
    """The ``fail_reason`` of a trial stopped by Ctrl-C or SIGTERM."""
    return "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise `Terminated` where the worker is, so its trial is marked FAIL."""
    raise Terminated


def heartbeat_enabled(storage: BaseStorage) -> bool:
    """Whether ``storage`` records heartbeats (every storage `open_storage` opens, unless turned off)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def _rdb(storage: BaseStorage) -> optuna.storages.RDBStorage | None:
    """The RDB storage behind ``storage`` (Optuna wraps it in a cache), else ``None`` (journal storages)."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


class TrialStates:
    """Per-state trial counts of one study on an RDB storage, kept up to date incrementally.

    Each `counts` call reads only the trials table rows that may have changed since the last call —
    rows with a higher ``trial_id`` (new trials) and the rows of trials not yet final (RUNNING,
    WAITING) — with no relationship loads, so its cost does not grow with the study: a worker checks
    the budget three times per trial (twice without heartbeats), and counting 10k rows each time cost
    milliseconds (syncing Optuna's trial cache cost tens). Final states (COMPLETE, FAIL, PRUNED) never change, so their
    claim orders (`claim_order`) are kept sorted and counted with bisection. New trials appear in
    ``trial_id`` order because Optuna creates a study's trials under a lock on the study row.
    """

    FINAL = ("COMPLETE", "FAIL", "PRUNED")

    def __init__(self, rdb: optuna.storages.RDBStorage, study_id: int) -> None:
        self.rdb = rdb
        self.study_id = study_id
        self.watermark = -1
        self.pending: dict[int, tuple[int, str]] = {}  # trial_id -> (claim order, state), not final yet
        self.final: dict[str, list[int]] = {name: [] for name in self.FINAL}  # sorted claim orders

    def _sync(self) -> None:
        import sqlalchemy
        from optuna.storages._rdb import models

        trials = models.TrialModel.__table__
        retry_of = models.TrialSystemAttributeModel.__table__
        changed = trials.c.trial_id > self.watermark
        if self.pending:
            changed = sqlalchemy.or_(changed, trials.c.trial_id.in_(list(self.pending)))
        joined = trials.outerjoin(
            retry_of, sqlalchemy.and_(retry_of.c.trial_id == trials.c.trial_id, retry_of.c.key == TRIAL_RETRY_OF)
        )
        query = (
            sqlalchemy.select(trials.c.trial_id, trials.c.number, trials.c.state, retry_of.c.value_json)
            .select_from(joined)
            .where(trials.c.study_id == self.study_id, changed)
        )

        def read() -> list[Any]:
            with self.rdb.engine.connect() as conn:
                return conn.execute(query).all()

        retry = getattr(self.rdb, "_retry", None)  # `ReasonRDBStorage` waits for a lost server
        rows = retry(read) if retry is not None else read()
        for trial_id, number, state, retry_of_json in rows:
            name = _state_name(state)
            order = int(json.loads(retry_of_json)) if retry_of_json is not None else number
            self.watermark = max(self.watermark, trial_id)
            if name in self.final:
                self.pending.pop(trial_id, None)
                bisect.insort(self.final[name], order)
            else:
                self.pending[trial_id] = (order, name)

    def counts(self, below: int | None = None) -> dict[str, int]:
        """Trials per state name now; ``below``: only trials whose `claim_order` is below it."""
        self._sync()
        out = {s.name: 0 for s in TrialState}
        for name, orders in self.final.items():
            out[name] = len(orders) if below is None else bisect.bisect_left(orders, below)
        for order, name in self.pending.values():
            if below is None or order < below:
                out[name] += 1
        return out


def _state_name(state: Any) -> str:
    """The stored state column as a `TrialState` name (SQLAlchemy returns the enum, or its name)."""
    return state.name if isinstance(state, TrialState) else str(state)


def claim_order(number: int, system_attrs: dict[str, Any]) -> int:
    """Where a trial's claim on the budget stands: its number, or its original's for a re-queued trial.

    Example:
        >>> claim_order(7, {"failed_trial": 2, "retry_history": [2]}), claim_order(7, {})
        (2, 7)
    """
    return int(system_attrs.get(TRIAL_RETRY_OF, number))


class _CacheStates:
    """`TrialStates` for journal storages: counted from Optuna's process cache of the study."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study

    def counts(self, below: int | None = None) -> dict[str, int]:
        out = {s.name: 0 for s in TrialState}
        for t in self.study.get_trials(deepcopy=False):
            if below is None or claim_order(t.number, t.system_attrs) < below:
                out[t.state.name] += 1
        return out


def state_counter(study: optuna.Study) -> TrialStates | _CacheStates:
    """A counter of ``study``'s trial states: incremental SQL on RDB storages, the cache on journals."""
    rdb = _rdb(study._storage)
    return TrialStates(rdb, study._study_id) if rdb is not None else _CacheStates(study)


def budget_counts(study: optuna.Study, below: int | None = None) -> dict[str, int]:
    """Number of trials per state name (COMPLETE, RUNNING, WAITING, FAIL, PRUNED).

    ``below``: count only trials numbered below it. A worker keeps one `state_counter` instead.
    """
    return state_counter(study).counts(below)


class _Guarded:
    """Wrap an objective with the claim check and an after-success hook (artifact upload)."""

    def __init__(
        self,
        objective: Callable[[optuna.Trial], Any],
        n_trials: int,
        exact: bool,
        on_success: Callable[[optuna.Trial, Any], None] | None,
    ) -> None:
        self.objective = objective
        self.n_trials = n_trials
        self.exact = exact
        self.on_success = on_success
        self.surplus = 0
        self.counter: TrialStates | _CacheStates | None = None
        self.current: optuna.Trial | None = None  # the trial this worker runs now

    def __call__(self, trial: optuna.Trial) -> Any:
        try:
            return self._run(trial)
        except KeyboardInterrupt as exc:  # wherever Ctrl-C (or SIGTERM) lands, the FAILed trial says why
            if TRIAL_FAIL_REASON not in trial.user_attrs:
                trial.set_user_attr(TRIAL_FAIL_REASON, interrupt_reason(exc))
            raise
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # any other error FAILs the trial: it says which (unless the storage is gone)
            if TRIAL_FAIL_REASON not in trial.user_attrs and storage_lost(trial.study._storage) is None:
                first = str(exc).strip().splitlines()
                trial.set_user_attr(TRIAL_FAIL_REASON, f"{type(exc).__name__}: {first[0] if first else ''}".strip())
            raise

    def _run(self, trial: optuna.Trial) -> Any:
        self.current = trial
        # Every trial names its worker, surplus ones too: a PRUNED surplus trial says who created it.
        trial.set_user_attr(TRIAL_WORKER, WORKER_ID)
        order = claim_order(trial.number, trial.study._storage.get_trial_system_attrs(trial._trial_id))
        self._check_claim(trial, order, "already claimed")
        values = self.objective(trial)
        if self.exact:  # only heartbeats re-queue trials; without them finishing peers are no reason to prune
            self._check_claim(trial, order, "claimed by a re-queued trial meanwhile")
        if self.on_success is not None:
            self.on_success(trial, values)
        return values

    def _check_claim(self, trial: optuna.Trial, order: int, why: str) -> None:
        """End ``trial`` as surplus (PRUNED) if ``n_trials`` claims stand before its claim ``order``."""
        states = ("COMPLETE", "RUNNING", "WAITING") if self.exact else ("COMPLETE",)
        if self.counter is None:
            self.counter = state_counter(trial.study)
        below = self.counter.counts(below=order)
        if sum(below[s] for s in states) >= self.n_trials:
            trial.set_user_attr(TRIAL_SURPLUS, True)
            self.surplus += 1
            raise optuna.TrialPruned(f"budget of {self.n_trials} COMPLETE trials {why}")


def _optimize(
    study: optuna.Study, objective: _Guarded, catch: tuple[type[Exception], ...], callbacks: list[Callback]
) -> bool:
    """`Study.optimize` until the gate stops it (True), or False when the running trial had been
    failed as stale by another worker (its heartbeats came late: a starved process) and Optuna could
    not tell it. If the storage went away: its one-line `StorageLost`, not Optuna's follow-up errors."""
    try:
        study.optimize(objective, catch=catch, callbacks=callbacks)
    except Exception:
        lost = storage_lost(study._storage)
        if lost is not None:
            raise lost from None
        trial = objective.current
        if trial is None:
            raise
        frozen = study._storage.get_trial(trial._trial_id)
        if frozen.state != TrialState.FAIL or not frozen.user_attrs.get(TRIAL_FAIL_REASON, "").endswith(STALE):
            raise
        print(
            f"trial {trial.number} was failed by another worker: {frozen.user_attrs[TRIAL_FAIL_REASON]} "
            "(this process was too slow to renew it; a larger --grace avoids this)",
            file=sys.stderr,
        )
        return False
    return True


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    n_trials: int,
    *,
    timeout: float | None = None,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Sequence[Callback] = (),
    on_success: Callable[[optuna.Trial, Any], None] | None = None,
    poll_s: float = POLL_S,
    max_trials: int | None = None,
) -> int:
    """Run trials of ``study`` until it holds ``n_trials`` COMPLETE trials (all workers together).

    Args:
        n_trials: the global budget: COMPLETE trials the study should hold.
        timeout: seconds after which this worker starts no new trial.
        catch: exceptions of the objective that mark the trial FAIL and go on.
        on_success: called with ``(trial, values)`` after the objective returned, while the trial is
            still RUNNING (uploads artifacts).
        max_trials: at most this many trials run by this worker (surplus ones not counted); default
            the budget still missing when the worker starts, so a study whose trials keep failing ends
            (run it again to go on) instead of looping.

    Returns:
        the number of COMPLETE trials in the study when this worker stopped.
    """
    exact = heartbeat_enabled(study._storage)
    guarded = _Guarded(objective, n_trials, exact, on_success)
    counter = guarded.counter = state_counter(study)
    started = time.monotonic()
    ran = 0
    if max_trials is None:
        max_trials = max(0, n_trials - counter.counts()["COMPLETE"])

    def stop_with() -> int | None:
        """Wait until this worker may start a trial (``None``), or the COMPLETE count to stop with."""
        while True:
            counts = counter.counts()
            complete = counts["COMPLETE"]
            if complete >= n_trials:
                return complete
            if timeout is not None and time.monotonic() - started >= timeout:
                return complete
            if ran - guarded.surplus >= max_trials:
                return complete
            if not (exact and complete + counts["RUNNING"] >= n_trials):
                return None
            # The rest of the budget is held by running trials; one may still fail, or belong to a
            # dead worker: mark stale ones FAIL (their retries are queued) and look again.
            time.sleep(poll_s)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)

    def gate(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran, done
        ran += 1
        done = stop_with()
        if done is not None:
            study.stop()

    done = stop_with()
    while done is None:
        # One optimize loop for all of this worker's trials (the gate callback waits or stops between
        # trials): Optuna's per-call set-up and session teardown are paid once, not per trial. The
        # gate's last look is the count this worker stopped with.
        if not _optimize(study, guarded, catch, [*callbacks, gate]):
            ran += 1  # its trial was failed (and re-queued) by another worker: go on with the next
            done = stop_with()
    return done


__all__ = [
    "POLL_S",
    "Terminated",
    "TrialStates",
    "budget_counts",
    "claim_order",
    "heartbeat_enabled",
    "interrupt_reason",
    "raise_terminated",
    "run_trials",
    "state_counter",
]
