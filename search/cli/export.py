"""``jointnas export``: deployable files and a report for one trial of a study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..paths import output_dir
from ..storage import open_storage
from ..study import load_study
from ..tools.export import export_source, export_trial
from ..tools.mcu import build_summary
from .progress import StepProgress


def cmd_export(args: argparse.Namespace) -> int:
    output_dir(args.out, "--out")
    study = load_study(open_storage(args.storage, must_exist=True), args.study_name)
    export_source(  # every check before the first write (the progress display, the output folder)
        study,
        args.trial,
        retrain=args.retrain,
        retrain_epochs=args.retrain_epochs,
        distill=args.distill,
        artifact_dir=args.artifact_dir,
    )
    with StepProgress("export", total=0) as progress:
        report = export_trial(
            study,
            args.trial,
            Path(args.out),
            retrain=args.retrain,
            retrain_epochs=args.retrain_epochs,
            distill=args.distill,
            deploy=args.deploy,
            lut=Path(args.lut) if args.lut else None,
            artifact_dir=args.artifact_dir,
            progress=progress,
        )
    acc, lat = report["accuracy"], report["latency_ms"]
    print(
        f"trial {report['trial']}: test accuracy INT8 {acc['onnx_int8']:.4f} (search reported "
        f"{acc['trial_reported_test']:.4f}); latency FP32 {lat['measured_onnx_fp32']:.4f} ms measured vs "
        f"{lat['lut_predicted']:.4f} ms predicted; files in {args.out}",
        file=sys.stderr,
    )
    print(build_summary(report["c_build"]), file=sys.stderr)
    if report["reproduced_trial"] is False:
        what = "rebuilt model" if args.retrain else "stored model"
        print(f"warning: the {what} does not reproduce the trial (another jointnas version?)", file=sys.stderr)
    for check in report["requirements"]:
        verdict = "PASS" if check["passed"] else "FAIL"
        print(
            f"  {check['name']}: {check['measured']:.4g} (required {check['required']:.4g}) {verdict} "
            f"[{check['basis']}]",
            file=sys.stderr,
        )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write one trial's stored model as ONNX FP32/INT8, a C library and a report")
    p.add_argument("--storage", required=True, help="storage URL")
    p.add_argument("--study-name", required=True)
    p.add_argument("--trial", type=int, required=True, help="trial number (must be COMPLETE)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--artifact-dir", help="the study's artifact directory (default: the one the study records)")
    p.add_argument("--retrain", action="store_true", help="rebuild the model with the trial's training instead")
    p.add_argument("--retrain-epochs", type=int, help="with --retrain: initial training epochs (default: the study's)")
    p.add_argument("--distill", action="store_true", help="with --retrain: distil every fine-tune from the teacher")
    p.add_argument(
        "--deploy",
        choices=("int8", "fp32"),
        default="int8",
        help="the ONNX file an ONNX Runtime device runs, which the [requirements] judge (default int8)",
    )
    p.add_argument("--lut", help="latency table JSON to predict with (default: measure a fresh table now)")
    p.set_defaults(func=cmd_export)
