"""``jointnas space check``: a study's precision options filtered by memory, per layer, with the reasons.

`check_space` loads what a run would (config, task shape, device profile) and runs the one memory filter
(`jointnas.search.memory_filter.filter_space`); `render_space_check` lays it out one line per layer (or
stage): every weight and activation precision with the bytes it needs at least and whether it fits.
"""

from __future__ import annotations

from pathlib import Path

from jointnas.devices import load_profile
from jointnas.objectives import load_task
from jointnas.spaces.precision import precision_label

from ..config import load_config
from ..memory_filter import LayerOptions, SpaceFilter, filter_space
from ..study import device_profile_ref


def check_space(config_path: str | Path) -> tuple[SpaceFilter, str]:
    """The memory filter of the study at ``config_path`` and the device it ran for."""
    config_path = Path(config_path)
    config = load_config(config_path)
    task = load_task(config.task)
    profile = load_profile(device_profile_ref(config, config_path))
    return filter_space(config, task.input_shape, task.num_classes, profile), profile.name


def _verdicts(kept: list, needs: dict[str, int], limit: int | None) -> str:
    kept_labels = {precision_label(p) for p in kept}
    parts = []
    for label, n in needs.items():
        mark = "kept" if label in kept_labels else "dropped"
        over = "" if limit is None else (" ≤ " if n <= limit else " > ") + f"{limit} B"
        parts.append(f"{label} {mark} ({n} B{over})")
    return ", ".join(parts)


def _line(opt: LayerOptions, sram: int | None, flash: int | None) -> list[str]:
    where = f"stage {opt.stage}" + (f" {opt.layer}" if opt.layer else " (every layer)")
    head = f"{where}: " + ("NO OPTION FITS, every option kept" if opt.failed else "")
    return [
        head.rstrip(),
        f"  weights {opt.weight_param}: {_verdicts(opt.weight_kept, opt.weight_bytes, flash)}",
        f"  activations {opt.act_param}: {_verdicts(opt.act_kept, opt.act_bytes, sram)}",
    ]


def render_space_check(result: SpaceFilter, device: str) -> str:
    """The filter as text: the limits, then per layer every option with its bytes and verdict.

    Weight bytes are Flash (the layer's weights at that precision, scales and biases included);
    activation bytes are the layer's live SRAM (input, output at that precision, residual), both on the
    space's smallest candidate.
    """
    sram = "none" if result.sram_limit is None else f"{result.sram_limit} B"
    flash = "none" if result.flash_limit is None else f"{result.flash_limit} B"
    lines = [f"memory filter for {device}: SRAM limit {sram} (activations), Flash limit {flash} (weights)"]
    for opt in result.layers:
        lines += _line(opt, result.sram_limit, result.flash_limit)
    if result.failed_stages:
        lines.append(f"stages whose every option fails: {result.failed_stages}")
    return "\n".join(lines)


__all__ = ["check_space", "render_space_check"]
