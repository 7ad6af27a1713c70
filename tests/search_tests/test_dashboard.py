"""`jointnas dashboard`: the HTTP API shows our metric names, user attrs, artifacts, Pareto plot and
note; a busy port is one line and exit 2; a headless Chromium screenshot of the study page."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from optuna.artifacts import upload_artifact

from jointnas.search.artifacts import open_artifact_store
from jointnas.search.cli import main
from jointnas.search.config import load_config
from jointnas.search.study import create_or_resume
from jointnas.search.tools.dashboard import PARETO_PLOT_ID
from jointnas.search.worker import record_run

from ._distributed import make_config, unique

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A jointnas study with two finished trials and their artifacts (no training), and its dashboard."""
    tmp = tmp_path_factory.mktemp("dash")
    url, name, art = f"sqlite:///{tmp / 'd.db'}", unique("dash"), tmp / "artifacts"
    study = create_or_resume(load_config(make_config(tmp, name, None)), url)
    record_run(study, 2, art)
    store = open_artifact_store(art)
    for i, values in enumerate(([0.9, 0.2, 3000.0], [0.8, 0.1, 1500.0])):
        trial = study.ask()
        trial.suggest_int("s0_width", 8, 16)
        trial.set_user_attr("test_accuracy", values[0] - 0.01)
        model = tmp / f"trial-{i:05d}.onnx"
        model.write_bytes(b"onnx-bytes-%d" % i)
        upload_artifact(artifact_store=store, file_path=str(model), study_or_trial=trial)
        study.tell(trial, values)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jointnas.search.cli", "dashboard", "--storage", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            _get(f"{base}/api/meta")
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"dashboard did not start: {proc.communicate()[1][-2000:]}")
            time.sleep(0.3)
    yield base, url, study, port
    proc.terminate()
    proc.wait(timeout=10)


def test_api_shows_metric_names_user_attrs_artifacts_plot_and_note(served):
    base, _, study, _ = served
    summaries = json.loads(_get(f"{base}/api/studies"))["study_summaries"]
    (summary,) = [s for s in summaries if s["study_name"] == study.study_name]
    detail = json.loads(_get(f"{base}/api/studies/{summary['study_id']}"))
    assert detail["objective_names"] == ["accuracy", "latency_ms", "flash_bytes"]
    assert {a["key"] for a in detail["user_attrs"]} >= {"jointnas:config_hash", "jointnas:n_trials"}
    trial = detail["trials"][1]
    assert trial["values"] == [0.8, 0.1, 1500.0]
    assert {a["key"]: a["value"] for a in trial["user_attrs"]}["test_accuracy"] == "0.79"
    (artifact,) = trial["artifacts"]
    assert artifact["filename"] == "trial-00001.onnx"
    body = _get(f"{base}/artifacts/{summary['study_id']}/{trial['trial_id']}/{artifact['artifact_id']}")
    assert body == b"onnx-bytes-1"
    (plot,) = detail["plotly_graph_objects"]
    assert plot["id"] == PARETO_PLOT_ID and "Pareto front" in plot["graph_object"]
    assert "| 1 | 0.8 | 0.1 | 1500 |" in detail["note"]["body"]


def test_busy_port_is_one_line_and_exit_2(served, capsys):
    _, url, _, port = served
    assert main(["dashboard", "--storage", url, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: port {port} on 127.0.0.1 is busy; pass --port with a free port\n"


def test_headless_chromium_screenshot_of_the_study_page(served, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); no screenshot taken")
    base, _, study, _ = served
    shot = tmp_path / "study.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    cmd += [f"--screenshot={shot}", "--window-size=1280,900", "--virtual-time-budget=8000"]
    subprocess.run([*cmd, f"{base}/dashboard/studies/{study._study_id}"], capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one


def test_pareto_note_never_overwrites_a_report_note(tmp_path):
    import optuna_dashboard

    from jointnas.search.tools.dashboard import save_study_notes

    study = create_or_resume(load_config(make_config(tmp_path, unique("note"), None)), f"sqlite:///{tmp_path / 'n.db'}")
    assert save_study_notes(study) is False  # nothing COMPLETE yet: nothing saved
    for values in ([0.9, 0.2, 3000.0], [0.8, 0.1, 1500.0], [0.7, 0.3, 4000.0]):
        trial = study.ask()
        trial.suggest_int("s0_width", 8, 16)
        study.tell(trial, values)
    assert save_study_notes(study) is True
    note = optuna_dashboard.get_note(study)
    assert "| 0 | 0.9 | 0.2 | 3000 |" in note and "| 2 |" not in note  # trial 2 is dominated
    optuna_dashboard.save_note(study, "# jointnas report of it\n")
    save_study_notes(study)
    assert optuna_dashboard.get_note(study) == "# jointnas report of it\n"
