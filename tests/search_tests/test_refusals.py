"""Every refusal is exit 2 with one line, and a refused command leaves the storage as it was.

`jointnas run` checks the config, output folder, data, device profile and latency table, sampler options,
storage and stored config before it creates a study (no SQLite file, no study); the read-only commands
never create a storage file; output paths of the wrong kind are refused before anything is opened;
passwords are masked whatever characters they hold.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path

import optuna
import pytest

from jointnas.search.cli import main
from jointnas.search.config import load_config
from jointnas.search.storage import install_log_masking, mask_password, remember_secrets, url_secrets
from jointnas.search.study import create_or_resume

from ..conftest import TINY_CONFIG, write_config

GOOD_TABLE = {"format": 2, "device": "ort-cpu", "threads": 1, "fingerprint": {}, "entries": {}}
BAD_SHAPE = {"t.json": json.dumps({**GOOD_TABLE, "entries": [3]})}  # entries a list, not a map


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts)


def _refused(capsys, argv: list[str]) -> str:
    """Run ``argv``; assert exit 2 and one stderr line without a traceback; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _with(edit: tuple[str, str], files: dict[str, str]):
    def setup(tmp_path: Path) -> Path:
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        return write_config(tmp_path, TINY_CONFIG.replace(*edit), "tiny.toml")

    return setup


DEVICE = "[device]\nrepeats = 3"
RUN_REFUSALS = {
    "profile-malformed": (
        _with((DEVICE, '[device]\nname = "board.toml"\nrepeats = 3'), {"board.toml": "name = ["}),
        "device profile",
        "is not valid TOML",
    ),
    "profile-missing": (
        _with((DEVICE, '[device]\nname = "boards/none.toml"\nrepeats = 3'), {}),
        "device profile file",
        "cannot be read",
    ),
    "profile-unknown-field": (
        _with((DEVICE, '[device]\nname = "b.toml"\nrepeats = 3'), {"b.toml": 'name = "b"\nlatency = "ort"\nclok = 1'}),
        "clok: Extra inputs are not permitted",
        "fix the profile file",
    ),
    "profile-wrong-type": (
        _with((DEVICE, '[device]\nname = "b.json"\nrepeats = 3'), {"b.json": '{"name": "b", "flash_bytes": "lots"}'}),
        "flash_bytes",
        "fix the profile file",
    ),
    "imported-device-without-table": (
        _with((DEVICE, '[device]\nname = "rpi4"\nrepeats = 3'), {}),
        "device 'rpi4' predicts latency from a table built on the board",
        "set [device] lut",
    ),
    "table-corrupt": (
        _with((DEVICE, '[device]\nlut = "t.json"\nrepeats = 3'), {"t.json": '{"format": 2, "entr'}),
        "latency table",
        "unreadable, truncated or corrupt",
    ),
    "table-wrongly-shaped": (
        _with((DEVICE, '[device]\nlut = "t.json"\nrepeats = 3'), BAD_SHAPE),
        "latency table",
        "is corrupt (bad or missing field",
    ),
    "table-is-a-folder": (
        lambda p: (p / "t.json").mkdir() or _with((DEVICE, '[device]\nlut = "t.json"\nrepeats = 3'), {})(p),
        "latency table",
        "unreadable",
    ),
    "table-under-a-file": (
        _with((DEVICE, '[device]\nlut = "afile/t.json"\nrepeats = 3'), {"afile": ""}),
        "[device] lut",
        "afile is a file, not a folder",
    ),
    "table-of-another-device": (
        _with(
            (DEVICE, '[device]\nname = "rpi4"\nlut = "t.json"\nrepeats = 3'),
            {"t.json": json.dumps(GOOD_TABLE)},
        ),
        "was built for device 'ort-cpu', not 'rpi4'",
        "",
    ),
    "table-other-format": (
        _with((DEVICE, '[device]\nlut = "t.json"\nrepeats = 3'), {"t.json": json.dumps({**GOOD_TABLE, "format": 1})}),
        "has format 1",
        "rebuild it",
    ),
    "data-path-missing": (
        _with(('dataset = "digits"', 'dataset = "cifar10"\npath = "nowhere"'), {}),
        "CIFAR-10 path nowhere does not exist",
        "",
    ),
    "task-module-raises-on-import": (
        _with(('dataset = "digits"', 'dataset = "boom_on_import:load"'), {"boom_on_import.py": "x = 1 / 0\n"}),
        "custom task 'boom_on_import:load': importing module 'boom_on_import' raised ZeroDivisionError",
        "fix the module",
    ),
    "task-function-raises": (
        _with(
            ('dataset = "digits"', 'dataset = "boom_in_call:load"'),
            {"boom_in_call.py": "def load(config):\n    raise KeyError('labels')\n"},
        ),
        "custom task 'boom_in_call:load': the function raised KeyError: 'labels'",
        "fix the function",
    ),
    "sampler-unknown-option": (
        _with(('name = "random"', 'name = "random"\noptions = { n_startup = 3 }'), {}),
        "sampler 'random' has no option 'n_startup'",
        "",
    ),
    "storage-unreachable": (
        _with(('name = "tiny"', 'name = "tiny"\nstorage = "postgresql://nobody:p@ss w/rd@127.0.0.1:1/x"'), {}),
        "cannot open storage postgresql://nobody:***@127.0.0.1:1/x",
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(RUN_REFUSALS))
def test_refused_run_creates_no_storage_file_no_study_no_artifacts(tmp_path, monkeypatch, capsys, case):
    setup, part1, part2 = RUN_REFUSALS[case]
    monkeypatch.chdir(tmp_path)  # custom task modules sit in the working directory (docs/tasks.md)
    monkeypatch.setattr(sys, "path", list(sys.path))
    cfg = setup(tmp_path)
    before = _files(tmp_path)
    line = _refused(capsys, ["run", str(cfg)])
    assert part1 in line and part2 in line, line
    assert "p@ss" not in line and "w/rd" not in line
    assert _files(tmp_path) == before  # no tiny.db, no LUT, no tiny-artifacts/


@pytest.mark.parametrize("target", ["file", "under-a-file"])
def test_run_artifact_dir_naming_a_file_is_refused_before_the_study(tmp_path, capsys, target):
    cfg = write_config(tmp_path, TINY_CONFIG, "tiny.toml")
    (tmp_path / "taken").write_text("")
    arg = tmp_path / "taken" if target == "file" else tmp_path / "taken" / "sub"
    line = _refused(capsys, ["run", str(cfg), "--artifact-dir", str(arg)])
    assert line.startswith(f"error: --artifact-dir {arg}") and "is a file" in line, line
    assert _files(tmp_path) == ["taken", "tiny.toml"]


def test_changed_config_is_refused_and_the_stored_study_is_unchanged(tmp_path, capsys):
    cfg = write_config(tmp_path, TINY_CONFIG, "tiny.toml")
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    create_or_resume(load_config(cfg), url)
    before = optuna.load_study(study_name="tiny", storage=url)
    attrs, n_studies = dict(before.user_attrs), len(optuna.get_all_study_summaries(url))
    cfg.write_text(TINY_CONFIG.replace("finetune_epochs = 1", "finetune_epochs = 3"))
    line = _refused(capsys, ["run", str(cfg)])
    assert "config differs from the one stored in study 'tiny' (pipeline.finetune_epochs: study has 1" in line
    after = optuna.load_study(study_name="tiny", storage=url)
    assert after.user_attrs == attrs and after.trials == [] and len(optuna.get_all_study_summaries(url)) == n_studies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
@pytest.mark.parametrize("command", ["pareto", "trials", "report", "export", "dashboard"])
def test_read_only_commands_never_create_a_storage_file(tmp_path, capsys, command, kind):
    url = f"sqlite:///{tmp_path / 'none.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'none.log'}"
    argv = {
        "pareto": ["pareto", "--storage", url, "--study-name", "x"],
        "trials": ["trials", "--storage", url, "--study-name", "x"],
        "report": ["report", "--storage", url, "--study-name", "x", "--out", str(tmp_path / "r.html")],
        "export": ["export", "--storage", url, "--study-name", "x", "--trial", "0", "--out", str(tmp_path / "e")],
        "dashboard": ["dashboard", "--storage", url, "--port", str(_free_port())],
    }[command]
    line = _refused(capsys, argv)
    path = tmp_path / ("none.db" if kind == "sqlite" else "none.log")
    assert line.startswith(f"error: cannot open storage {url}: file {path} does not exist; check --storage"), line
    assert _files(tmp_path) == []


def test_worker_on_a_missing_storage_file_creates_none(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    line = _refused(capsys, ["worker", "--storage", url, "--study-name", "x"])
    assert "file " in line and "does not exist; check --storage" in line
    assert _files(tmp_path) == []


def test_compare_checks_the_device_before_creating_sibling_studies(tmp_path, capsys):
    cfg = write_config(tmp_path, TINY_CONFIG.replace("[device]\n", '[device]\nname = "rpi4"\n'), "tiny.toml")
    line = _refused(capsys, ["compare", str(cfg), "--out", str(tmp_path / "cmp")])
    assert "device 'rpi4' predicts latency from a table built on the board" in line
    assert _files(tmp_path) == ["tiny.toml"]


@pytest.fixture
def stored(tmp_path) -> str:
    cfg = write_config(tmp_path, TINY_CONFIG, "tiny.toml")
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    create_or_resume(load_config(cfg), url)
    (tmp_path / "afile").write_text("")
    (tmp_path / "afolder").mkdir()
    return url


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "--trial", "0", "--out", "afile"], "--out {p}/afile is a file; give a folder"),
        (["export", "--trial", "0", "--out", "afile/sub"], "--out {p}/afile/sub: {p}/afile is a file, not a folder"),
        (["report", "--out", "afolder"], "--out {p}/afolder is a folder; give a file path such as {p}/afolder/report"),
        (["report", "--out", "afile/r.html"], "--out {p}/afile/r.html: {p}/afile is a file, not a folder"),
    ],
)
def test_output_paths_of_the_wrong_kind_are_one_line_and_exit_2(tmp_path, capsys, stored, argv, message):
    full = [argv[0], "--storage", stored, "--study-name", "tiny"]
    for a in argv[1:]:
        full.append(str(tmp_path / a) if a.startswith(("afile", "afolder")) else a)
    line = _refused(capsys, full)
    assert message.format(p=tmp_path) in line, line
    assert len(optuna.load_study(study_name="tiny", storage=stored).trials) == 0


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql://nobody:s3cret@PW@127.0.0.1:5432/test", ["s3cret", "PW"]),  # '@' in the password
        ("postgresql://nobody:ab/s3cretPW@127.0.0.1:5432/test", ["ab/s3cretPW", "s3cretPW"]),  # '/'
        ("mysql+pymysql://root:p%40ss%2Fw0rd@127.0.0.1:3306/test", ["p%40ss", "w0rd"]),  # percent-encoded
        ("postgresql://nobody@127.0.0.1:5432/test?password=s3cretPW&sslmode=disable", ["s3cretPW"]),
        ("redis://127.0.0.1:6379/0?db=1&password=s3cretPW", ["s3cretPW"]),
    ],
)
def test_passwords_are_masked_wherever_the_url_carries_them(url, secrets):
    text = f"error: cannot open storage {url}: connection to server at '127.0.0.1' failed"
    masked = mask_password(text)  # without remembering the URL: the URL patterns alone
    assert not any(s in masked for s in secrets), masked
    assert masked.count("***") == 1 and masked.endswith("connection to server at '127.0.0.1' failed")
    assert "127.0.0.1" in masked.split("***")[1]  # the host stays visible


def test_a_remembered_password_with_a_space_is_masked_anywhere(caplog):
    url = "postgresql://nobody:my s3cret/pw@db-host:5432/test"
    assert url_secrets(url) == ["my s3cret/pw"]
    remember_secrets(url)
    assert mask_password(f"study on {url}; the password 'my s3cret/pw' was refused") == (
        "study on postgresql://nobody:***@db-host:5432/test; the password '***' was refused"
    )
    install_log_masking()  # what every jointnas command does first
    with caplog.at_level(logging.ERROR):
        logging.getLogger("sqlalchemy.pool").error("cannot reach %s", url)
    assert caplog.records[-1].getMessage() == "cannot reach postgresql://nobody:***@db-host:5432/test"


def test_run_with_a_password_holding_at_and_slash_never_shows_it(tmp_path):
    import subprocess

    url = "postgresql://nobody:ab/s3c@retPW@127.0.0.1:1/test"
    cfg = write_config(tmp_path, TINY_CONFIG, "tiny.toml")
    cmd = [sys.executable, "-m", "jointnas.search.cli", "run", str(cfg), "--storage", url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: cannot open storage postgresql://nobody:***@127.0.0.1:1/test: ")
    assert "s3c" not in res.stderr and "retPW" not in res.stderr and "ab/" not in res.stderr
    assert _files(tmp_path) == ["tiny.toml"]


CWD_TASK = """
import torch
from torch.utils.data import TensorDataset


def load(config):
    g = torch.Generator().manual_seed(0)
    split = lambda n: TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 3)
    return split(30), split(12), split(12), (1, 8, 8)
"""


def test_a_task_module_in_the_working_directory_is_found(tmp_path, monkeypatch):
    from jointnas.objectives import TaskConfig, load_task

    (tmp_path / "cwd_task_mod.py").write_text(CWD_TASK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    task = load_task(TaskConfig(dataset="cwd_task_mod:load"))
    assert task.num_classes == 3 and task.input_shape == (1, 8, 8) and len(task.y_train) == 30


def test_the_console_script_finds_a_task_module_in_the_working_directory(tmp_path):
    import shutil
    import subprocess

    script = shutil.which("jointnas", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the jointnas console script is not installed next to this interpreter")
    (tmp_path / "cwd_task_mod2.py").write_text(CWD_TASK)
    # The device check comes after the task load: its refusal shows the task module was imported.
    text = TINY_CONFIG.replace('dataset = "digits"', 'dataset = "cwd_task_mod2:load"')
    cfg = write_config(tmp_path, text.replace("[device]\n", '[device]\nname = "rpi4"\n'), "tiny.toml")
    res = subprocess.run([script, "run", str(cfg)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2 and "device 'rpi4' predicts latency from a table" in res.stderr, res.stderr
    assert not (tmp_path / "tiny.db").exists()
