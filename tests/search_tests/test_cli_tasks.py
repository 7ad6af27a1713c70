"""`jointnas run` on data that is missing or malformed: exit 2, one line naming what was expected, no storage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jointnas.search.cli import main

from ..conftest import TINY_CONFIG, write_config
from ..datafiles import write_cifar_batches

BAD_CUSTOM = """
def load(config):
    return [1, 2, 3]
"""


def _config(tmp_path, task: str, family: str = "cnn"):
    text = TINY_CONFIG.replace('dataset = "digits"', task).replace('family = "cnn"', f'family = "{family}"')
    return write_config(tmp_path, text)


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ('dataset = "cifar10"\npath = "nowhere"', "CIFAR-10 path nowhere does not exist; set [task] path"),
        ('dataset = "cifar10"\npath = "data"', "expected the python batches data_batch_1..5 and test_batch"),
        ('dataset = "cifar10"', "dataset 'cifar10' reads its data from disk; set [task] path"),
        ('dataset = "tinychat"\npath = "data"', "is not a file; set [task] path to a text file of 'query|response'"),
        ('dataset = "bad_task_mod:load"', "returned list; expected (train, val, test, input_shape)"),
        ('dataset = "mnist1d"', "family 'cnn' needs inputs shaped (channels, height, width), but the task gives"),
    ],
)
def test_bad_data_exits_2_naming_what_was_expected_and_writes_nothing(tmp_path, monkeypatch, capsys, task, message):
    (tmp_path / "data").mkdir()  # a folder without data_batch_1
    (tmp_path / "bad_task_mod.py").write_text(BAD_CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, task)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == before  # no .db, no LUT


def test_wrong_format_through_the_console_entry_has_no_traceback(tmp_path):
    data = write_cifar_batches(tmp_path / "cifar")
    (data / "data_batch_1").unlink()
    cfg = _config(tmp_path, f'dataset = "cifar10"\npath = "{data}"')
    res = subprocess.run([sys.executable, "-m", "jointnas.search.cli", "run", str(cfg)], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "is not a CIFAR-10 folder: expected the python batches data_batch_1..5" in res.stderr
    assert not list(tmp_path.glob("*.db"))
