"""``jointnas chat``: talk to an exported text model (tinychat) through its C library or ONNX Runtime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jointnas.spaces import UserInputError

from ..tools.chat import open_chat
from .exits import EXIT_OK


def cmd_chat(args: argparse.Namespace) -> int:
    folder = Path(args.export_dir)
    if not folder.is_dir():
        raise UserInputError(f"export folder {folder} does not exist; run jointnas export --out {folder} first")
    chat = open_chat(folder, onnx=args.onnx)
    try:
        if args.query:
            for query in args.query:
                print(chat.reply(query))
            return EXIT_OK
        interactive = sys.stdin.isatty()
        while True:
            try:
                query = input("you> " if interactive else "")
            except EOFError:
                break
            if not query.strip():
                break
            print(chat.reply(query) if not interactive else f"bot> {chat.reply(query)}", flush=True)
    finally:
        chat.close()
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat with an exported text model (its C library, or --onnx)")
    p.add_argument("export_dir", help="a folder written by jointnas export (for a tinychat trial)")
    p.add_argument(
        "--onnx", action="store_true", help="answer with model.onnx in ONNX Runtime instead of the C library"
    )
    p.add_argument("--query", action="append", help="answer this query and exit (repeatable); default: read lines")
    p.set_defaults(func=cmd_chat)
