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

Every storage gets a heartbeat: Optuna's on RDB storages, a lease in the trial's system attrs on
journal storages (`jointnas.search.heartbeat`). A RUNNING trial whose worker stopped beating for
``grace_s`` seconds is marked FAIL (``fail_reason`` names the worker) by the next worker and
re-queued (up to ``max_retry`` times) by `optuna.storages.RetryHeartbeatStaleTrialCallback`.
A call that lost its connection is retried for ``reconnect_s`` seconds, then `StorageLost`.
Every error is one line (`UserInputError`) with the password masked.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import optuna
from optuna.storages import BaseStorage

from jointnas.spaces import UserInputError

from .heartbeat import DEFAULT_RECONNECT_S, JournalHeartbeatStorage, ReasonRDBStorage

# The userinfo password of a URL in free text: everything after ``user:`` up to the last ``@`` of the
# token that a host follows (a password may hold ``@`` and ``/``); ``password=`` query parameters.
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>\S*)(?P<tail>@)(?=[\w\[])")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&;]password=)(?P<pw>[^&\s]*)", re.IGNORECASE)
#: Passwords of every URL this process was given (`remember_secrets`): masked wherever they appear,
#: whatever characters they hold (spaces included), in messages and log records.
_SECRETS: set[str] = set()
_SHORTEST_SECRET = 3  # shorter ones are masked only where they sit in a URL (else "***" would be everywhere)

#: Seconds between heartbeats of a running trial (every storage).
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


def url_secrets(url: str) -> list[str]:
    """The passwords a storage URL carries: its userinfo password (up to the last ``@`` before the host)
    and any ``password=`` query parameter, as written and percent-decoded.

    Example:
        >>> url_secrets("postgresql://nobody:a@b/c d@127.0.0.1:5432/test?password=x%40y")
        ['x%40y', 'x@y', 'a@b/c d', 'b/c d']
    """
    _, sep, rest = url.partition("://")
    if not sep:
        return []
    found = [m["pw"] for m in _QUERY_PASSWORD.finditer(rest)]
    authority = _QUERY_PASSWORD.sub("", rest)
    at = authority.rfind("@")
    user, colon, password = authority[: max(at, 0)].partition(":")
    if colon and password:
        found.append(password)
    out: list[str] = []
    for secret in found:
        # The pieces between '@' too: a parser that stops at the first '@' shows the rest as the host.
        for form in (secret, unquote(secret), *secret.split("@")[1:]):
            if form and form not in out:
                out.append(form)
    return out


def remember_secrets(url: str | None) -> None:
    """Mask the passwords of ``url`` in every later `mask_password` (messages, logs) of this process."""
    if url:
        _SECRETS.update(s for s in url_secrets(url) if len(s) >= _SHORTEST_SECRET)


def mask_password(text: str) -> str:
    """Replace every password in ``text`` with ``***``: those of the URLs given to `remember_secrets`
    wherever they appear, and in any URL the userinfo password and ``password=`` query parameters.

    The one masking function: every message the CLI prints and every log record goes through it.

    Example:
        >>> mask_password("cannot open postgresql://nobody:ab/s3c@ret@127.0.0.1:5432/test?sslmode=off")
        'cannot open postgresql://nobody:***@127.0.0.1:5432/test?sslmode=off'
        >>> mask_password("redis://h:6379/0?password=s3cret&db=1")
        'redis://h:6379/0?password=***&db=1'
    """
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", text)
    return _USERINFO.sub(lambda m: f"{m['head']}***{m['tail']}", text)


def install_log_masking() -> None:
    """Mask passwords in every log record of this process (Optuna's, SQLAlchemy's, ours), once."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_jointnas_masking", False):
        return

    def masked(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: logging reports it when it is emitted
            return record
        masked_text = mask_password(text)
        if masked_text != text:
            record.msg, record.args = masked_text, ()
        return record

    masked._jointnas_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked)


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
        return Path(url[len("sqlite:///") :].partition("?")[0])
    return journal_path(url)


def check_storage_folder(url: str) -> None:
    """Refuse an SQLite or journal file whose folder does not exist (checked without writing anything)."""
    path = storage_file(url)
    if path is not None and not path.parent.is_dir():
        raise UserInputError(f"cannot open storage {mask_password(url)}: folder {path.parent} does not exist")


def check_storage_exists(url: str) -> None:
    """Refuse an SQLite or journal file that does not exist (a command that only reads or joins a study)."""
    path = storage_file(url)
    if path is not None and not path.is_file():
        raise UserInputError(
            f"cannot open storage {mask_password(url)}: file {path} does not exist; check --storage "
            "(this command reads a study and creates no storage)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return mask_password(text.splitlines()[0] if text else type(exc).__name__)


def _rdb_url(url: str) -> str:
    """The SQLAlchemy URL of an RDB storage: a raw ``@`` of the userinfo encoded (`_quote_userinfo`), and
    an installed PostgreSQL driver for a bare ``postgresql://`` URL.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3, which the ``postgres`` extra installs (so Optuna's
    CLI and optuna-dashboard read the same URL); a bare URL uses whichever of `PG_DRIVERS` is importable,
    so psycopg2 alone works too. ``postgres://`` is accepted as an alias.
    """
    scheme, sep, rest = url.partition("://")
    if not scheme.startswith("sqlite"):  # a file path may hold '@'; a server URL's userinfo is encoded
        url = f"{scheme}{sep}{_quote_userinfo(rest)}"
    if scheme not in ("postgresql", "postgres"):
        return url
    for module, dialect in PG_DRIVERS:
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}{url[len(scheme) :]}"
    return f"postgresql{url[len(scheme) :]}"


def _quote_userinfo(rest: str) -> str:
    """Percent-encode a raw ``@`` in the userinfo (everything up to the last ``@`` before the host):
    SQLAlchemy would end the password at its first ``@`` and take the rest for the host."""
    at = rest.partition("?")[0].rfind("@")
    userinfo = rest[: max(at, 0)]
    if "@" not in userinfo:
        return rest
    return userinfo.replace("@", "%40") + rest[at:]


def _connect_args(url: str) -> dict[str, object]:
    """Bounded connection time, so an unreachable host is an error after seconds, not minutes."""
    if url.startswith(("postgresql", "mysql")):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


def _missing_driver(masked: str, name: str | None) -> UserInputError:
    pkg = _DRIVERS.get(name or "", name)
    return UserInputError(f"cannot open storage {masked}: driver {name!r} is not installed; pip install {pkg}")


def _open_redis(url: str, masked: str, heartbeat: dict[str, object]) -> BaseStorage:
    try:
        import redis  # noqa: F401  (checked here so a missing driver is one clear line)
    except ImportError:
        raise _missing_driver(masked, "redis") from None
    from optuna.storages.journal import JournalRedisBackend

    backend = JournalRedisBackend(url)
    try:
        backend._redis.ping()  # Optuna connects lazily; fail here, in one line, not mid-trial
    except Exception as exc:
        raise UserInputError(f"cannot open storage {masked}: {_first_line(exc)}") from None
    return JournalHeartbeatStorage(backend, **heartbeat)


def _heartbeat(heartbeat_s: int | None, grace_s: int | None, max_retry: int | None) -> dict[str, object]:
    """Heartbeat settings in Optuna's RDBStorage keywords; empty when heartbeats are off."""
    if heartbeat_s is None:
        return {}
    return {
        "heartbeat_interval": int(heartbeat_s),
        "grace_period": int(grace_s) if grace_s is not None else None,
        "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
    }


def _journal_heartbeat(rdb: dict[str, object]) -> dict[str, object]:
    """`_heartbeat`'s settings as `JournalHeartbeatStorage` keywords."""
    return {
        "heartbeat_s": rdb.get("heartbeat_interval"),
        "grace_s": rdb.get("grace_period"),
        "stale_callback": rdb.get("heartbeat_stale_trial_callback"),
    }


#: What a first open says when another process is creating the same tables at that moment.
_CREATE_RACE = ("already exists", "UNIQUE constraint failed", "duplicate key", "database is locked")


def _new_rdb(url: str, engine_kwargs: dict[str, object], heartbeat: dict[str, object]) -> BaseStorage:
    """`ReasonRDBStorage`; a first open that races another one creating the tables tries again."""
    for attempt in range(5):
        try:
            return ReasonRDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except Exception as exc:  # the other process won: its tables are there on the next try
            if attempt == 4 or not any(text in str(exc) for text in _CREATE_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("not reached")


def open_storage(
    url: str,
    *,
    heartbeat_s: int | None = DEFAULT_HEARTBEAT_S,
    grace_s: int | None = None,
    max_retry: int | None = DEFAULT_MAX_RETRY,
    must_exist: bool = False,
    reconnect_s: float = DEFAULT_RECONNECT_S,
) -> BaseStorage:
    """Open ``url`` as an Optuna storage, or raise `UserInputError` naming the problem.

    Args:
        url: a storage URL (see the module docstring).
        heartbeat_s: seconds between heartbeats of RUNNING trials; None disables them.
        grace_s: seconds without a heartbeat after which a trial is stale (default ``2 * heartbeat_s``).
        max_retry: how many times a stale trial is re-queued (None: without limit).
        must_exist: refuse an SQLite or journal file that does not exist instead of creating it (the
            commands that only read a study: ``pareto``, ``trials``, ``report``, ``export``, ``dashboard``).
        reconnect_s: seconds a call that lost its connection is retried before `StorageLost`.
    """
    remember_secrets(url)
    if must_exist:
        check_storage_exists(url)
    with warnings.catch_warnings():
        # Heartbeats, the retry callback and the Redis backend are "experimental" in Optuna 5.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = _open(url, _heartbeat(heartbeat_s, grace_s, max_retry))
    storage.reconnect_s = reconnect_s
    storage.masked_url = mask_password(url)
    storage.describe = _first_line
    return storage


def _open(url: str, heartbeat: dict[str, object]) -> BaseStorage:
    masked = mask_password(url)
    check_storage_folder(url)
    journal = journal_path(url)
    if journal is not None:
        from optuna.storages.journal import JournalFileBackend

        try:
            return JournalHeartbeatStorage(JournalFileBackend(str(journal)), **_journal_heartbeat(heartbeat))
        except OSError as exc:
            raise UserInputError(f"cannot open storage {masked}: {exc.strerror}") from None
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _open_redis(url, masked, _journal_heartbeat(heartbeat))
    if "://" not in url:
        raise UserInputError(f"storage {masked!r} is not a URL; {_HINT}")
    engine_kwargs = {"pool_pre_ping": True, **_connect_args(url)}
    try:
        return _new_rdb(_rdb_url(url), engine_kwargs, heartbeat)
    except ImportError as exc:  # Optuna re-raises the driver's ModuleNotFoundError as its cause
        cause = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
        raise _missing_driver(masked, getattr(cause, "name", None)) from None
    except Exception as exc:  # SQLAlchemy raises many types; all mean "cannot open"
        reason = _first_line(exc)
        if "Can't load plugin" in reason:
            reason += f"; {_HINT}"
        raise UserInputError(f"cannot open storage {masked}: {reason}") from None
