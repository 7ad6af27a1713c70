"""``jointnas space check CONFIG``: what the memory filter keeps of a study's precision options, per layer."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..tools.space_check import check_space, render_space_check

EXIT_FAILED_STAGES = 1
"""``space check`` exit code when a stage has a layer no option fits."""


def cmd_check(args: argparse.Namespace) -> int:
    result, device = check_space(args.config)
    if args.json:
        print(json.dumps({"device": device, **result.as_dict()}, indent=2))
    else:
        print(render_space_check(result, device))
    return EXIT_FAILED_STAGES if result.failed_stages else 0


def add_parser(subparsers: Any) -> None:
    space = subparsers.add_parser("space", help="inspect a study's search space")
    sub = space.add_subparsers(dest="space_command", required=True)
    check = sub.add_parser(
        "check", help="per layer, the precision options that fit the device's memory (exit 1: a stage fits none)"
    )
    check.add_argument("config", help="study file (TOML)")
    check.add_argument("--json", action="store_true", help="print the filter as JSON")
    check.set_defaults(func=cmd_check)
