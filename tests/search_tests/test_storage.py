"""`open_storage` against the real services: round trips, one-line errors, masked passwords."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import optuna
import pytest

from jointnas.search import storage as storage_module
from jointnas.search.cli import main
from jointnas.search.storage import journal_path, mask_password, open_storage
from jointnas.spaces import UserInputError

from ..conftest import write_config
from ._distributed import MYSQL_URL, PG_URL, REDIS_URL, make_config, service_or_skip, unique

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql", "journal", "journal-bare", "redis"])
def test_each_storage_round_trips_a_study(tmp_path, kind):
    url = {
        "sqlite": f"sqlite:///{tmp_path / 's.db'}",
        "postgresql": PG_URL,
        "mysql": MYSQL_URL,
        "journal": f"journal://{tmp_path / 's.log'}",
        "journal-bare": str(tmp_path / "s.journal"),
        "redis": REDIS_URL,
    }[kind]
    if kind in ("postgresql", "mysql", "redis"):
        service_or_skip(url)
    name = unique(f"store-{kind}")
    study = optuna.create_study(study_name=name, storage=open_storage(url), directions=["maximize", "minimize"])
    study.set_user_attr("jointnas:config_hash", "abc")
    trial = study.ask()
    trial.suggest_int("width", 8, 64)
    study.tell(trial, [0.5, 2.0])
    again = optuna.load_study(study_name=name, storage=open_storage(url))  # a second "worker"
    assert again.trials[0].values == [0.5, 2.0]
    assert again.user_attrs["jointnas:config_hash"] == "abc"
    if kind in ("journal", "journal-bare"):
        assert journal_path(url).exists()
    optuna.delete_study(study_name=name, storage=open_storage(url))  # leave the shared services clean


def test_bare_postgresql_url_uses_an_installed_driver():
    service_or_skip(PG_URL)
    storage = open_storage(PG_URL, heartbeat_s=None)
    expected = "postgresql+psycopg" if importlib.util.find_spec("psycopg") else "postgresql+psycopg2"
    assert storage.url.startswith(expected + "://")
    assert open_storage(PG_URL).get_heartbeat_interval() == 10  # heartbeats on by default


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://postgres:s3cr3t@127.0.0.1:1/test", "Connection refused"),  # unreachable host
        ("mysql+pymysql://root:s3cr3t@127.0.0.1:3306/test", "Access denied"),  # bad credentials
        ("postgresql://nobody:s3cr3t@127.0.0.1:5432/test", 'role "nobody" does not exist'),
        ("mysql+mysqldb://root:s3cr3t@127.0.0.1/test", "driver 'MySQLdb' is not installed; pip install mysqlclient"),
        ("postgresql+asyncpg://u:s3cr3t@127.0.0.1/test", "driver 'asyncpg' is not installed"),
        ("redis://:s3cr3t@127.0.0.1:1/0", "Connection refused"),
        ("nosuch://u:s3cr3t@h/d", "use sqlite:///FILE.db"),
        ("/no/such/dir/s.log", "folder /no/such/dir does not exist"),
        ("study.db", "is not a URL"),
    ],
)
def test_bad_storage_is_one_line_with_password_masked_and_exit_2(url, expected, capsys):
    with pytest.raises(UserInputError) as info:
        open_storage(url)
    msg = str(info.value)
    assert expected in msg and "\n" not in msg and "s3cr3t" not in msg
    assert main(["trials", "--storage", url, "--study-name", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open storage") or "is not a URL" in err
    assert "s3cr3t" not in err and "Traceback" not in err and err.count("\n") == 1


def test_missing_redis_driver_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` now raises ImportError
    with pytest.raises(UserInputError, match=r"driver 'redis' is not installed; pip install redis"):
        open_storage("redis://:pw@127.0.0.1:6379/0")


def test_mask_password_masks_every_url():
    text = "a postgresql://u:pw1@h/db and mysql+pymysql://root:p%40ss@h:3306/d, redis://:pw2@h:6379/0"
    masked = mask_password(text)
    assert "pw1" not in masked and "p%40ss" not in masked and "pw2" not in masked
    assert masked.count("***") == 3


def _optuna_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Optuna's own command line (``optuna ...``), run by this interpreter."""
    code = "import sys; from optuna.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_optuna_cli_and_dashboard_read_a_study_jointnas_made_on_postgresql(tmp_path):
    """The ``postgres`` extra's psycopg 3 is what SQLAlchemy 2.1 picks for a bare ``postgresql://`` URL,
    so Optuna's tools read the URL jointnas was given."""
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg 3) is not installed")
    service_or_skip(PG_URL)
    name = unique("optuna-cli")
    config = make_config(tmp_path, name, PG_URL).read_text().replace("n_trials = 2", "n_trials = 1")
    path = write_config(tmp_path, config, f"{name}.toml")
    try:
        assert main(["run", str(path)]) == 0
        studies = _optuna_cli("studies", "--storage", PG_URL, "-f", "json")
        assert studies.returncode == 0, studies.stderr
        row = next(s for s in json.loads(studies.stdout) if s["name"] == name)
        assert row["n_trials"] == 1
        best = _optuna_cli("best-trials", "--storage", PG_URL, "--study-name", name, "-f", "json")
        assert best.returncode == 0, best.stderr
        assert [t["state"] for t in json.loads(best.stdout)] == ["COMPLETE"]
        import optuna_dashboard._storage_url as dash_url

        summaries = optuna.get_all_study_summaries(dash_url.get_storage(PG_URL))  # what optuna-dashboard opens
        assert name in {s.study_name for s in summaries}
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(PG_URL, heartbeat_s=None))


def test_psycopg2_alone_still_opens_a_bare_postgresql_url(monkeypatch):
    service_or_skip(PG_URL)
    pytest.importorskip("psycopg2")
    monkeypatch.setattr(storage_module, "PG_DRIVERS", (("psycopg2", "postgresql+psycopg2"),))
    name = unique("psycopg2-only")
    storage = open_storage(PG_URL, heartbeat_s=None)
    assert storage.url.startswith("postgresql+psycopg2://")
    study = optuna.create_study(study_name=name, storage=storage)
    try:
        study.tell(study.ask(), 1.5)
        assert optuna.load_study(study_name=name, storage=storage).trials[0].value == 1.5
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_no_postgresql_driver_names_the_extra_package(monkeypatch):
    monkeypatch.setattr(storage_module, "PG_DRIVERS", ())
    monkeypatch.setitem(sys.modules, "psycopg", None)  # SQLAlchemy's default driver cannot be imported
    with pytest.raises(UserInputError, match=r"driver 'psycopg' is not installed; pip install 'psycopg\[binary\]'"):
        open_storage("postgresql://u:s3cr3t@127.0.0.1/test", heartbeat_s=None)
