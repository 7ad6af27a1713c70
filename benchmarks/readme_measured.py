"""Print the README's "Measured" section from benchmarks/results/*.json (``--write`` replaces it in README.md).

Every figure the README quotes comes from here, so no number in it is typed by hand.
Usage: python benchmarks/readme_measured.py [--write]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def R(name: str) -> dict:  # noqa: N802 - short on purpose: the section reads like a table of sources
    return json.loads((ROOT / f"benchmarks/results/{name}.json").read_text())


def measured_section() -> str:
    out: list[str] = []
    q = R("quickstart")
    front = q["front"]
    qual = [p for p in front if p["test_accuracy"] >= 0.95 and p["flash_ratio_vs_fp32"] <= 0.25]
    b = max(qual, key=lambda p: p["test_accuracy"]) if qual else None
    sh = q["phase_share"]
    out.append(
        "## Measured\n\nEvery figure below comes from a benchmark script's JSON in `benchmarks/results/`, measured on the\n2-core development machine (one torch thread). Where other jobs shared the machine, the JSON says so\nand times are upper bounds. Each topic document holds the full tables; this section is\nwritten by `benchmarks/readme_measured.py --write` from those files.\n"
    )
    out.append(
        f"**Quickstart** (`benchmarks/quickstart.py` → `quickstart.json`): {q['trials_complete']} trials of `studies/quickstart.toml` from scratch in {q['wall_time_s']:.0f} s "
        f"(training {sh['train_s'] * 100:.0f}% of trial time, fine-tuning {sh['finetune_s'] * 100:.0f}%, latency/Flash costing {sh['cost_s'] * 100:.1f}%); "
        f"the front holds {len(front)} trials, {len(qual)} of them with test accuracy ≥ 95% at ≤ 1/4 of the same architecture's FP32 Flash"
        + (
            f": best trial #{b['number']} with test accuracy {b['test_accuracy'] * 100:.1f}% at {b['values']['flash_bytes']:.0f} bytes ({b['flash_ratio_vs_fp32'] * 100:.1f}% of {b['fp32_flash_bytes']} FP32 bytes)."
            if b
            else "."
        )
    )
    c = R("compression")
    rows = c["families"]["cnn"]["rows"]
    mrows = c["families"]["mlp"]["rows"]
    t = [
        "",
        "**Compression** (`benchmarks/compression.py` → `compression.json`, digits test split; a MobileNetV2-style CNN of "
        f"{rows[0]['params']:,} weights so that operator work, not call overhead, decides ORT latency, and the MLP family (64 → 256 → 128 → 10, "
        f"{mrows[0]['params']:,} weights, call-overhead-bound); batch 1, 1 thread, median):",
        "",
        "| family | method | test acc | drop (pts) | params | Flash bytes | ORT ms | latency × FP32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fam, rs in (("cnn", rows), ("mlp", mrows)):
        for r in rs:
            t.append(
                f"| {fam} | {r['method']} | {r['accuracy'] * 100:.2f}% | {r['accuracy_drop_pts']:+.2f} | {r['params']:,} | {r['flash_bytes']:,} | {r['latency_ms']:.4f} | {r['latency_vs_fp32']:.2f} |"
            )
    out += t
    ch = c["checks"]
    out.append(
        f"\n50% structured pruning cut ORT latency by {ch['cnn_prune50_latency_cut']['value'] * 100:.0f}%; the INT8 ONNX file is {ch['cnn_int8_onnx_size_ratio']['value']:.3f}× the FP32 file at "
        f"{ch['cnn_int8_accuracy_drop_pts']['value']:.2f} pts accuracy drop; 4-bit QAT is {ch['cnn_qat4_accuracy_drop_pts']['value']:.2f} pts below FP32; binary weights {ch['cnn_binary_accuracy_drop_pts']['value']:.2f} pts. "
        "The Flash estimate equals the packed C array's byte count on every row. "
        f"Knowledge distillation (α {c['families']['cnn']['kd_prune50']['kd_alpha']}, T {c['families']['cnn']['kd_prune50']['kd_temperature']}) vs none on a 50%-pruned model, 3 seeds: "
        + "; ".join(
            f"{fam} {c['families'][fam]['kd_prune50']['kd']['mean'] * 100:.2f} ± {c['families'][fam]['kd_prune50']['kd']['std'] * 100:.2f}% vs {c['families'][fam]['kd_prune50']['no_kd']['mean'] * 100:.2f} ± {c['families'][fam]['kd_prune50']['no_kd']['std'] * 100:.2f}%"
            for fam in ("cnn", "mlp")
        )
        + ": it did not help here, the pruned students already match their teachers ([docs/compression.md](docs/compression.md))."
    )
    l = R("lut")
    d = l["devices"]["ort-cpu"]
    v = d["validate"]
    out.append(
        f"\n**Latency tables** (`benchmarks/lut.py` → `lut.json`, quickstart space, `ort-cpu`): `lut build` measured {d['build']['blocks']:,} blocks in {d['build']['total_s']:.0f} s; "
        f"`lut validate` over {v['raw']['n']} random models: raw ρ {v['raw']['spearman']:.3f}, {v['raw']['within_10pct'] * 100:.0f}% within ±10%; calibrated ρ {v['calibrated']['spearman']:.3f}, "
        f"Kendall τ {v['calibrated']['kendall']:.3f}, {v['calibrated']['within_10pct'] * 100:.0f}% within ±10%, {v['calibrated']['within_20pct'] * 100:.0f}% within ±20%."
    )
    ard = l["tinychat_mlp"]["arduino_uno"]

    def fx(k):
        x = ard[k]
        return f"{x['flash_bytes']:,} B Flash / {x['sram_bytes']:,} B SRAM ({'fits' if x['fits'] else 'does not fit'})"

    out.append(
        f"The tinychat MLP 256→256→192→128→40 on an Arduino Uno (32 KB Flash, 2 KB SRAM; with the fitted models: the library, the stack and the program around it): FP32 {fx('fp32')}, INT8 {fx('int8')}, 50%-pruned 2-bit {fx('pruned50_w2a8')}."
    )
    ds = R("distributed")
    th = ds["throughput"]
    so = ds["storage_overhead"]
    kr = ds["kill_and_resume"]
    out.append(
        f"\n**Distributed** (`benchmarks/distributed.py` → `distributed.json`, PostgreSQL on the same 2-vCPU VM): 0.5 s sleeping trials "
        f"{th['sleep_0.5s']['1_worker']['trials_per_min']:.1f} → {th['sleep_0.5s']['2_workers']['trials_per_min']:.1f} trials/min with 1 → 2 workers (**{th['sleep_0.5s']['speedup']:.2f}×**, goal ≥ 1.8×), "
        f"CPU-bound 0.5 s trials {th['cpu_0.5s']['speedup']:.2f}×; wall time per no-op trial {so[0]['jointnas_run_trials_mean_ms']:.0f} ms at 1k trials and {so[1]['jointnas_run_trials_mean_ms']:.0f} ms at 10k "
        f"(goal ≤ 50 ms, **missed**: plain Optuna `Study.optimize` alone takes {so[0]['optuna_optimize_mean_ms']:.0f} / {so[1]['optuna_optimize_mean_ms']:.0f} ms here, nearly all of it inside Optuna's storage calls "
        f"({so[0]['optuna_optimize_in_storage_calls_ms']:.0f} / {so[1]['optuna_optimize_in_storage_calls_ms']:.0f} ms); the global budget adds {so[0]['jointnas_extra_ms']:.0f} / {so[1]['jointnas_extra_ms']:.0f} ms, independent of the study's size); "
        f"kill-and-resume with {kr['workers']} workers and one SIGKILLed mid-trial: lost {kr['lost']}, duplicated {kr['duplicated']}."
    )
    smp = R("samplers")
    summary, setup, acc = smp["summary"], smp["setup"], smp["acceptance"]
    names = {"digits": "digits", "mnist1d": "MNIST-1D", "mnist1d_costly": "MNIST-1D with costly trials"}
    labels = {"random": "random", "tpe": "TPE", "nsga2": "NSGA-II", "dnas": "DNAS", "hardcore": "HardCoReNAS"}
    task_parts = []
    for task, sm in summary.items():
        epochs = next(r["train_epochs"] for r in smp["runs"] if r["task"] == task)
        finetune = setup["task_overrides"].get(task, {}).get("pipeline.finetune_epochs", setup["finetune_epochs"])
        parts = ", ".join(
            f"{labels[k]} {sm[k]['final_hv_mean']:.3f} ± {sm[k]['final_hv_std']:.3f} ({sm[k]['wall_time_s_mean']:.0f} s)"
            for k in labels
            if k in sm
        )
        seeds = len({r["seed"] for r in smp["runs"] if r["task"] == task})
        task_parts.append(f"{names.get(task, task)} ({epochs} + {finetune} epochs per trial, {seeds} seeds): {parts}")
    goal_parts = []
    for s in ("dnas", "hardcore"):
        seeds = ", ".join(
            f"{names.get(t, t)} {r[s]['seeds_met']} of {r[s]['seeds']}" for t, r in acc["reach"].items() if s in r
        )
        goal_parts.append(f"{labels[s]} in {seeds} seeds" + ("" if acc["reach_met_on"][s] else " (**missed**)"))
    vs_random = ", ".join(
        f"{names.get(t, t)} {'not run' if v['hardcore'] is None else format(v['hardcore'], '.3f')} vs {v['random']:.3f}"
        + ("" if v["met"] else " (**missed**)")
        for t, v in acc["hardcore_vs_random"].items()
    )
    out.append(
        f"\n**Samplers** (`benchmarks/samplers.py` → `samplers.json`, quickstart space, {setup['n_trials']} trials per study, "
        "one reference point per setting; final hypervolume mean ± std over seeds, mean wall time): "
        + "; ".join(task_parts)
        + ". Reaching NSGA-II's final hypervolume within ⅓ of NSGA-II's wall time (the goal: ≥ 2 of 3 seeds on one setting): "
        + "; ".join(goal_parts)
        + f". HardCoReNAS's final hypervolume against random search's: {vs_random}; HardCoReNAS trials over their latency budget: "
        f"{acc['hardcore_budget_violations']}. "
        + ("Goal met. " if acc["met"] else "Goal **not met**. ")
        + "See [docs/samplers.md](docs/samplers.md)."
    )
    wf = {"digits": R("workflows")["tasks"]["digits"], "mnist1d": R("workflows")["tasks"]["mnist1d"]}
    lines = []
    for task, w in wf.items():
        tb = {r["workflow"]: r for r in w["table"]}
        lines.append(
            f"{task}: "
            + ", ".join(
                f"`{k}` {tb[k]['hypervolume']:.2f} ({tb[k]['best_feasible_test_accuracy'] * 100:.1f}%)"
                for k in ["post", "aware", "aware-finetune"]
            )
            + f", winner `{w['winner']['hypervolume']}`"
        )
    won = {w["winner"][key] for w in wf.values() for key in ("hypervolume", "best_feasible_val_accuracy")}
    if len(won) == 1:
        verdict = f"**`{next(iter(won))}` won on both tasks** (best hypervolume and best feasible accuracy)"
    else:
        verdict = "Winners by hypervolume / by best feasible accuracy: " + "; ".join(
            f"{task} `{w['winner']['hypervolume']}` / `{w['winner']['best_feasible_val_accuracy']}`"
            for task, w in wf.items()
        )
    out.append(
        f"\n**Workflows** (`benchmarks/workflows.py` → `workflows.json`, {R('workflows')['n_trials_per_workflow']} search trials per workflow; "
        "hypervolume and, in brackets, best feasible test accuracy): "
        + "; ".join(lines)
        + f". {verdict} (`post`: NAS, then compress without fine-tuning; `aware`: compression-aware search without post-compression training; "
        "`aware-finetune`: with it). "
        "Definitions in [docs/workflows.md](docs/workflows.md).\n\n![workflow comparison on digits](benchmarks/results/workflows-digits.png)\n![workflow comparison on MNIST-1D](benchmarks/results/workflows-mnist1d.png)"
    )
    e = R("export")
    out.append(
        f"\n**Export** (`benchmarks/export.py` → `export.json`, every front trial of an 8-trial quickstart study): INT8 ONNX test accuracy within 1 pt of the trial's: {e['int8_within_1pt']} of {len(e['rows'])}; measured FP32 latency within 15% of the table's prediction: {e['fp32_latency_within_15pct_of_lut']} of {len(e['rows'])}; C array bytes equal to the Flash estimate: {e['c_array_equals_flash_estimate']} of {len(e['rows'])}. "
        f"The exported model (the trial's stored one: export trains nothing) has the trial's test accuracy in {sum(abs(r['test_accuracy_torch'] - r['test_accuracy_reported']) < 1e-9 for r in e['rows'])} of {len(e['rows'])}; "
        f"the C library built on this machine agrees with `model.onnx` on ≥ 98% of the raw test images in {e['c_host_agrees_98pct_with_onnx']} of {len(e['rows'])} and is within 3 pt of the trial's accuracy in {e['c_host_within_3pt_of_trial']} of {len(e['rows'])}. "
        f"Median latency error {100 * e['median_fp32_vs_lut']:+.1f}%; `baseline.onnx` (uncompressed) within 15% of its prediction: {e['baseline_latency_within_15pct_of_lut']} of {len(e['rows'])}."
    )
    big = R("export_largest")["largest_architecture"]
    out.append(
        f"The quickstart space's largest architecture trained {big['train_epochs']} epochs with {big['finetune_epochs']}-epoch fine-tunes: "
        f"its trial took {big['trial_s']:,.0f} s, its export from the stored model {big['export_s']:.1f} s ({100 * big['export_over_trial']:.1f}%), "
        f"and `model.onnx` on raw digits pixels reaches {100 * big['test_accuracy_model_onnx_raw_pixels']:.2f}% against the trial's {100 * big['test_accuracy_reported']:.2f}% (`export_largest.json`; a loaded machine)."
    )
    tk = R("tasks")
    m = tk["mnist1d_mcu"]
    out.append(
        f"\n**Tasks** (`benchmarks/tasks.py` → `tasks.json`): `studies/mnist1d_mcu.toml`, {m['trials_complete']} trials in {m['wall_time_s']:.0f} s: best trial #{m['best_val_trial']['number']} reaches {m['best_val_trial']['test_accuracy'] * 100:.1f}% test accuracy at {m['best_val_trial']['flash_bytes']:,} B Flash, {m['best_val_trial']['sram_bytes']:,} B SRAM on the STM32F746 model; the CIFAR-10 and tinychat study files run 3 trials on tiny files in the real formats."
    )
    out.append(_mcu())
    return "\n".join(out).rstrip() + "\n"


# each packaged fit: its cycles JSON, the device, the board's name, the study whose space it was fitted on, how
MCU_FITS = (
    ("cycles", "arduino-uno", "Uno", "tinychat_arduino", "simavr and avr-gcc builds"),
    (
        "cycles-stm32f746",
        "stm32f746",
        "STM32F746",
        "mnist1d_mcu",
        "QEMU instruction counts and arm-none-eabi-gcc builds",
    ),
)


def _mcu() -> str:
    """The microcontroller paragraph: estimates vs the boards' builds (`benchmarks/mcu.py`, `benchmarks/cycles.py`)."""
    m = R("mcu")
    fitted_on = {device: study for _, device, _, study, _ in MCU_FITS}
    parts = []
    for name, s in m["studies"].items():
        figures = []
        for device, d in s["summary"]["devices"].items():
            rows = [t["devices"][device] for t in s["trials"] if device in t["devices"]]
            if all(r["fits"] is None for r in rows):  # a profile without a [toolchain] (docs/mcu.md names it)
                continue
            lat, lib = d["median_abs_latency_error"], d.get("max_abs_library_flash_error")
            figures.append(
                f"{device}: {d['rated_fits']} rated as fitting, {d['rated_fits_that_link_and_run']} of them link and run, "
                f"{d['contradicted']} verdicts contradicted{' (certified)' if d.get('certified') else ''}, "
                f"median |Flash error| {100 * d['median_abs_flash_error']:.1f}%"
                + ("" if lib is None else f" (library: at most {100 * lib:.1f}%)")
                + ("" if lat is None else f", median |latency error| {100 * lat:.1f}% vs the simulator")
                + (
                    ""
                    if fitted_on.get(device, name) == name
                    else f" (fitted on the {fitted_on[device]} space: kernel classes it never met are priced by hand-set coefficients)"
                )
            )
        agree = s["summary"]["min_c_vs_torch_agreement"]
        parts.append(
            f"`{name}` ({s['n_trials']} trials, front {s['front']}; C library vs torch on the test split ≥ {100 * agree:.1f}%): "
            + "; ".join(figures)
        )
    for name, _, board, space, how in MCU_FITS:
        c = R(name)
        hand, fit = c["validate_hand_set"]["metrics"], c["validate_fitted"]["metrics"]
        parts.append(
            f"The {board}'s models fitted on {how} (`benchmarks/cycles.py` → `{name}.json`, {c['calibration']['n_linked']} random models of the "
            f"{space} space; checked on {c['validate_fitted']['n_linked']} others, as deployed): cycles within ±10% {100 * hand['within_10pct']:.0f}% (hand-set) → "
            f"{100 * fit['within_10pct']:.0f}% (goal 95%{'' if c['goal_met'] else ', missed'}), mean |error| {100 * hand['mean_abs_rel_error']:.1f}% → "
            f"{100 * fit['mean_abs_rel_error']:.1f}%, ρ {hand['spearman']:.3f} → {fit['spearman']:.4f}; library Flash within ±2% "
            f"{100 * fit['flash']['within_2pct']:.0f}% (largest error {100 * fit['flash']['max_abs_rel_error']:.2f}%), arena + stack within ±5% "
            f"{100 * fit['sram']['within_5pct']:.0f}% (largest {100 * fit['sram']['max_abs_rel_error']:.2f}%); the packaged profile carries this fit"
        )
    return (
        "\n**Microcontrollers** (`benchmarks/mcu.py` → `mcu.json`, every front trial exported, its C library built by "
        "avr-gcc / arm-none-eabi-gcc and run in simavr (Uno) or QEMU (STM32F746)): "
        + ". ".join(parts)
        + ". QEMU counts instructions, not Cortex-M7 cycles (cycles_per_instruction 1.0). Per-trial figures and every "
        "contradicted verdict: [docs/mcu.md](docs/mcu.md)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="replace the section in README.md")
    args = parser.parse_args()
    section = measured_section()
    if not args.write:
        print(section)
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index("## Measured"), text.index("## Layout")
    readme.write_text(text[:start] + section + "\n" + text[end:])


if __name__ == "__main__":
    main()
