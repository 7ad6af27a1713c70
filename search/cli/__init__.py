"""The jointnas command line: one module per command, listed in `COMMANDS`.

Exit codes (`jointnas.search.cli.exits`): 0 success, 2 bad input (one line on stderr, no traceback),
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import optuna

from jointnas.spaces import UserInputError

from ..storage import install_log_masking, mask_password, remember_secrets
from ..worker import STORAGE_ENV
from . import chat, compare, dashboard, export, lut, report, run, space, worker
from .exits import EXIT_INTERRUPTED, EXIT_USAGE
from .interrupts import redeliver_dropped_interrupts

COMMANDS = (run, worker, lut, space, export, report, compare, dashboard, chat)
"""The command modules, in ``jointnas --help`` order; each adds its sub-commands with ``add_parser``."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command in `COMMANDS`."""
    parser = argparse.ArgumentParser(prog="jointnas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    install_log_masking()
    for value in [*(sys.argv[1:] if argv is None else argv), os.environ.get(STORAGE_ENV, "")]:
        remember_secrets(value)  # a storage URL's password is masked in every message from here on
    args = build_parser().parse_args(argv)
    redeliver_dropped_interrupts()  # a Ctrl-C landing in a finalizer still stops the run
    # Optuna logs failed trials with tracebacks; our progress line reports each failure's reason instead.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except UserInputError as exc:
        print(f"error: {mask_password(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _exit(code: int) -> None:
    """Leave the process with ``code``.

    After a handled Ctrl-C the process leaves at once (``os._exit``, streams flushed): in about one run
    in four the interpreter otherwise ended with status -2 (killed by SIGINT at shutdown) although the
    interrupt had been handled and reported, which scripts waiting for 130 misread. Everything the study
    holds is committed by then.
    """
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _entry() -> Any:  # pragma: no cover
    _exit(main())


__all__ = ["COMMANDS", "build_parser", "main"]
