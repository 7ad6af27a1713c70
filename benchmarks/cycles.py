"""MCU cost-model benchmark: the Uno's hand-set models vs the models fitted in simavr and avr-gcc builds.

`jointnas lut build --device arduino-uno --config studies/tinychat_arduino.toml` (40 random models of
the space built and simulated: per-call cycles, library sizes, stack), then `jointnas lut validate` on
100 other random models, as deployed (the chat sketch's library, one generated character), with the
hand-set profile (no ``cycle_table``/``code_bytes``/``stack_bytes``) and with the fitted one: for cycles
Spearman ρ, Kendall τ, mean |error| and the shares within ±5% / ±10% / ±20% of simavr (goal ≥ 95% within
±10%); for the library's Flash (text + data of its objects; goal ±2%) and arena + stack peak (goal ±5%)
the shares and the largest error. Writes benchmarks/results/cycles.json; ``--package`` also writes the
fitted figures into the packaged profile devices/profiles/arduino-uno.toml (what studies use).
``--device stm32f746 --config studies/mnist1d_mcu.toml`` does the same for the Cortex-M7 (QEMU
instruction counts, arm-none-eabi-gcc sizes) into cycles-stm32f746.json.
Usage: python benchmarks/cycles.py [--device D --config C] [--n-calibration N] [--n-validate N] [--package]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import optuna

from jointnas.devices import load_profile
from jointnas.search.config import load_config
from jointnas.search.study import versions
from jointnas.search.tools.cycles import calibrate_cycles, validate_cycles

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "# >>> fitted by benchmarks/cycles.py --package", "# <<< fitted"


def _toml_table(name: str, values: dict[str, float]) -> list[str]:
    return [f"[{name}]", *(f'"{k}" = {round(v, 3)!r}' for k, v in sorted(values.items()))]


def package(profile: dict, summary: dict, device: str = "arduino-uno") -> None:
    """Write the fitted fields of ``profile`` into the packaged profile of ``device``, between the markers."""
    packaged = ROOT / f"devices/profiles/{device}.toml"
    cal, fit = profile["calibration"], summary["fit"]
    lines = [
        BEGIN,
        f"# {cal['n_linked']} random models of the {cal['space_of']} space built with {cal['compiler']} "
        f"({' '.join(cal['cflags'])}) and run in {cal['simulator']}:",
        f"# cycles within ±10% on {fit['within_10pct']:.0%} of them, Flash max |error| "
        f"{fit['flash']['max_abs_rel_error']:.1%}, SRAM {fit['sram']['max_abs_rel_error']:.1%}"
        " (held-out figures: benchmarks/results/cycles.json).",
        *_toml_table("cycle_table", profile["cycle_table"]),
        *_toml_table("code_bytes", profile["code_bytes"]),
        END,
    ]
    text = packaged.read_text()
    head, tail = (text.split(BEGIN)[0], text.split(END)[1]) if BEGIN in text else (text, "")
    for key in ("stack_bytes", "runtime_flash_bytes", "runtime_sram_bytes"):
        head = re.sub(rf"^{key} = \d+$", f"{key} = {profile[key]}", head, flags=re.M)
    packaged.write_text(head.rstrip() + "\n\n" + "\n".join(lines) + tail)


def _hand_set(path: Path, device: str) -> Path:
    """The packaged profile without its fitted fields, as a profile file."""
    profile = json.loads(load_profile(device).model_dump_json())
    profile.update(cycle_table={}, code_bytes={}, stack_bytes=0, calibration=None)
    path.write_text(json.dumps(profile))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="arduino-uno", help="a packaged cycles profile with a simulator")
    parser.add_argument("--config", default="studies/tinychat_arduino.toml")
    parser.add_argument("--n-calibration", type=int, default=40)
    parser.add_argument("--n-validate", type=int, default=100)
    parser.add_argument("--out", default=None, help="default results/cycles.json (other devices: cycles-DEVICE.json)")
    parser.add_argument("--package", action="store_true", help="write the fit into the device's packaged profile")
    args = parser.parse_args()
    name = "cycles" if args.device == "arduino-uno" else f"cycles-{args.device}"
    args.out = args.out or str(ROOT / f"benchmarks/results/{name}.json")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.chdir(ROOT)  # the study's data path is relative to the repository root
    config = load_config(args.config)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        calibrated = Path(tmp) / f"{args.device}-calibrated.json"
        t0 = time.perf_counter()
        fit = calibrate_cycles(config, args.device, calibrated, n_models=args.n_calibration)
        fit_s = time.perf_counter() - t0
        profile = json.loads(calibrated.read_text())
        t0 = time.perf_counter()
        hand = validate_cycles(config, _hand_set(Path(tmp) / "hand-set.json", args.device), n_models=args.n_validate)
        fitted = validate_cycles(config, calibrated, n_models=args.n_validate)
        validate_s = time.perf_counter() - t0
    keys = ("cycle_table", "code_bytes", "stack_bytes", "runtime_flash_bytes", "runtime_sram_bytes")
    result = {
        "benchmark": "cycles",
        "device": args.device,
        "command": f"jointnas lut build --device {args.device} --config {args.config} --n-calibration "
        f"{args.n_calibration}; jointnas lut validate --n-archs {args.n_validate} (hand-set and fitted)",
        "calibration": fit,
        "calibration_s": round(fit_s, 1),
        "fitted": {k: profile[k] for k in keys},
        "validate_hand_set": hand,
        "validate_fitted": fitted,
        "validate_s": round(validate_s, 1),
        "goal_within_10pct": 0.95,
        "goal_met": fitted["metrics"]["within_10pct"] >= 0.95,
        "flash_goal_within_2pct_met": fitted["metrics"]["flash"]["within_2pct"] == 1.0,
        "sram_goal_within_5pct_met": fitted["metrics"]["sram"]["within_5pct"] == 1.0,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.package:
        package(profile, fit, args.device)
    for name in ("validate_hand_set", "validate_fitted"):
        m = result[name]["metrics"]
        print(
            f"{name}: rho {m['spearman']:.3f} tau {m['kendall']:.3f} |err| {m['mean_abs_rel_error']:.1%} "
            f"within 5/10/20%: {m['within_5pct']:.0%} {m['within_10pct']:.0%} {m['within_20pct']:.0%}; "
            f"Flash within 2%: {m['flash']['within_2pct']:.0%}, SRAM within 5%: {m['sram']['within_5pct']:.0%}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
