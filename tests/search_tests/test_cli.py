"""End to end through the CLI: run, resume, refuse a changed config, pareto/trials, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from jointnas.search.cli import main

from ..conftest import TINY_CONFIG, write_config


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_resume_and_inspect(tiny_config, capsys):
    code, out, err = _run(["run", str(tiny_config), "--json"], capsys)
    assert code == 0, err
    front = json.loads(out)
    assert front and set(front[0]["values"]) == {"accuracy", "latency_ms", "flash_bytes"}
    url = f"sqlite:///{tiny_config.parent / 'tiny.db'}"
    study = optuna.load_study(study_name="tiny", storage=url)
    assert study.metric_names == ["accuracy", "latency_ms", "flash_bytes"]
    assert study.user_attrs["jointnas:config_hash"]
    assert "torch" in study.user_attrs["jointnas:versions"]
    t0 = study.trials[0]
    for key in ("test_accuracy", "params", "macs", "flash_bytes", "sram_bytes", "layer_bits", "timings_s", "steps"):
        assert key in t0.user_attrs, key
    assert t0.values[2] == t0.user_attrs["flash_bytes"]
    assert (tiny_config.parent / "lut-ort-cpu-t1.json").exists()

    # Resume: same config, larger budget → exactly 3 COMPLETE trials, numbers 0..2.
    code, _, err = _run(["run", str(tiny_config), "--n-trials", "3"], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    # A changed config is refused with what differs, and nothing is added.
    changed = write_config(tiny_config.parent, TINY_CONFIG.replace("kernel = [3]", "kernel = [5]"), "tiny.toml")
    code, _, err = _run(["run", str(changed), "--n-trials", "4"], capsys)
    assert code == 2
    assert "space.kernel: study has [3], config has [5]" in err
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 3

    code, out, _ = _run(["trials", "--storage", url, "--study-name", "tiny", "--json"], capsys)
    assert code == 0 and [t["number"] for t in json.loads(out)] == [0, 1, 2]
    code, out, _ = _run(["pareto", "--storage", url, "--study-name", "tiny"], capsys)
    assert code == 0 and "Pareto front" in out and "accuracy" in out

    # Optuna's own CLI reads the study.
    optuna_cli = shutil.which("optuna", path=str(Path(sys.executable).parent)) or "optuna"
    res = subprocess.run(
        [optuna_cli, "studies", "--storage", url, "-f", "json"], capture_output=True, text=True, check=True
    )
    assert [s["name"] for s in json.loads(res.stdout)] == ["tiny"]
    res = subprocess.run(
        [optuna_cli, "best-trials", "--study-name", "tiny", "--storage", url, "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    best = json.loads(res.stdout)
    assert best and all(len(t["values"]) == 3 for t in best)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("train_epochs = 2", "train_epoch = 2"),
            "unknown key 'train_epoch' in [pipeline]; did you mean 'train_epochs'?",
        ),
        (("weight_bits = [4, 8, 32]", "weight_bits = [3, 8]"), "space.compression.weight_bits.0: input should be"),
        (
            ("train_epochs = 2", "train_epochs = -2"),
            "pipeline.train_epochs: input should be greater than or equal to 0",
        ),
        (('name = "tiny"', 'name = "tiny"\nstorage = "sqlite:////nonexistent/dir/x.db"'), "cannot open storage"),
        (('name = "tiny"', 'name = "tiny"\nstorage = "postgresql://u:secret@127.0.0.1:1/x"'), "cannot open storage"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, edit, message):
    cfg = write_config(tmp_path, TINY_CONFIG.replace(*edit))
    res = subprocess.run([sys.executable, "-m", "jointnas.search.cli", "run", str(cfg)], capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert "Traceback" not in res.stderr and "secret" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


def test_diverging_trial_fails_with_reason_and_study_goes_on(tmp_path, capsys):
    from jointnas.objectives.tasks import _TASKS, register_task

    @register_task("digits_with_nan")
    def _poisoned():
        x, y, shape = _TASKS["digits"]()
        x[::7] = float("nan")  # poisoned samples make the training loss NaN
        return x, y, shape

    try:
        cfg = write_config(tmp_path, TINY_CONFIG.replace('dataset = "digits"', 'dataset = "digits_with_nan"'))
        code, _, err = _run(["run", str(cfg), "--n-trials", "2"], capsys)
    finally:
        _TASKS.pop("digits_with_nan")
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(study.trials) == 2 and len(failed) == 2
    assert all(t.user_attrs["fail_reason"].startswith("diverged: loss became nan") for t in failed)


def test_same_seed_gives_same_first_trials(tmp_path, capsys):
    values = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        cfg = write_config(folder, TINY_CONFIG)
        assert _run(["run", str(cfg), "--n-trials", "2"], capsys)[0] == 0
        study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'tiny.db'}")
        values.append([(t.params, t.values[0], t.values[2]) for t in study.trials])
    assert values[0] == values[1]


def test_ctrl_c_marks_running_trial_and_exits_130(tmp_path):
    import signal
    import sqlite3
    import time

    cfg = write_config(tmp_path, TINY_CONFIG.replace("train_epochs = 2", "train_epochs = 400"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jointnas.search.cli", "run", str(cfg)], stderr=subprocess.PIPE, text=True
    )
    db = tmp_path / "tiny.db"
    deadline = time.time() + 60
    running = False
    while time.time() < deadline and not running:  # wait until a trial is RUNNING
        time.sleep(0.5)
        if db.exists():
            # Read-only peek: opening an Optuna storage here would race the worker creating the schema.
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    running = conn.execute("SELECT 1 FROM trials WHERE state = 'RUNNING'").fetchone() is not None
            except sqlite3.OperationalError:
                pass  # schema not created yet
    assert running
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    trial = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "interrupted (Ctrl-C)"
