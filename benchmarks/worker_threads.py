"""Torch threads of local workers: training time per trial with ``jointnas run --workers K``.

Writes benchmarks/results/worker_threads.json. Usage:

    python benchmarks/worker_threads.py [--n-trials 4] [--epochs 2] [--rounds 1]

Runs one fixed architecture (digits, the quickstart space narrowed to one candidate shape, random
compression choices) as separate studies, interleaved round by round:

* ``k1``: ``--workers 1`` with torch's default thread count (all cores);
* ``k2``: ``--workers 2`` with the default ``cores // 2`` threads each;
* ``k2-oversubscribed``: ``--workers 2 --torch-threads <cores>`` (each worker all cores: the behaviour
  before workers were given ``cores // K``).

Per condition: the median training seconds of a trial (``timings_s.train_s`` + ``finetune_s``, the
trial's user attrs), the median trial duration, and the wall seconds per COMPLETE trial (first trial
start to last completion over the number of trials, from the storage's timestamps: process start-up
excluded), with the ``torch_threads`` each trial recorded. Rounds alternate the order of the conditions
(``--reverse 1`` starts with the last), since the load of a shared machine drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from jointnas.search.cli.worker import available_cores
from jointnas.search.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
NARROW = {  # quickstart.toml lines -> one candidate shape, so conditions train the same network
    "depth = [1, 2]": "depth = [2, 2]",
    "width_mult = [0.5, 0.75, 1.0]": "width_mult = [1.0]",
    "kernel = [3, 5]": "kernel = [3]",
    "expansion = [2, 4, 6]": "expansion = [4]",
    "stem_channels = [8, 16]": "stem_channels = [16]",
    'name = "nsga2"': 'name = "random"',
    "options = { population_size = 10 }": "",
}


def _config(folder: Path, epochs: int) -> Path:
    text = (ROOT / "studies/quickstart.toml").read_text()
    for old, new in {
        **NARROW,
        "train_epochs = 10": f"train_epochs = {epochs}",
        "finetune_epochs = 3": "finetune_epochs = 1",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "bench.toml"
    path.write_text(text)
    return path


def _condition(config: Path, name: str, n_trials: int, flags: list[str]) -> dict[str, object]:
    url = f"journal://{config.parent / f'{name}.log'}"
    cmd = [sys.executable, "-m", "jointnas.search.cli", "run", str(config), "--storage", url, "--study-name", name]
    cmd += ["--n-trials", str(n_trials), *flags]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_s=None))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    timings = [t.user_attrs["timings_s"] for t in trials]
    return {
        "flags": flags,
        "complete": len(trials),
        "torch_threads": sorted({t.user_attrs["torch_threads"] for t in trials}),
        "train_s_median": statistics.median(x["train_s"] + x.get("finetune_s", 0.0) for x in timings),
        "trial_s_median": statistics.median(t.duration.total_seconds() for t in trials),
        "wall_s_per_trial": span / len(trials),
        "command_wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--reverse", type=int, default=0, help="1: start with the last condition")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/worker_threads.json"))
    args = parser.parse_args()
    cores = available_cores()
    conditions = {
        "k1": ["--workers", "1"],
        "k2": ["--workers", "2"],
        "k2-oversubscribed": ["--workers", "2", "--torch-threads", str(cores)],
    }
    runs: dict[str, list[dict[str, object]]] = {k: [] for k in conditions}
    with tempfile.TemporaryDirectory(prefix="jointnas-bench-threads-") as tmp:
        config = _config(Path(tmp), args.epochs)
        for r in range(args.rounds):
            order = list(conditions.items())
            for key, flags in order[::-1] if (r + args.reverse) % 2 else order:  # alternate the order
                runs[key].append(_condition(config, f"{key}-r{r}", args.n_trials, flags))
                print(key, json.dumps(runs[key][-1]), file=sys.stderr, flush=True)
    load = os.getloadavg()
    result = {
        "cores": cores,
        "load_average_after": [round(x, 2) for x in load],
        "n_trials": args.n_trials,
        "train_epochs": args.epochs,
        "first_condition": next(iter(conditions)) if not args.reverse else list(conditions)[-1],
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
