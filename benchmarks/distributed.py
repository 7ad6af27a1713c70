"""Distributed benchmark on the PostgreSQL service: worker scaling, storage overhead, kill-and-resume.

Writes benchmarks/results/distributed.json. Usage:

    python benchmarks/distributed.py [--quick] [--storage postgresql://postgres@127.0.0.1:5432/test]

* ``throughput``: trials/min with 1 and 2 worker processes on one study (global budget), for a
  sleeping trial (compute elsewhere: measures coordination through the storage) and a CPU-bound trial
  (one core spun per trial: bounded by the free cores of this shared machine). Workers load, then
  start their first trial together (``JOINTNAS_START_AT``); rate = COMPLETE trials / (last completion
  - first start) from the storage's own timestamps, so process start-up is excluded.
* ``storage_overhead``: wall ms per trial of `run_trials` and of plain `Study.optimize` with a no-op
  objective (random sampler, one worker, heartbeats on) in a study that already holds 1k / 10k
  COMPLETE trials, in interleaved rounds.
* ``kill_and_resume``: 3 workers, one SIGKILLed mid-trial, a fresh worker started; lost and
  duplicated trials counted from the storage; on PostgreSQL, and (``kill_and_resume_journal``,
  ``kill_and_resume_redis``) on a journal file and on the Redis service (leases, heartbeat 1 s,
  grace 2 s). ``--kill-only`` measures just these rows and ``journal_lease_cost`` (about two
  minutes) and keeps the other sections of an existing results file.
* ``journal_lease_cost``: ms per no-op trial of `run_trials` on a journal file with leases (exact
  budget) and without (COMPLETE-only count), 100 trials per round, interleaved rounds.

Workers are `tests/search_tests/_sleep_worker.py`: the real `jointnas.search.budget.run_trials`
without torch, so a worker starts in about a second.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from jointnas.search.attrs import TRIAL_WORKER
from jointnas.search.budget import run_trials
from jointnas.search.storage import mask_password, open_storage

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "search_tests" / "_sleep_worker.py"


def _name(tag: str) -> str:
    return f"bench-{tag}-{uuid.uuid4().hex[:8]}"


def _driver_url(storage, url: str) -> str:
    """The URL a light worker opens: open_storage's resolved RDB driver URL, else ``url`` (journals)."""
    return getattr(storage, "url", url)  # RDB: postgresql+psycopg2://...


def _spawn(url: str, study: str, n: int, trial: str, *hb: int, start_at: float = 0.0) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(WORKER), url, study, str(n), trial, *map(str, hb)]
    env = dict(os.environ, OMP_NUM_THREADS="1", JOINTNAS_START_AT=str(start_at))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 600) -> None:
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"worker failed: {err[-1000:]}")


def throughput(url: str, workers: int, n_trials: int, trial: str) -> dict[str, float]:
    storage = open_storage(url, heartbeat_s=None)
    name = _name(f"tp{workers}")
    optuna.create_study(study_name=name, storage=storage)
    start_at = time.time() + 5.0  # after every worker has loaded (about a second each)
    _finish([_spawn(_driver_url(storage, url), name, n_trials, trial, 5, start_at=start_at) for _ in range(workers)])
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(states=(TrialState.COMPLETE,))
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    optuna.delete_study(study_name=name, storage=storage)
    return {
        "workers": workers,
        "complete": len(trials),
        "span_s": round(span, 2),
        "trials_per_min": 60 * len(trials) / span,
    }


def _bulk_fill(storage, study: optuna.Study, n: int) -> None:
    """Insert ``n`` COMPLETE trials with one multi-row INSERT per table (Optuna's own schema).

    Benchmark-only shortcut: adding 10k trials one by one through the API takes many minutes on this
    shared machine; the rows are the ones `Study.add_trial` would write. The table is then ANALYZEd, as
    PostgreSQL's autovacuum does after that many new rows in a study that grew at its own pace (without
    it the planner reads all 10k rows of the study where an index range on ``trial_id`` reads a few).
    """
    import datetime

    import sqlalchemy
    from optuna.storages._rdb import models

    rdb = storage._backend if hasattr(storage, "_backend") else storage
    dist = json.dumps(optuna.distributions.distribution_to_json(optuna.distributions.FloatDistribution(0, 1)))
    dist = json.loads(dist)
    now = datetime.datetime.now()
    with rdb.engine.begin() as conn:
        rows = [
            {
                "number": i,
                "study_id": study._study_id,
                "state": TrialState.COMPLETE,
                "datetime_start": now,
                "datetime_complete": now,
            }
            for i in range(n)
        ]
        conn.execute(sqlalchemy.insert(models.TrialModel.__table__), rows)
        ids = (
            conn.execute(
                sqlalchemy.select(models.TrialModel.__table__.c.trial_id)
                .where(models.TrialModel.__table__.c.study_id == study._study_id)
                .order_by(models.TrialModel.__table__.c.trial_id)
            )
            .scalars()
            .all()
        )
        conn.execute(
            sqlalchemy.insert(models.TrialValueModel.__table__),
            [
                {
                    "trial_id": t,
                    "objective": 0,
                    "value": i / n,
                    "value_type": models.TrialValueModel.TrialValueType.FINITE,
                }
                for i, t in enumerate(ids)
            ],
        )
        conn.execute(
            sqlalchemy.insert(models.TrialParamModel.__table__),
            [
                {"trial_id": t, "param_name": "x", "param_value": i / n, "distribution_json": dist}
                for i, t in enumerate(ids)
            ],
        )
    if rdb.engine.dialect.name == "postgresql":
        with rdb.engine.begin() as conn:  # committed: a rolled-back ANALYZE keeps the old statistics
            conn.execute(sqlalchemy.text("ANALYZE trials, trial_values, trial_params"))


def _time_storage_calls(storage: object) -> list[float]:
    """Time every public method call on ``storage`` (wrapped on the instance, so ``isinstance`` checks —
    Optuna's heartbeat detection — still see the real class). Returns the running total (seconds) in a
    one-element list."""
    total = [0.0]
    for name in dir(type(storage)):
        attr = getattr(storage, name, None)
        if name.startswith("_") or not callable(attr):
            continue

        def timed(*args, _call=attr, **kwargs):
            t0 = time.perf_counter()
            try:
                return _call(*args, **kwargs)
            finally:
                total[0] += time.perf_counter() - t0

        setattr(storage, name, timed)
    return total


def storage_overhead(url: str, existing: int, measured: int, rounds: int = 5) -> dict[str, object]:
    """ms per trial of plain `Study.optimize` and of jointnas `run_trials`, no-op objective, in a study
    that already holds ``existing`` COMPLETE trials (heartbeats on, random sampler, fresh process cache).

    The two modes run in ``rounds`` interleaved chunks of ``measured / rounds`` trials each (Optuna,
    jointnas, Optuna, …) on their own study, so a change of machine state (this VM switches between
    an uncontended and a ~1.5x slower contended state for tenths of seconds at a time) hits both modes
    alike. The first trial of each chunk is left out (it also pays the call's set-up: a worker makes one
    call for all its trials). Reported per mode: wall time per trial (mean, median, each round's mean,
    the best round) — an upper bound, as it also holds the sampler's and Optuna's own bookkeeping — and
    the time spent inside storage calls per trial (every public method of the study's storage timed).
    """
    storage = open_storage(url)
    modes = ("optuna_optimize", "jointnas_run_trials")
    out: dict[str, object] = {"existing_trials": existing, "measured_trials": measured, "rounds": rounds}
    studies, names = {}, []
    for mode in modes:
        name = _name(f"ovh{existing}")
        names.append(name)
        study = optuna.create_study(study_name=name, storage=storage)
        t0 = time.perf_counter()
        _bulk_fill(storage, study, existing)
        out["fill_s"] = round(time.perf_counter() - t0, 1)
        fresh = open_storage(url)  # a worker joining the big study: its cache starts empty
        study = optuna.load_study(study_name=name, storage=fresh, sampler=optuna.samplers.RandomSampler(0))
        assert len(study.get_trials(deepcopy=False)) == existing  # also loads the cache, as a worker does
        studies[mode] = study
    in_storage = {mode: _time_storage_calls(studies[mode]._storage) for mode in modes}
    storage_s = {mode: 0.0 for mode in modes}
    counted = {mode: 0 for mode in modes}

    def objective(t: optuna.Trial) -> float:
        return t.suggest_float("x", 0, 1)

    chunk = max(1, measured // rounds)
    per_trial: dict[str, list[float]] = {m: [] for m in modes}
    round_means: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes:
            times: list[float] = []
            last = [time.perf_counter()]

            def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial, last=last, times=times) -> None:
                now = time.perf_counter()
                times.append(now - last[0])
                last[0] = now

            before = in_storage[mode][0]
            if mode == "optuna_optimize":
                studies[mode].optimize(objective, n_trials=chunk, callbacks=[tick])
            else:
                run_trials(studies[mode], objective, existing + (r + 1) * chunk, callbacks=[tick])
            storage_s[mode] += in_storage[mode][0] - before
            counted[mode] += len(times)
            steady = times[1:] or times  # the first trial of a call also pays the call's set-up
            per_trial[mode] += steady
            round_means[mode].append(statistics.mean(steady))
    for name in names:
        optuna.delete_study(study_name=name, storage=storage)
    for mode in modes:
        out[f"{mode}_mean_ms"] = round(1000 * statistics.mean(per_trial[mode]), 1)
        out[f"{mode}_p50_ms"] = round(1000 * statistics.median(per_trial[mode]), 1)
        out[f"{mode}_round_means_ms"] = [round(1000 * x, 1) for x in round_means[mode]]
        out[f"{mode}_best_round_ms"] = round(1000 * min(round_means[mode]), 1)
        out[f"{mode}_in_storage_calls_ms"] = round(1000 * storage_s[mode] / counted[mode], 1)
    out["jointnas_extra_ms"] = round(out["jointnas_run_trials_mean_ms"] - out["optuna_optimize_mean_ms"], 1)
    return out


def kill_and_resume(url: str, budget: int, trial: str) -> dict[str, object]:
    storage = open_storage(url, heartbeat_s=None)
    name = _name("kill")
    optuna.create_study(study_name=name, storage=storage)
    driver = _driver_url(storage, url)
    procs = [_spawn(driver, name, budget, trial, 1, 2) for _ in range(3)]
    victim, killed = procs[0], None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline:
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
            if t.state == TrialState.RUNNING and t.user_attrs.get(TRIAL_WORKER, "").endswith(f":{victim.pid}"):
                victim.send_signal(signal.SIGKILL)
                killed = t.number
                break
        time.sleep(0.05)
    victim.wait()
    procs.append(_spawn(driver, name, budget, trial, 1, 2))  # resume
    _finish(procs[1:])
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    states = collections.Counter(t.state.name for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    origins = [t.system_attrs.get("failed_trial", t.number) for t in complete]
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == killed]
    lost = max(0, budget - len(complete)) + (0 if retried else 1)
    duplicated = max(0, len(complete) - budget) + (len(origins) - len(set(origins)))
    duplicated += len(trials) - len({t.number for t in trials})
    optuna.delete_study(study_name=name, storage=storage)
    return {
        "storage": mask_password(url).split("://")[0],
        "budget": budget,
        "workers": 3,
        "killed_trial": killed,
        "killed_trial_retried_as": [t.number for t in retried],
        "states": dict(states),
        "lost": lost,
        "duplicated": duplicated,
    }


def kill_rows(url: str, redis_url: str, budget: int) -> dict[str, object]:
    """Kill-and-resume on ``url`` (PostgreSQL), a journal file in a temporary folder, and Redis."""
    import tempfile

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, where in (
            ("kill_and_resume", url),
            ("kill_and_resume_journal", f"journal://{tmp}/kill.log"),
            ("kill_and_resume_redis", redis_url),
        ):
            kr = kill_and_resume(where, budget, "1.0")
            print(
                f"kill and resume ({kr['storage']}): lost {kr['lost']}, duplicated {kr['duplicated']}, "
                f"states {kr['states']}",
                flush=True,
            )
            rows[key] = kr
    rows["journal_lease_cost"] = journal_lease_cost()
    rows["kill_and_resume_load"] = round(os.getloadavg()[0], 1)
    return rows


def journal_lease_cost(trials: int = 100, rounds: int = 3) -> dict[str, object]:
    """ms per no-op trial on a journal file, with leases (heartbeat 10 s) and without, interleaved."""
    import tempfile

    def objective(t: optuna.Trial) -> float:
        return t.suggest_float("x", 0, 1)

    per_trial: dict[str, list[float]] = {"with_lease": [], "without_lease": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for mode, heartbeat in (("with_lease", 10), ("without_lease", None)):
                storage = open_storage(f"journal://{tmp}/{mode}{r}.log", heartbeat_s=heartbeat)
                study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(r))
                t0 = time.perf_counter()
                run_trials(study, objective, trials)
                per_trial[mode].append(round(1000 * (time.perf_counter() - t0) / trials, 1))
    out: dict[str, object] = {f"{m}_round_ms": v for m, v in per_trial.items()}
    out.update({f"{m}_median_ms": statistics.median(v) for m, v in per_trial.items()})
    print(f"journal lease cost: {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test, about a minute)")
    parser.add_argument("--storage", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for the kill row")
    parser.add_argument("--kill-only", action="store_true", help="only the kill-and-resume rows")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/distributed.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    url = args.storage
    if args.kill_only:  # keep the other sections of the results file
        old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        return _write(args.out, {**old, **kill_rows(url, args.redis, 6 if args.quick else 12)})
    n_tp, sizes, measured, budget = (12, [100, 1000], 20, 6) if args.quick else (60, [1000, 10000], 100, 12)
    results: dict[str, object] = {"storage": mask_password(url), "quick": args.quick}

    tp = {}
    for kind, trial in (("sleep_0.5s", "0.5"), ("cpu_0.5s", "0.5cpu")):
        # 1 and 2 workers alternate, twice: this VM's speed changes over tens of seconds, so each
        # configuration keeps its fastest run (all runs are recorded).
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for _ in range(1 if args.quick else 2):
            for workers in (1, 2):
                runs[workers].append(throughput(url, workers, n_tp, trial))
        one, two = (max(runs[w], key=lambda r: r["trials_per_min"]) for w in (1, 2))
        tp[kind] = {
            "1_worker": one,
            "2_workers": two,
            "speedup": round(two["trials_per_min"] / one["trials_per_min"], 2),
            "all_runs": {
                f"{w}_worker{'s' if w > 1 else ''}": [round(r["trials_per_min"], 1) for r in runs[w]] for w in (1, 2)
            },
        }
        print(
            f"throughput {kind}: 1 worker {one['trials_per_min']:.1f}/min, 2 workers "
            f"{two['trials_per_min']:.1f}/min, speedup {tp[kind]['speedup']}x",
            flush=True,
        )
    results["throughput"] = tp
    results["throughput_goal"] = ">= 1.8x with 2 workers"
    _write(args.out, results)

    ovh = []
    for n in sizes:
        row = storage_overhead(url, n, measured, rounds=2 if args.quick else 10)
        ovh.append(row)
        print(
            f"storage overhead at {n} trials: jointnas run_trials {row['jointnas_run_trials_mean_ms']} ms/trial, "
            f"plain Optuna optimize {row['optuna_optimize_mean_ms']} ms/trial",
            flush=True,
        )
    results["storage_overhead"] = ovh
    results["storage_overhead_goal_ms"] = 50
    _write(args.out, results)

    results.update(kill_rows(url, args.redis, budget))
    load = os.getloadavg()
    results["notes"] = (
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 ≈ this benchmark alone); "
        "the 2-vCPU VM also switches between a fast and a ~1.5x slower state (other tenants), hence "
        "alternating repeats (throughput: fastest run per configuration) and interleaved rounds (overhead); "
        "workers are tests/search_tests/_sleep_worker.py (real run_trials, no torch)"
    )
    results["versions"] = {"optuna": optuna.__version__, "python": sys.version.split()[0]}
    _write(args.out, results)
    print(f"wrote {args.out}")


def _write(out: str, results: dict[str, object]) -> None:
    """Write what has been measured so far (a later failure keeps the earlier sections)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
