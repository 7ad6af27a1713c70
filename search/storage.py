"""The one storage opener: SQLite (default), PostgreSQL, MySQL, and Optuna's journal file."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from jointnas.spaces import UserInputError

_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@/\s]*)(?P<tail>@)")


def mask_password(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``."""
    return _PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", text)


def default_storage_url(config_path: Path, study_name: str) -> str:
    """An SQLite file named after the study, next to its config file."""
    return f"sqlite:///{(config_path.parent / f'{study_name}.db').resolve()}"


def _journal_path(url: str) -> str | None:
    if url.startswith("journal://"):
        return url[len("journal://") :]
    if url.endswith((".log", ".journal")) and "://" not in url:
        return url
    return None


def open_storage(url: str) -> BaseStorage:
    """Open ``url`` as an Optuna storage, or raise `UserInputError` naming the problem.

    ``sqlite:///path.db``, ``postgresql://…``, ``mysql+pymysql://…`` go to `optuna.storages.RDBStorage`;
    ``journal://path`` (or a path ending ``.log``/``.journal``) to a journal file storage.
    """
    masked = mask_password(url)
    journal = _journal_path(url)
    if journal is not None:
        path = Path(journal)
        if not path.parent.exists():
            raise UserInputError(f"cannot open storage {masked}: folder {path.parent} does not exist")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.parent.exists():
            raise UserInputError(f"cannot open storage {masked}: folder {path.parent} does not exist")
    elif "://" not in url:
        raise UserInputError(
            f"storage {masked!r} is not a URL; use sqlite:///FILE.db, postgresql://HOST/DB, "
            "mysql+pymysql://HOST/DB or journal://FILE.log"
        )
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=None)
    except ModuleNotFoundError as exc:
        raise UserInputError(
            f"cannot open storage {masked}: driver {exc.name!r} is not installed; pip install it"
        ) from None
    except Exception as exc:  # SQLAlchemy raises many types; all mean "cannot open"
        reason = mask_password(str(getattr(exc, "orig", None) or exc)).strip().splitlines()[0]
        raise UserInputError(f"cannot open storage {masked}: {reason}") from None
