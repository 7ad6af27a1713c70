"""``jointnas report``: one self-contained HTML file of a study's figures, also saved for optuna-dashboard."""

from __future__ import annotations

import argparse
import sys

from ..paths import output_file
from ..storage import open_storage
from ..study import load_study
from ..tools.report import build_report, save_to_dashboard, write_report_html
from .progress import StepProgress


def cmd_report(args: argparse.Namespace) -> int:
    out = output_file(args.out, "--out", "report.html")
    study = load_study(open_storage(args.storage, must_exist=True), args.study_name)
    with StepProgress("report", total=1) as progress:
        report = build_report(study, progress)
        with progress.step("write HTML"):
            write_report_html(study, report, out, plotlyjs=args.plotlyjs)
    if not args.no_dashboard and report.figures:
        save_to_dashboard(study, report)
    for title, reason in report.skipped.items():
        print(f"skipped {title}: {reason}", file=sys.stderr)
    where = "" if args.no_dashboard else " and saved to the study for optuna-dashboard"
    print(f"{len(report.figures)} figures written to {out}{where}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a study's Pareto, importance and history plots to one HTML file")
    p.add_argument("--storage", required=True, help="storage URL")
    p.add_argument("--study-name", required=True)
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument(
        "--plotlyjs",
        choices=("inline", "cdn"),
        default="inline",
        help="inline: embed plotly.js (opens offline, ~4.7 MB); cdn: load it from the plotly CDN at view time",
    )
    p.add_argument("--no-dashboard", action="store_true", help="do not save the figures and note into the study")
    p.set_defaults(func=cmd_report)
