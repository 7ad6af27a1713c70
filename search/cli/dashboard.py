"""``jointnas dashboard``: optuna-dashboard on a storage, with the artifact store and Pareto notes."""

from __future__ import annotations

import argparse
import sys

from jointnas.spaces import UserInputError

from ..storage import mask_password, open_storage
from ..tools.dashboard import check_port_free, dashboard_artifact_dir, refresh_notes, serve


def cmd_dashboard(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UserInputError(f"--port must be between 1 and 65535 (got {args.port})")
    check_port_free(args.host, args.port)  # before touching the storage: a busy port is the common slip
    storage = open_storage(args.storage, heartbeat_s=None, must_exist=True)
    artifact_dir = dashboard_artifact_dir(storage, args.artifact_dir)
    if artifact_dir is not None and not artifact_dir.is_dir():
        raise UserInputError(f"artifact directory {artifact_dir} does not exist; pass --artifact-dir DIR")
    updated = refresh_notes(storage)
    print(
        f"optuna-dashboard for {mask_password(args.storage)} at http://{args.host}:{args.port}/dashboard "
        f"(artifacts: {artifact_dir or 'none'}; Pareto notes saved for {len(updated)} studies); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        serve(storage, args.host, args.port, artifact_dir)
    except KeyboardInterrupt:
        return 0
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="start optuna-dashboard with the studies' artifacts and Pareto plots")
    p.add_argument("--storage", required=True, help="storage URL")
    p.add_argument("--artifact-dir", help="artifact directory (default: the one the studies record)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_dashboard)
