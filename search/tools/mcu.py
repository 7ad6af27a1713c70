"""What an export reports of its C library's builds: on this machine over a whole split, and on the board.

The building and running itself is `jointnas.devices.board` (`check_library`, `host_predictions`);
this module decides what an export measures with it (`measure_export`, `board_check`) and renders it
(`build_summary`, `render_build_markdown`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jointnas.devices import DeviceProfile
from jointnas.devices.board import CHAT_QUERIES, check_library, host_predictions
from jointnas.devices.toolchain import BuildError
from jointnas.spaces import UserInputError

SIM_SAMPLES = 4
"""Test samples a simulated board classifies in an export's check (each costs its cycles in simavr)."""


def measure_export(
    c_dir: Path,
    profile: DeviceProfile,
    work_dir: Path,
    *,
    raw: np.ndarray,
    labels: np.ndarray,
    references: dict[str, np.ndarray],
    num_classes: int,
    text: bool = False,
) -> dict[str, Any]:
    """What an export's C library does when built: on this machine over a whole split, and on the board.

    ``raw`` are the split's raw samples and ``labels`` their classes; ``references`` maps a model's name
    (``torch``, ``model.onnx``) to its classes on the same samples, for the agreement figures. The board
    part (`check_library`) runs for microcontroller profiles only. A missing toolchain is recorded as
    ``{"skipped": reason}`` (one line naming the package), a failed build as ``{"failed": reason}``.
    """
    report: dict[str, Any] = {"device": profile.name}

    def host() -> dict[str, Any]:
        classes, _ = host_predictions(c_dir, raw, num_classes, work_dir / "host-split")
        agreement = {name: float((classes == ref).mean()) for name, ref in references.items()}
        return {"samples": len(raw), "accuracy": float((classes == labels).mean()), "agreement": agreement}

    report["host"] = _outcome(host)
    if profile.is_mcu:
        report["board"] = board_check(c_dir, profile, work_dir, raw=raw, num_classes=num_classes, text=text)
    return report


def board_check(
    c_dir: Path, profile: DeviceProfile, work_dir: Path, *, raw: np.ndarray, num_classes: int, text: bool = False
) -> dict[str, Any]:
    """`check_library` on the board with `SIM_SAMPLES` of ``raw`` (text models: `CHAT_QUERIES`), as a dict;
    ``{"skipped": reason}`` without the toolchain, ``{"failed": reason}`` when the build fails (a model too
    large for the board does not link)."""
    # A text model's board runs the chat only: a float sample buffer beside it would not fit 2 KB of SRAM.
    samples, queries = (None, list(CHAT_QUERIES)) if text else (raw[:SIM_SAMPLES], None)
    return _outcome(
        lambda: check_library(
            c_dir, profile, work_dir, samples=samples, queries=queries, num_classes=num_classes
        ).to_dict()
    )


def _outcome(make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``make()``, or why it could not be made: a failed build, or a missing tool (one line naming it)."""
    try:
        return make()
    except BuildError as e:
        return {"failed": str(e)}
    except UserInputError as e:
        return {"skipped": str(e)}


def build_summary(report: dict[str, Any]) -> str:
    """One line for people: what `measure_export` measured, or why a build was not made."""
    host = report.get("host", {})
    parts = []
    if "samples" in host:
        agree = host["agreement"].get("model.onnx", host["agreement"].get("torch"))
        parts.append(f"host build agrees with the model on {100 * agree:.1f}% of {host['samples']} test samples")
    else:
        parts.append(f"host build not made: {host.get('skipped') or host.get('failed')}")
    board = report.get("board")
    if board is not None and "device" not in board:
        parts.append(f"{report['device']} build not made: {board.get('skipped') or board.get('failed')}")
    elif board is not None:
        flash = board["sketch_flash_bytes"] or board["program_flash_bytes"]
        sram = board["sketch_sram_bytes"] or board["program_sram_bytes"]
        stack = "" if board["stack_peak_bytes"] is None else f" + {board['stack_peak_bytes']:,} B stack"
        speed = "" if board["latency_ms"] is None else f", {board['latency_ms']:.2f} ms per inference simulated"
        verdict = {True: "fits", False: "does NOT fit", None: "fit not judged"}[board["fits"]]
        parts.append(f"{report['device']}: {flash:,} B Flash, {sram:,} B SRAM{stack}: {verdict}{speed}")
    return "C library: " + "; ".join(parts)


def _figure(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.2f}{unit}" if isinstance(value, float) else f"{value:,}{unit}"


def render_build_markdown(report: dict[str, Any]) -> list[str]:
    """Markdown lines for `measure_export`'s report (the export's ``report.md`` section)."""
    lines = ["## The C library built and run", ""]
    host = report.get("host", {})
    if "samples" in host:
        agree = ", ".join(f"{100 * v:.2f}% with {k}" for k, v in host["agreement"].items())
        lines.append(
            f"Host build on {host['samples']} test samples: accuracy {100 * host['accuracy']:.2f}%; "
            f"classes agree {agree}."
        )
    else:
        lines.append(f"Host build: {host.get('skipped') or host.get('failed')}")
    board = report.get("board")
    if board is None:
        return [*lines, ""]
    if "device" not in board:
        return [*lines, "", f"Board build ({report['device']}): {board.get('skipped') or board.get('failed')}", ""]
    rows = [
        ("library Flash (text + data of its objects)", _figure(board["library_flash_bytes"], " B")),
        ("library static SRAM (data + bss, arena included)", _figure(board["library_sram_bytes"], " B")),
        (
            "Arduino sketch Flash / static SRAM",
            f"{_figure(board['sketch_flash_bytes'], ' B')} / {_figure(board['sketch_sram_bytes'], ' B')}",
        ),
        ("stack peak (simulated)", _figure(board["stack_peak_bytes"], " B")),
        ("cycles per inference (simulated)", _figure(board["cycles"])),
        ("milliseconds per inference at the board's clock", _figure(board["latency_ms"])),
        ("board computes what the host build computes", _figure(board["matches_host"])),
        ("fits the board (Flash less bootloader; static SRAM + stack peak)", _figure(board["fits"])),
    ]
    lines += ["", f"Built with {board['compiler']} for `{board['device']}`:", "", "| | |", "|---|---:|"]
    return [*lines, *(f"| {k} | {v} |" for k, v in rows), ""]


__all__ = ["SIM_SAMPLES", "board_check", "build_summary", "measure_export", "render_build_markdown"]
