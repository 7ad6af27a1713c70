"""The one storage opener: SQLite (default), PostgreSQL, MySQL, Optuna journal file and Redis journal.

URL forms (all Optuna storages; jointnas writes none of its own):

==============================  ===============================================================
``sqlite:///PATH.db``           `optuna.storages.RDBStorage` on an SQLite file (one machine)
``postgresql://USER:PW@HOST/DB``  RDBStorage through psycopg 3 (``pip install jointnas[postgres]``), else psycopg2
``mysql+pymysql://USER:PW@HOST/DB``  RDBStorage through PyMySQL (``pip install jointnas[mysql]``)
``journal:///ABS/PATH.log``     `JournalStorage` + `JournalFileBackend` (``journal://rel.log`` is
                                relative; a bare path ending ``.log`` or ``.journal`` works too)
``redis://HOST:PORT/DB``        `JournalStorage` + `JournalRedisBackend` (``pip install jointnas[redis]``)
==============================  ===============================================================

RDB storages get Optuna's heartbeat: a RUNNING trial whose worker stopped beating for ``grace_s``
seconds is marked FAIL by the next worker and re-queued once more (up to ``max_retry`` times) by
`optuna.storages.RetryHeartbeatStaleTrialCallback`. Journal storages have no heartbeat in Optuna.
Every error is one line (`UserInputError`) with the password masked.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from jointnas.spaces import UserInputError

_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@/\s]*)(?P<tail>@)")

#: Seconds between heartbeats of a running trial (RDB storages).
DEFAULT_HEARTBEAT_S = 10
#: Seconds to wait for a database server before giving up with an error.
CONNECT_TIMEOUT_S = 10
#: Re-queue a trial whose worker died at most this many times.
DEFAULT_MAX_RETRY = 3

#: PostgreSQL drivers a bare ``postgresql://`` URL may use, in order of preference: (module, dialect).
PG_DRIVERS = (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))

_HINT = (
    "use sqlite:///FILE.db, postgresql://USER@HOST/DB, mysql+pymysql://USER@HOST/DB, "
    "journal:///FILE.log or redis://HOST:6379/0"
)
_DRIVERS = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "pymysql": "pymysql",
    "MySQLdb": "mysqlclient",
    "redis": "redis",
}


def mask_password(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``."""
    return _PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", text)


def default_storage_url(config_path: Path, study_name: str) -> str:
    """An SQLite file named after the study, next to its config file."""
    return f"sqlite:///{(config_path.parent / f'{study_name}.db').resolve()}"


def journal_path(url: str) -> Path | None:
    """The file of a journal-file storage URL, or None for any other URL."""
    if url.startswith("journal://"):
        return Path(url[len("journal://") :])
    if url.endswith((".log", ".journal")) and "://" not in url:
        return Path(url)
    return None


def storage_file(url: str) -> Path | None:
    """The local file behind an SQLite or journal-file URL (None for server storages)."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return journal_path(url)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return mask_password(text.splitlines()[0] if text else type(exc).__name__)


def _rdb_url(url: str) -> str:
    """Pick an installed PostgreSQL driver for a bare ``postgresql://`` URL.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3, which the ``postgres`` extra installs (so Optuna's
    CLI and optuna-dashboard read the same URL); a bare URL uses whichever of `PG_DRIVERS` is importable,
    so psycopg2 alone works too. ``postgres://`` is accepted as an alias.
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    for module, dialect in PG_DRIVERS:
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}{sep}{rest}"
    return f"postgresql{sep}{rest}"


def _connect_args(url: str) -> dict[str, object]:
    """Bounded connection time, so an unreachable host is an error after seconds, not minutes."""
    if url.startswith(("postgresql", "mysql")):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


def _missing_driver(masked: str, name: str | None) -> UserInputError:
    pkg = _DRIVERS.get(name or "", name)
    return UserInputError(f"cannot open storage {masked}: driver {name!r} is not installed; pip install {pkg}")


def _open_redis(url: str, masked: str) -> BaseStorage:
    try:
        import redis  # noqa: F401  (checked here so a missing driver is one clear line)
    except ImportError:
        raise _missing_driver(masked, "redis") from None
    from optuna.storages.journal import JournalRedisBackend, JournalStorage

    backend = JournalRedisBackend(url)
    try:
        backend._redis.ping()  # Optuna connects lazily; fail here, in one line, not mid-trial
    except Exception as exc:
        raise UserInputError(f"cannot open storage {masked}: {_first_line(exc)}") from None
    return JournalStorage(backend)


def open_storage(
    url: str,
    *,
    heartbeat_s: int | None = DEFAULT_HEARTBEAT_S,
    grace_s: int | None = None,
    max_retry: int | None = DEFAULT_MAX_RETRY,
) -> BaseStorage:
    """Open ``url`` as an Optuna storage, or raise `UserInputError` naming the problem.

    Args:
        url: a storage URL (see the module docstring).
        heartbeat_s: seconds between heartbeats of RUNNING trials (RDB only); None disables them.
        grace_s: seconds without a heartbeat after which a trial is stale (default ``2 * heartbeat_s``).
        max_retry: how many times a stale trial is re-queued (None: without limit).
    """
    with warnings.catch_warnings():
        # Heartbeats, the retry callback and the Redis backend are "experimental" in Optuna 5.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open(url, heartbeat_s, grace_s, max_retry)


def _open(url: str, heartbeat_s: int | None, grace_s: int | None, max_retry: int | None) -> BaseStorage:
    masked = mask_password(url)
    journal = journal_path(url)
    if journal is not None:
        if not journal.parent.exists():
            raise UserInputError(f"cannot open storage {masked}: folder {journal.parent} does not exist")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(str(journal)))
        except OSError as exc:
            raise UserInputError(f"cannot open storage {masked}: {exc.strerror}") from None
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _open_redis(url, masked)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.parent.exists():
            raise UserInputError(f"cannot open storage {masked}: folder {path.parent} does not exist")
    elif "://" not in url:
        raise UserInputError(f"storage {masked!r} is not a URL; {_HINT}")
    heartbeat = {}
    if heartbeat_s is not None:
        heartbeat = {
            "heartbeat_interval": int(heartbeat_s),
            "grace_period": int(grace_s) if grace_s is not None else None,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
        }
    engine_kwargs = {"pool_pre_ping": True, **_connect_args(url)}
    try:
        return optuna.storages.RDBStorage(_rdb_url(url), engine_kwargs=engine_kwargs, **heartbeat)
    except ImportError as exc:  # Optuna re-raises the driver's ModuleNotFoundError as its cause
        cause = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
        raise _missing_driver(masked, getattr(cause, "name", None)) from None
    except Exception as exc:  # SQLAlchemy raises many types; all mean "cannot open"
        reason = _first_line(exc)
        if "Can't load plugin" in reason:
            reason += f"; {_HINT}"
        raise UserInputError(f"cannot open storage {masked}: {reason}") from None
