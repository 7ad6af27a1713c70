"""Microcontroller benchmark: the search's MCU estimates set beside what the boards' own builds measure.

Runs `studies/tinychat_arduino.toml` on the real tinychat pairs (`../shared/data/tinychat/
training-data.txt.gz`, 3,002 pairs) and `studies/mnist1d_mcu.toml`, exports every Pareto-front trial
(`jointnas export`: ONNX files and the C library ``c/``) and builds that library for every packaged
microcontroller profile the trial was rated for (its ``device_fit`` attr):

* **Flash**: the search's estimate (the library: packed weights + fitted kernel code; + the profile's
  measured program around it) vs text + data of the library's objects and of the Arduino sketch (Uno)
  or the measuring program (STM32), from the target's size tool;
* **SRAM**: the estimate (arena at the stored precision + stack + the program's own) vs the library's
  data + bss and the stack peak simavr measured (Uno; the STM32 build has no simulator here);
* **latency**: the cycle model's prediction vs simavr's cycles of one inference (tinychat: one generated
  character, encoder included) at 16 MHz;
* **agreement**: the C library built on this machine vs the torch model and ``model.onnx`` on the whole
  test split;
* **fits**: the verdict the search recorded vs the build's (links within Flash less the bootloader, static
  SRAM + stack peak within SRAM); contradicted verdicts are listed.

The held-out validation of the Uno's fitted models (`benchmarks/cycles.py` → cycles.json) is copied in.
Writes benchmarks/results/mcu.json. Usage: ``python benchmarks/mcu.py [--n-trials N] [--studies ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from jointnas.devices import load_profile
from jointnas.objectives import load_task
from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, front, run_study, versions
from jointnas.search.tools.export import export_trial, study_config
from jointnas.search.tools.mcu import board_check
from jointnas.search.worker import record_run

ROOT = Path(__file__).resolve().parents[1]
TINYCHAT_DATA = ROOT.parent / "shared/data/tinychat/training-data.txt.gz"
STUDIES = ("tinychat_arduino", "mnist1d_mcu")


def _run_study(name: str, work: Path, n_trials: int | None, data: Path) -> tuple[optuna.Study, str, float]:
    config_path = ROOT / "studies" / f"{name}.toml"
    overrides: dict[str, Any] = {"task.path": str(data)} if name == "tinychat_arduino" else {}
    if n_trials is not None:
        overrides["budget.n_trials"] = n_trials
    config = apply_overrides(load_config(config_path), **overrides)
    t0 = time.perf_counter()
    study = create_or_resume(config, f"sqlite:///{work / (name + '.db')}")
    record_run(study, config.budget.n_trials, work / f"{name}-artifacts")  # export reads the stored models there
    study = run_study(config, study, config_path=config_path, artifact_dir=work / f"{name}-artifacts")
    shown = {k: os.path.relpath(v, ROOT) if k == "task.path" else v for k, v in overrides.items()}
    changed = ", ".join(f"{k} = {v!r}" for k, v in shown.items())
    command = f"jointnas run studies/{name}.toml" + (f" with {changed}" if changed else "")
    return study, command, time.perf_counter() - t0


def _measured(check: dict[str, Any]) -> dict[str, Any]:
    """The build's figures of one device, flattened for the JSON rows."""
    if "skipped" in check:
        return {"built": False, "reason": check["skipped"], "fits": None}
    if "device" not in check:
        return {"built": False, "reason": check.get("failed"), "fits": False}
    flash = check["sketch_flash_bytes"] or check["program_flash_bytes"]
    static = check["sketch_sram_bytes"] or check["program_sram_bytes"]
    stack = check["stack_peak_bytes"]
    return {
        "built": True,
        "compiler": check["compiler"],
        "library_flash_bytes": check["library_flash_bytes"],
        "library_sram_bytes": check["library_sram_bytes"],
        "deployed_flash_bytes": flash,
        "deployed_static_sram_bytes": static,
        "stack_peak_bytes": stack,
        "deployed_sram_bytes": None if stack is None else static + stack,
        "simulated_ms": check["latency_ms"],
        "simulated_cycles": check["cycles"],
        "matches_host": check["matches_host"],
        "fits": check["fits"],
    }


def _device_row(device: str, estimate: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    profile = load_profile(device)
    row = {
        "rated_fits": estimate["fits"],
        "estimated_flash_bytes": estimate["flash_bytes"],
        "estimated_weights_flash_bytes": estimate["weights_flash_bytes"],
        "estimated_sram_bytes": estimate["sram_bytes"],
        "estimated_activation_sram_bytes": estimate["activation_sram_bytes"],
        "predicted_ms": estimate["latency_ms"],
        **measured,
    }
    if measured.get("built"):
        row["flash_error"] = estimate["flash_bytes"] / measured["deployed_flash_bytes"] - 1
        library = estimate["flash_bytes"] - profile.runtime_flash_bytes  # the library part of the estimate
        row["library_flash_error"] = library / measured["library_flash_bytes"] - 1
        if measured["deployed_sram_bytes"]:
            row["sram_error"] = estimate["sram_bytes"] / measured["deployed_sram_bytes"] - 1
        if measured["simulated_ms"] and estimate["latency_ms"]:
            row["latency_error"] = estimate["latency_ms"] / measured["simulated_ms"] - 1
    row["verdict_contradicted"] = measured["fits"] is not None and bool(estimate["fits"]) != measured["fits"]
    return row


def _check_device(c_dir: Path, device: str, work: Path, raw: np.ndarray, n_classes: int, text: bool) -> dict:
    profile = load_profile(device)
    if profile.toolchain is None:
        return {"skipped": f"profile {device!r} has no [toolchain] table: not built"}
    check = board_check(c_dir, profile, work, raw=raw, num_classes=n_classes, text=text)
    if "skipped" in check:  # the board's tools are missing: nothing this benchmark reports can be measured
        raise SystemExit(check["skipped"])
    if "failed" in check:  # e.g. "region `text' overflowed": the model does not fit this board
        return {"failed": check["failed"].splitlines()[0][:300]}
    return check


def _trial_row(study: optuna.Study, trial: optuna.trial.FrozenTrial, work: Path, task: Any) -> dict[str, Any]:
    out = work / f"{study.study_name}-t{trial.number}"
    t0 = time.perf_counter()
    report = export_trial(study, trial.number, out)
    export_s = time.perf_counter() - t0
    host = report["c_build"]["host"]
    raw = task.normalization.invert(task.x_test.numpy(), task.input_shape)
    text = task.encoder is not None
    devices = {}
    for device, estimate in trial.user_attrs["device_fit"].items():
        study_board = report["c_build"].get("board")
        if study_board is not None and report["c_build"]["device"] == device:
            check = study_board
        else:
            check = _check_device(out / "c", device, work / f"b{trial.number}", raw, task.num_classes, text)
        devices[device] = _device_row(device, estimate, _measured(check))
    return {
        "trial": trial.number,
        "candidate": trial.user_attrs["candidate"],
        "values": dict(zip(("accuracy", "latency_ms", "flash_bytes"), trial.values, strict=False)),
        "test_accuracy_reported": trial.user_attrs.get("test_accuracy"),
        "test_accuracy_c_host": host.get("accuracy"),
        "c_vs_torch_agreement": host.get("agreement", {}).get("torch"),
        "c_vs_onnx_agreement": host.get("agreement", {}).get("model.onnx"),
        "test_samples": host.get("samples"),
        "c_library_weight_bytes": report["sizes"]["c_array"]["array_bytes"],
        "trial_flash_bytes": trial.user_attrs["flash_bytes"],
        "export_s": round(export_s, 1),
        "devices": devices,
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    per_device: dict[str, Any] = {}
    for device in sorted({d for r in rows for d in r["devices"]}):
        items = [r["devices"][device] for r in rows if device in r["devices"]]
        built = [i for i in items if i.get("built")]

        def median(key: str, source: list[dict[str, Any]] = built) -> float | None:
            values = [abs(i[key]) for i in source if i.get(key) is not None]
            return statistics.median(values) if values else None

        per_device[device] = {
            "trials": len(items),
            "rated_fits": sum(bool(i["rated_fits"]) for i in items),
            "rated_fits_that_link_and_run": sum(bool(i["rated_fits"]) and bool(i["fits"]) for i in items),
            "built": len(built),
            "measured_fits": sum(bool(i["fits"]) for i in items),
            "contradicted": sum(i["verdict_contradicted"] for i in items),
            "median_abs_flash_error": median("flash_error"),
            "median_abs_library_flash_error": median("library_flash_error"),
            "max_abs_library_flash_error": _largest(built, "library_flash_error"),
            "max_abs_latency_error": _largest(built, "latency_error"),
            "certified": all(i["rated_fits"] == i["fits"] for i in items if i["fits"] is not None),
            "median_abs_sram_error": median("sram_error"),
            "median_abs_latency_error": median("latency_error"),
            "all_board_outputs_match_host": all(i.get("matches_host") is not False for i in built),
            "compiler": next((i["compiler"] for i in built), None),
        }
    agreement = [r["c_vs_torch_agreement"] for r in rows if r["c_vs_torch_agreement"] is not None]
    return {"devices": per_device, "min_c_vs_torch_agreement": min(agreement) if agreement else None}


def _largest(items: list[dict[str, Any]], key: str) -> float | None:
    return max((abs(i[key]) for i in items if i.get(key) is not None), default=None)


def _validation() -> dict[str, Any]:
    """The held-out validation of each fitted board's models (benchmarks/cycles.py), as recorded there."""
    out = {}
    for device, name in (("arduino-uno", "cycles"), ("stm32f746", "cycles-stm32f746")):
        path = ROOT / f"benchmarks/results/{name}.json"
        if not path.is_file():
            continue
        cycles = json.loads(path.read_text())
        fitted, hand = cycles["validate_fitted"], cycles["validate_hand_set"]
        out[device] = {
            "source": f"benchmarks/results/{name}.json",
            "command": cycles["command"],
            "n_models": fitted["n_linked"],
            "fitted": fitted["metrics"],
            "hand_set": hand["metrics"],
            "goal_within_10pct": cycles["goal_within_10pct"],
        }
    return out


def _contradictions(studies: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for name, s in studies.items():
        for row in s["trials"]:
            for device, d in row["devices"].items():
                if d["verdict_contradicted"]:
                    found.append(
                        {
                            "study": name,
                            "trial": row["trial"],
                            "device": device,
                            "rated_fits": d["rated_fits"],
                            "measured_fits": d["fits"],
                            "estimated_flash_bytes": d["estimated_flash_bytes"],
                            "deployed_flash_bytes": d.get("deployed_flash_bytes"),
                            "estimated_sram_bytes": d["estimated_sram_bytes"],
                            "deployed_sram_bytes": d.get("deployed_sram_bytes"),
                            "reason": d.get("reason"),
                        }
                    )
    return found


DOC_HEAD = """# Microcontrollers: what the search estimates and what the boards' builds measure

Written by `benchmarks/mcu.py` from `benchmarks/results/mcu.json` (do not edit by hand). The benchmark
runs the two microcontroller studies, exports every Pareto-front trial (`jointnas export`) and builds
its C library (`docs/cgen.md`) with each rated board's own compiler (`docs/devices.md`, toolchains):

* **Flash**: the search's estimate for the board (`devices.mcu.fit_report`: the library, that is the
  packed weights plus the code of each kernel class and layer fitted from avr-gcc builds
  (`library_flash_bytes`), plus the profile's measured program around it) against text + data of what
  is deployed: the Arduino sketch built with Debian's Arduino core for the Uno, the library with a
  minimal measuring `main` (newlib-nano) for the STM32F746. "library" columns count the library's own
  objects only; the library error compares the library part of the estimate with them.
* **SRAM**: the estimate (the arena at the precision the library stores each tensor, the fitted stack
  peak, the program's own static SRAM) against static SRAM (data + bss of the sketch or program; the
  arena is in bss) plus the stack peak the simulator measured.
* **Latency**: the profile's cycle model (`devices.mcu.cycle_terms`: per kernel class, fitted on
  per-call simulated cycles) against the simulator's count of one `jointnas_predict` (tinychat: one
  generated character of `jointnas_reply`, its encoder included) at the board's clock: simavr's cycles
  on the Uno, QEMU's instruction count on the STM32F746 (`cycles_per_instruction` 1.0: not M7 cycles).
* **Agreement**: the C library built for this machine on the whole test split against the torch model
  (argmax), and the board's outputs against the host build's (bit for bit).
* **Fits**: the search's verdict against the build's: links within Flash less the bootloader, static
  SRAM + stack peak within SRAM. A board build that does not link does not fit. A device is
  *certified* when no verdict is contradicted.

The Uno's models were fitted with `python benchmarks/cycles.py --package` (40 random models of the
tinychat_arduino space), the STM32F746's with `--device stm32f746 --config studies/mnist1d_mcu.toml`
(mnist1d_mcu space, QEMU), and are validated below on other random models, built and run as deployed.
A board rated for a study whose space it was not fitted on (the Uno for MNIST-1D CNNs) prices kernel
classes it never met with its hand-set coefficients.
"""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"


def render_doc(result: dict[str, Any]) -> str:
    """docs/mcu.md from the benchmark's JSON."""
    lines = [DOC_HEAD, *_validation_lines(result.get("validation"))]
    for name, s in result["studies"].items():
        lines += [
            f"## `{name}`",
            "",
            f"{s['made_by']}: {s['n_trials']} trials in {s['search_s']:.0f} s; front of {s['front']}. "
            f"C library vs torch on the test split: lowest agreement "
            f"{_num(s['summary']['min_c_vs_torch_agreement'])}.",
            "",
            "| device | trials | rated fit | rated fit that link and run | measured fit | contradicted | "
            "median abs Flash error | median abs SRAM error | median abs latency error | board = host |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        unbuilt = _unbuilt(s["trials"])
        for device, d in s["summary"]["devices"].items():
            if device in unbuilt:
                continue
            lines.append(
                f"| {device} | {d['trials']} | {d['rated_fits']} | {d['rated_fits_that_link_and_run']} | "
                f"{d['measured_fits']} | {d['contradicted']} | {_pct(d['median_abs_flash_error'])} | "
                f"{_pct(d['median_abs_sram_error'])} | {_pct(d['median_abs_latency_error'])} | "
                f"{_num(d['all_board_outputs_match_host'])} |"
            )
        if unbuilt:
            lines += ["", f"Not built (their profiles have no `[toolchain]`): {', '.join(unbuilt)}."]
        lines += ["", *_trial_table(s["trials"]), ""]
    lines += _contradiction_table(result["contradicted_verdicts"])
    lines.append(
        f"\nWall time {result['wall_s']:.0f} s; load average before {result['load_average_before']}, after "
        f"{result['load_average_after']} (2 cores: other jobs shared the machine when above 2)."
    )
    return "\n".join(lines) + "\n"


def _validation_lines(validation: dict[str, Any] | None) -> list[str]:
    lines = ["## Held-out validation of the fitted models", ""]
    if not validation:
        return [*lines, "Not run (benchmarks/results/cycles.json is missing).", ""]
    lines += [
        "Random models of each board's space built and run as deployed (goal: 95% of cycles within ±10%; "
        "library Flash within ±2%, arena + stack within ±5%).",
        "",
        "| board | models | ρ | τ | cycles ±5% | ±10% | ±20% | mean abs error | Flash within 2% (max) | "
        "SRAM within 5% (max) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for device, v in validation.items():
        for name in ("hand_set", "fitted"):
            m = v[name]
            lines.append(
                f"| {device} | {name.replace('_', '-')}, {v['n_models']} | {m['spearman']:.4f} | {m['kendall']:.4f} | "
                f"{_pct(m['within_5pct'])} | {_pct(m['within_10pct'])} | {_pct(m['within_20pct'])} | "
                f"{100 * m['mean_abs_rel_error']:.1f}% | {_pct(m['flash']['within_2pct'])} "
                f"({100 * m['flash']['max_abs_rel_error']:.2f}%) | {_pct(m['sram']['within_5pct'])} "
                f"({100 * m['sram']['max_abs_rel_error']:.2f}%) |"
            )
    return [*lines, "", *(f"{d}: `{v['command']}`" for d, v in validation.items()), ""]


def _unbuilt(rows: list[dict[str, Any]]) -> list[str]:
    """Devices no trial could be built for (no ``[toolchain]``: no verdict), as opposed to failed links."""
    devices = sorted({d for r in rows for d in r["devices"]})
    return [d for d in devices if all(r["devices"][d]["fits"] is None for r in rows if d in r["devices"])]


def _trial_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| trial | device | test acc (C host) | C = torch | est. Flash | deployed Flash | library Flash | "
        "est. SRAM | static + stack SRAM | predicted ms | simulated ms | rated / measured fit |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        for device, d in r["devices"].items():
            if not d.get("built") and d["fits"] is None:  # no toolchain for this profile
                continue
            stack = d.get("deployed_sram_bytes") or d.get("deployed_static_sram_bytes")
            out.append(
                f"| {r['trial']} | {device} | {_num(r['test_accuracy_c_host'])} | {_num(r['c_vs_torch_agreement'])} | "
                f"{_num(d['estimated_flash_bytes'])} | {_num(d.get('deployed_flash_bytes'))} | "
                f"{_num(d.get('library_flash_bytes'))} | {_num(d['estimated_sram_bytes'])} | {_num(stack)} | "
                f"{_num(d['predicted_ms'])} | {_num(d.get('simulated_ms'))} | "
                f"{_num(d['rated_fits'])} / {_num(d['fits'])} |"
            )
    return out


def _contradiction_table(found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return ["## Contradicted fits verdicts", "", "None: every verdict the search recorded held on the build."]
    out = [
        "## Contradicted fits verdicts",
        "",
        f"{len(found)} verdicts of the search that the build contradicts:",
        "",
        "| study | trial | device | rated | measured | est. Flash | deployed Flash | est. SRAM | deployed SRAM | why |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---|",
    ]
    for c in found:
        out.append(
            f"| {c['study']} | {c['trial']} | {c['device']} | {_num(c['rated_fits'])} | {_num(c['measured_fits'])} | "
            f"{_num(c['estimated_flash_bytes'])} | {_num(c['deployed_flash_bytes'])} | "
            f"{_num(c['estimated_sram_bytes'])} | {_num(c['deployed_sram_bytes'])} | {c['reason'] or ''} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-trials", type=int, help="trials per study (default: each study's budget)")
    parser.add_argument("--studies", nargs="+", default=list(STUDIES), choices=STUDIES)
    parser.add_argument("--tinychat-data", type=Path, default=TINYCHAT_DATA, help="the real pairs file")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/mcu.json"))
    parser.add_argument("--doc", default=str(ROOT / "docs/mcu.md"), help="the document written from the JSON")
    parser.add_argument("--render", action="store_true", help="only write --doc from an existing --out")
    args = parser.parse_args()
    if args.render:  # the doc again, with cycles.json's validation as it now stands
        result = {**json.loads(Path(args.out).read_text()), "validation": _validation()}
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        Path(args.doc).write_text(render_doc(result))
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # one torch thread, as the other benchmarks (two would fight other jobs' cores)
    if "tinychat_arduino" in args.studies and not args.tinychat_data.is_file():
        raise SystemExit(f"{args.tinychat_data} is missing; give the real pairs file with --tinychat-data")
    work = Path(tempfile.mkdtemp(prefix="jointnas-mcu-"))
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    studies = {}
    for name in args.studies:
        study, command, search_s = _run_study(name, work, args.n_trials, args.tinychat_data.resolve())
        task = load_task(study_config(study).task)
        rows = [_trial_row(study, t, work, task) for t in front(study)]
        studies[name] = {
            "made_by": command,
            "search_s": round(search_s, 1),
            "n_trials": len(study.trials),
            "front": len(rows),
            "trials": rows,
            "summary": _summary(rows),
        }
        print(f"{name}: {json.dumps(studies[name]['summary'], indent=1)}")
    result = {
        "benchmark": "mcu",
        "validation": _validation(),
        "studies": studies,
        "contradicted_verdicts": _contradictions(studies),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "versions": versions(),
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.doc).write_text(render_doc(result))
    print(f"contradicted verdicts: {len(result['contradicted_verdicts'])}; wrote {args.out}")


if __name__ == "__main__":
    main()
