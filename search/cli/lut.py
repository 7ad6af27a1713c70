"""``jointnas lut build`` and ``jointnas lut validate``: a device's latency table over a study's space."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jointnas.devices import REPEATS, ROUNDS, load_profile
from jointnas.spaces import UserInputError

from ..config import load_config
from ..paths import output_file
from ..tools.cycles import calibrate_cycles, validate_cycles
from ..tools.lut import build_table, validate_table
from .progress import LiveDisplay, terminal_progress


class _Bar(LiveDisplay):
    """A rich progress bar on a terminal, a line every 10% otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.progress = None
        self.task = None
        self.last = -1

    def __enter__(self) -> _Bar:
        self.progress = terminal_progress(self.label)
        return super().__enter__()

    def __call__(self, done: int, total: int) -> None:
        if self.progress is not None:
            if self.task is None:
                self.task = self.progress.add_task("", total=total)
            self.progress.update(self.task, completed=done)
            return
        tenth = done * 10 // max(1, total)
        if tenth != self.last:
            self.last = tenth
            print(f"{self.label} {done}/{total}", file=sys.stderr, flush=True)


def _fmt_metrics(name: str, m: dict[str, Any]) -> str:
    return (
        f"{name:<11} spearman {m['spearman']:.3f}  kendall {m['kendall']:.3f}  rmse {m['rmse_ms'] * 1000:.1f} us  "
        f"within ±10% {m['within_10pct']:.0%}  ±20% {m['within_20pct']:.0%}"
    )


def _cycles_line(name: str, m: dict[str, Any]) -> str:
    return (
        f"{name:<11} spearman {m['spearman']:.3f}  kendall {m['kendall']:.3f}  mean |error| "
        f"{m['mean_abs_rel_error']:.1%}  within ±5% {m['within_5pct']:.0%}  ±10% {m['within_10pct']:.0%}  "
        f"±20% {m['within_20pct']:.0%}"
    )


def _build_cycles(args: argparse.Namespace, config: Any) -> int:
    """``lut build`` for a microcontroller: the cycle model fitted in the simulator (`calibrate_cycles`)."""
    with _Bar("models") as bar:
        summary = calibrate_cycles(config, args.device, Path(args.out), n_models=args.n_calibration, progress=bar)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"cycle model of {summary['device']} fitted on {summary['n_linked']} of {summary['n_models']} random models "
        f"of {args.config} simulated → {summary['profile']} (use it as [device] name)"
    )
    print(_cycles_line("hand-set", summary["before"]))
    print(_cycles_line("fitted", summary["fit"]))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    output_file(args.out, "--out", "lut.json")
    if load_profile(args.device).is_mcu:
        return _build_cycles(args, config)
    with _Bar("blocks") as bar:
        summary = build_table(
            config,
            args.device,
            Path(args.out),
            threads=args.threads,
            n_calibration=args.n_calibration,
            seed=args.seed,
            rounds=args.rounds,
            repeats=args.repeats,
            progress=bar,
        )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    cal = summary["calibration"]
    print(
        f"{summary['blocks']} blocks of {args.config} measured for {summary['device']} "
        f"({summary['threads']} thread(s)) in {summary['total_s']:.0f} s → {summary['table']}"
    )
    print(
        f"calibration on {cal['n_samples']} random models: latency ≈ {cal['a']:.3f}·sum "
        f"{cal['b'] * 1000:+.2f} us·blocks {cal['c'] * 1000:+.2f} us"
    )
    print(_fmt_metrics("fit", summary["calibration_fit"]))
    return 0


def _validate_cycles(args: argparse.Namespace, config: Any) -> int:
    with _Bar("models") as bar:
        report = validate_cycles(config, args.device, n_models=args.n_archs, seed=args.seed, progress=bar)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    cyc = report["simulated_cycles"]
    state = "fitted" if report["calibrated"] else "hand-set"
    print(
        f"{report['n_linked']} of {report['n_models']} random models of {args.config} simulated on {report['device']}: "
        f"{cyc['min']:,.0f}-{cyc['max']:,.0f} cycles (median {cyc['median']:,.0f})"
    )
    print(_cycles_line(state, report["metrics"]))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if load_profile(args.device).is_mcu:
        return _validate_cycles(args, config)
    if args.table is None:
        raise UserInputError(f"--table is needed for {args.device!r} (its latency table); a cycles device has none")
    report = validate_table(
        config,
        args.device,
        Path(args.table),
        n_archs=args.n_archs,
        threads=args.threads,
        seed=args.seed,
        rounds=args.rounds,
        repeats=args.repeats,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    ms = report["measured_ms"]
    print(
        f"{report['n_archs']} random models of {args.config} on {report['device']}: measured "
        f"{ms['min'] * 1000:.0f}-{ms['max'] * 1000:.0f} us (median {ms['median'] * 1000:.0f} us)"
    )
    print(_fmt_metrics("raw sum", report["raw"]))
    print(_fmt_metrics("calibrated", report["calibrated"]))
    if not report["calibrated_table"]:
        print("note: the table has no calibration; rebuild it with `jointnas lut build`", file=sys.stderr)
    return 0


def add_parser(subparsers: Any) -> None:
    lut = subparsers.add_parser("lut", help="build or validate a device's latency table")
    sub = lut.add_subparsers(dest="lut_command", required=True)

    build = sub.add_parser("build", help="measure every block of a study's space and fit the calibration")
    build.add_argument("--device", required=True, help="device profile name or file")
    build.add_argument("--config", required=True, help="study file (TOML) whose space to cover")
    build.add_argument(
        "--out", required=True, help="table file to write (JSON); for a cycles device the calibrated profile (JSON)"
    )
    build.add_argument("--threads", type=int, help="ONNX Runtime threads (default: [device] threads)")
    build.add_argument("--n-calibration", type=int, default=40, help="random models measured end to end")
    build.add_argument(
        "--rounds", type=int, default=ROUNDS, help="interleaved passes over the blocks (each keeps its fastest)"
    )
    build.add_argument("--repeats", type=int, default=REPEATS, help="timing samples (about 20 us each) per pass")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--json", action="store_true", help="print the summary as JSON")
    build.set_defaults(func=cmd_build)

    val = sub.add_parser("validate", help="compare the table's predictions with end-to-end measurements")
    val.add_argument("--device", required=True, help="device profile name or file")
    val.add_argument("--table", help="table file (JSON; not for a cycles device: its profile holds the model)")
    val.add_argument("--config", required=True, help="study file (TOML) whose space to sample")
    val.add_argument("--n-archs", type=int, default=100, help="random models to measure")
    val.add_argument("--threads", type=int, help="ONNX Runtime threads (default: [device] threads)")
    val.add_argument(
        "--rounds", type=int, default=ROUNDS, help="interleaved passes over the models (each keeps its fastest)"
    )
    val.add_argument("--repeats", type=int, default=2 * REPEATS, help="timing samples (about 20 us each) per pass")
    val.add_argument("--seed", type=int, default=1)
    val.add_argument("--json", action="store_true", help="print the report as JSON")
    val.set_defaults(func=cmd_validate)
