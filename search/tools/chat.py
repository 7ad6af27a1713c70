"""Chat with an exported text model: through its C library built for this machine, or through ONNX Runtime.

`open_chat(export_dir)` builds ``c/`` of a ``jointnas export`` folder with the host compiler (the
``ort-cpu`` profile's toolchain) and a small line driver, and answers each query with
``jointnas_reply`` — the same code the Arduino sketch runs. ``onnx=True`` decodes greedily with
``model.onnx`` and the Python encoder instead (`jointnas.objectives.tinychat.greedy_reply`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from jointnas.devices import build, load_profile
from jointnas.objectives.tinychat import MAX_REPLY_CHARS, greedy_reply
from jointnas.spaces import UserInputError

_DRIVER = r"""
#include <stdio.h>
#include <string.h>
#include "jointnas_model.h"
int main(void) {
    static char query[512], reply[%(max)d + 1];
    while (fgets(query, sizeof query, stdin)) {
        query[strcspn(query, "\n")] = 0;
        jointnas_reply(query, reply, %(max)d + 1); /* max_len counts the NUL */
        printf("%%s\n", reply);
        fflush(stdout);
    }
    return 0;
}
"""


class CChat:
    """``jointnas_reply`` of an export's C library, built for this machine and run as a child process."""

    def __init__(self, c_dir: Path) -> None:
        self._tmp = TemporaryDirectory(prefix="jointnas-chat-")
        driver = Path(self._tmp.name) / "chat_main.c"
        driver.write_text(_DRIVER % {"max": MAX_REPLY_CHARS})
        sources = [driver, *sorted(c_dir.glob("*.c"))]
        exe = build(sources, load_profile("ort-cpu"), Path(self._tmp.name), include_dirs=[c_dir]).elf
        self._proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def reply(self, query: str) -> str:
        """The model's reply to one line of text."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(query.replace("\n", " ") + "\n")
        self._proc.stdin.flush()
        return self._proc.stdout.readline().rstrip("\n")

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)
        self._tmp.cleanup()


class OnnxChat:
    """Greedy decoding with ``model.onnx`` in ONNX Runtime and the Python encoder."""

    def __init__(self, onnx_path: Path) -> None:
        from jointnas.devices import ort_session

        self._session = ort_session(str(onnx_path), threads=1)
        self._input = self._session.get_inputs()[0].name

    def reply(self, query: str) -> str:
        def predict(x: np.ndarray) -> np.ndarray:
            return self._session.run(None, {self._input: x.astype(np.float32)})[0]

        return greedy_reply(predict, query, MAX_REPLY_CHARS)

    def close(self) -> None:
        pass


def open_chat(export_dir: Path, *, onnx: bool = False) -> CChat | OnnxChat:
    """A chat over the export folder ``export_dir``; `UserInputError` when it holds no text model."""
    c_dir = export_dir / "c"
    if not (c_dir / "jointnas_chat.c").is_file():
        raise UserInputError(
            f"{export_dir} holds no exported text model (no c/jointnas_chat.c); "
            "export a tinychat trial with jointnas export --out DIR and chat with that DIR"
        )
    if onnx:
        if not (export_dir / "model.onnx").is_file():
            raise UserInputError(f"{export_dir} has no model.onnx; export the trial again")
        return OnnxChat(export_dir / "model.onnx")
    return CChat(c_dir)


__all__ = ["CChat", "OnnxChat", "open_chat"]
