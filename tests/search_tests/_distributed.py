"""Helpers shared by the distributed tests: unique names on the shared services, worker processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ..conftest import TINY_CONFIG, write_config

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
REDIS_URL = "redis://127.0.0.1:6379/0"

# Cheaper than TINY_CONFIG (one-stage MLP-free CNN, one epoch each): a trial takes well under a second.
CHEAP_CONFIG = TINY_CONFIG.replace("train_epochs = 2", "train_epochs = 1").replace(
    "[device]\nrepeats = 3\nwarmup = 1", "[device]\nrepeats = 3\nwarmup = 0"
)


def unique(prefix: str) -> str:
    """A study name no other test run (or other engineer's run) uses."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def service_or_skip(url: str) -> None:
    from jointnas.search.storage import open_storage
    from jointnas.spaces import UserInputError

    try:
        open_storage(url, heartbeat_s=None)
    except UserInputError as exc:
        pytest.skip(f"service not reachable: {exc}")


def make_config(tmp_path: Path, name: str, storage: str | None, text: str = CHEAP_CONFIG, **extra: str) -> Path:
    body = text.replace('name = "tiny"', f'name = "{name}"')
    if storage is not None:
        body = body.replace("[study]\n", f'[study]\nstorage = "{storage}"\n', 1)
    body = body.replace("[device]\n", f'[device]\nlut = "{tmp_path / "lut.json"}"\n', 1)
    return write_config(tmp_path, body, f"{name}.toml")


def worker(storage: str, study: str, *args: str, index: int = 0) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", "from jointnas.search.cli import _entry; _entry()", "worker"]
    cmd += ["--storage", storage, "--study-name", study, "--worker-index", str(index), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


class TcpProxy:
    """A TCP forwarder to ``target`` on a free local port; `stop` drops every connection and refuses
    new ones, as a database server that went away does."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def stop(self) -> None:
        import socket

        self.stopped = True
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()
