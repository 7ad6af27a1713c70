"""`jointnas report`: figures in one offline HTML file and in the study for optuna-dashboard."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna_dashboard import get_note

from jointnas.search.cli import main
from jointnas.search.tools.report import build_report, front_rows


def _fake_study(url: str, name: str = "fake", n: int = 12, curves: list | None = None) -> optuna.Study:
    """A jointnas-shaped 3-objective study without training: values follow the parameters."""
    study = optuna.create_study(storage=url, study_name=name, directions=["maximize", "minimize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.set_metric_names(["accuracy", "latency_ms", "flash_bytes"])
    for _ in range(n):
        trial = study.ask()
        width = trial.suggest_categorical("s0_width", [0.5, 1.0])
        bits = trial.suggest_categorical("s0_wbits", [4, 8, 32])
        prune = trial.suggest_float("s0_prune", 0.0, 0.5, step=0.25)
        acc = 0.5 + 0.3 * width + 0.01 * bits - 0.1 * prune
        flash = 1000 * width * bits / 8 * (1 - prune)
        trial.set_user_attr("test_accuracy", acc - 0.01)
        trial.set_user_attr("flash_ratio_vs_fp32", bits / 32 * (1 - prune))
        trial.set_user_attr("params", int(1000 * width))
        trial.set_user_attr("feasible", True)
        if curves is not None:
            trial.set_user_attr("curves", curves)
        study.tell(trial, [acc, 0.1 * width * (1 - prune), flash])
    return study


def test_report_html_and_dashboard(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _fake_study(url)
    out = tmp_path / "sub" / "report.html"
    code = main(["report", "--storage", url, "--study-name", "fake", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    ids = [
        "pareto-accuracy-latency_ms",
        "pareto-accuracy-flash_bytes",
        "pareto-latency_ms-flash_bytes",
        "pareto-3d",
        "parallel-coordinates",
        "importance-accuracy",
        "history-flash_bytes",
        "timeline",
    ]
    for fig_id in ids:
        assert f'id="{fig_id}"' in text, fig_id
    # plotly.js is embedded once: the file opens offline, no CDN script tag.
    assert "<script src=" not in text and text.count("Plotly.newPlot") >= len(ids)
    assert len(text) > 3_000_000
    # The front table lists exactly the Pareto-optimal trials.
    best = {t.number for t in study.best_trials}
    assert {r["trial"] for r in front_rows(study)} == best
    # The same figures are in the study for optuna-dashboard, under stable ids, plus a note.
    loaded = optuna.load_study(study_name="fake", storage=url)
    system = loaded._storage.get_study_system_attrs(loaded._study_id)
    for fig_id in ids:
        assert f"dashboard:plot_data:jointnas-{fig_id}:0" in system, fig_id
    note = get_note(optuna.load_study(study_name="fake", storage=url))
    assert "Pareto-optimal trials" in note and "jointnas-pareto-3d" in note


def test_report_cdn_is_small_and_two_objectives(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="two", directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.set_metric_names(["accuracy", "flash_bytes"])
    for i in range(6):
        t = study.ask()
        x = t.suggest_float("x", 0, 1)
        study.tell(t, [x, x * 100 + i])
    report = build_report(study)
    assert [f.id for f in report.figures if f.id.startswith("pareto")] == ["pareto-accuracy-flash_bytes"]
    out = tmp_path / "r.html"
    assert main(["report", "--storage", url, "--study-name", "two", "--out", str(out), "--plotlyjs", "cdn"]) == 0
    assert '<script src="https://cdn.plot.ly/' in out.read_text() and out.stat().st_size < 500_000


def test_report_empty_study_and_missing_study(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=url, study_name="empty", directions=["maximize", "minimize"])
    out = tmp_path / "e.html"
    assert main(["report", "--storage", url, "--study-name", "empty", "--out", str(out)]) == 0
    assert "no COMPLETE trial" in out.read_text()
    capsys.readouterr()
    code = main(["report", "--storage", url, "--study-name", "nope", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "study 'nope' does not exist" in err and "empty" in err


@pytest.mark.parametrize("argv", [["--study-name", "x", "--out", "o.html"]])
def test_report_requires_storage(argv):
    with pytest.raises(SystemExit) as exc:
        main(["report", *argv])
    assert exc.value.code == 2


def test_report_plots_the_front_trials_training_curves(tmp_path):
    study = _fake_study(f"sqlite:///{tmp_path / 's.db'}")
    assert "Training curves of the Pareto trials" in build_report(study).skipped  # none recorded: skipped, why
    curves = [
        {"step": "train", "loss": [2.0, 1.0], "val_accuracy": [0.5, 0.8]},
        {"step": "finetune", "loss": [0.9], "val_accuracy": [0.85]},
    ]
    study = _fake_study(f"sqlite:///{tmp_path / 'c.db'}", curves=curves)
    report = build_report(study)
    (fig,) = [f.figure for f in report.figures if f.id == "training-curves"]
    assert len(fig.data) == 2 * len(study.best_trials)  # a loss and an accuracy line per Pareto trial
    assert list(fig.data[0].y) == [2.0, 1.0, 0.9] and list(fig.data[1].y) == [0.5, 0.8, 0.85]
    assert list(fig.data[0].text) == ["train", "train", "finetune"]
