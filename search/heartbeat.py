"""Liveness of running trials on every storage, and a bounded wait for a storage that went away.

Optuna's heartbeat (`optuna.storages.BaseHeartbeat`) exists only for RDB storages. Here:

* `JournalHeartbeatStorage` gives journal storages (file and Redis) the same interface: a running
  trial's worker renews a *lease*, the wall-clock time in the trial's system attr ``jointnas:lease``,
  every ``heartbeat_s`` seconds through the storage's own API (Optuna's heartbeat thread calls
  `record_heartbeat`); a RUNNING trial whose lease (or start, whichever is later: a re-queued
  trial inherits its original's attrs) is older than ``grace_s`` is stale. So Optuna's own
  `fail_stale_trials` and `RetryHeartbeatStaleTrialCallback` work unchanged: the trial is marked FAIL
  by whichever worker looks first (the journal orders the writes; a second worker's FAIL is refused,
  so the parameters are re-queued once).
* `ReasonRDBStorage` is Optuna's RDB storage whose stale trials carry a ``fail_reason``.
* Both mark a stale trial's ``fail_reason`` (``worker HOST:PID stopped sending heartbeats``) before
  it is failed, and retry a call that lost its connection with backoff for ``reconnect_s`` seconds;
  then `StorageLost` (a `UserInputError`: one line, exit 2). Its running trial stays RUNNING in the
  storage until a worker finds it stale after the grace period.

Example:
    >>> import tempfile, optuna
    >>> from optuna.storages.journal import JournalFileBackend
    >>> path = tempfile.mkdtemp() + "/s.log"
    >>> storage = JournalHeartbeatStorage(JournalFileBackend(path), heartbeat_s=1, grace_s=2)
    >>> study = optuna.create_study(storage=storage)
    >>> trial = study.ask()
    >>> storage.record_heartbeat(trial._trial_id)
    >>> storage._get_stale_trial_ids(study._study_id)  # renewed just now
    []
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import BaseJournalBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from jointnas.spaces import UserInputError

from .attrs import TRIAL_FAIL_REASON, TRIAL_LEASE, TRIAL_WORKER

#: Seconds a call is retried after its storage dropped the connection, before `StorageLost`.
DEFAULT_RECONNECT_S = 60
#: First and largest pause between retries (doubling).
BACKOFF_S = (0.5, 8.0)

T = TypeVar("T")


class StorageLost(UserInputError):
    """The storage stayed unreachable for the reconnect period (one line, exit 2)."""


def storage_lost(storage: BaseStorage) -> StorageLost | None:
    """The `StorageLost` of ``storage`` (or of the storage Optuna's cache wraps), if it gave up.

    Optuna may hide it behind an error of its own (a trial that cannot be told), so the caller asks.
    """
    lost = getattr(getattr(storage, "_backend", storage), "_lost", None)
    return StorageLost(lost) if isinstance(lost, str) else None


#: How the ``fail_reason`` of a stale trial ends.
STALE = "stopped sending heartbeats"


def stale_reason(trial: FrozenTrial) -> str:
    """The ``fail_reason`` of a trial whose worker stopped renewing it."""
    return f"worker {trial.user_attrs.get(TRIAL_WORKER, 'unknown')} {STALE}"


def _mark_stale(storage: BaseStorage, trial: FrozenTrial) -> bool:
    """Write the stale trial's reason (before it is failed); False if it finished meanwhile."""
    if TRIAL_FAIL_REASON in trial.user_attrs:
        return True
    try:
        storage.set_trial_user_attr(trial._trial_id, TRIAL_FAIL_REASON, stale_reason(trial))
    except UpdateFinishedTrialError:
        return False
    return True


def _lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` says the server could not be reached (not bad data, not a finished trial)."""
    exc = _cause(exc)
    names = {c.__name__ for c in type(exc).__mro__}
    # SQLAlchemy's OperationalError/InterfaceError (connection refused, server gone), redis' errors.
    return bool(names & {"OperationalError", "InterfaceError", "ConnectionError", "TimeoutError"}) and not (
        isinstance(exc, UpdateFinishedTrialError)
    )


def _cause(exc: BaseException) -> BaseException:
    """The driver's error behind Optuna's `StorageInternalError`."""
    return exc.__cause__ if isinstance(exc, StorageInternalError) and exc.__cause__ else exc


class _Reconnecting:
    """Retry storage calls that lost their connection with doubling pauses, for ``reconnect_s``.

    `record_heartbeat` (Optuna's heartbeat thread) is not retried: a beat that cannot be written is
    skipped, and the worker's next call in its main thread waits for the storage (or gives up).
    """

    reconnect_s: float = DEFAULT_RECONNECT_S
    masked_url: str = "storage"
    #: One masked line describing an error (`open_storage` sets the storage module's).
    describe: Callable[[BaseException], str] = staticmethod(lambda exc: type(exc).__name__)
    _lost: str | None = None  # the `StorageLost` message, once the reconnect period ran out

    def _retry(self, call: Callable[[], T]) -> T:
        if self._lost is not None:  # one wait per process: later calls fail at once
            raise StorageLost(self._lost)
        deadline = time.monotonic() + self.reconnect_s
        pause = BACKOFF_S[0]
        while True:
            try:
                return call()
            except Exception as exc:
                if not _lost_connection(exc):
                    raise
                if time.monotonic() + pause > deadline:
                    self._lost = (
                        f"storage {self.masked_url} unreachable for {self.reconnect_s:g} s "
                        f"({self.describe(_cause(exc))}); its running trial is retried by the next worker after the "
                        "grace period: start a worker again when the storage is back"
                    )
                    raise StorageLost(self._lost) from None
            time.sleep(pause)
            pause = min(2 * pause, BACKOFF_S[1])


#: Storage methods retried after a lost connection (every call a worker makes while it runs trials).
_RETRIED = [
    name
    for name, member in vars(BaseStorage).items()
    if callable(member) and not name.startswith("_") and name not in ("remove_session",)
] + ["_get_stale_trial_ids", "_create_new_trial", "_get_trials", "_set_trial_param", "_get_best_trial_id"]
# (the private ones: RDBStorage methods Optuna's trial cache, `_CachedStorage`, calls directly)


def _reconnecting(cls: type[T]) -> type[T]:
    """Class decorator: every call in `_RETRIED` goes through `_Reconnecting._retry`."""
    for name in _RETRIED:
        method = getattr(cls, name, None)
        if method is None:
            continue

        @functools.wraps(method)
        def retried(self: _Reconnecting, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            return self._retry(lambda: _method(self, *args, **kwargs))

        setattr(cls, name, retried)
    return cls


@_reconnecting
class ReasonRDBStorage(_Reconnecting, RDBStorage):
    """Optuna's `RDBStorage` whose heartbeat-stale trials get a ``fail_reason`` before they FAIL."""

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            RDBStorage.record_heartbeat(self, trial_id)
        except Exception as exc:
            if not _lost_connection(exc):
                raise

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = RDBStorage._get_stale_trial_ids(self, study_id)
        return [i for i in stale if _mark_stale(self, RDBStorage.get_trial(self, i))]


@_reconnecting
class JournalHeartbeatStorage(_Reconnecting, JournalStorage, BaseHeartbeat):
    """A `JournalStorage` with Optuna's heartbeat interface, through a lease in each trial's system attrs."""

    def __init__(
        self,
        backend: BaseJournalBackend,
        *,
        heartbeat_s: int | None,
        grace_s: int | None = None,
        stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ) -> None:
        super().__init__(backend)
        self.heartbeat_s = heartbeat_s
        self.grace_s = grace_s if grace_s is not None else (2 * heartbeat_s if heartbeat_s else None)
        self.stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            JournalStorage.set_trial_system_attr(self, trial_id, TRIAL_LEASE, time.time())
        except (UpdateFinishedTrialError, KeyError):  # the trial ended (or was failed) meanwhile
            pass
        except Exception as exc:
            if not _lost_connection(exc):
                raise

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if self.grace_s is None:
            return []
        now = time.time()
        stale = []
        for trial in JournalStorage.get_all_trials(self, study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            lease = trial.system_attrs.get(TRIAL_LEASE)
            if lease is None:  # never renewed (a process without heartbeats): never stale, as on RDB
                continue
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            if now - max(float(lease), started) > self.grace_s and _mark_stale(self, trial):
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_s

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.stale_callback


__all__ = [
    "DEFAULT_RECONNECT_S",
    "STALE",
    "JournalHeartbeatStorage",
    "ReasonRDBStorage",
    "StorageLost",
    "stale_reason",
    "storage_lost",
]
