"""The documents quote the benchmark results as the benchmark scripts write them: no figure is stale or typed."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / f"benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_measured_section_is_what_readme_measured_writes():
    text = (ROOT / "README.md").read_text()
    start, end = text.index("## Measured"), text.index("## Layout")
    expected = script("readme_measured").measured_section() + "\n"
    assert text[start:end] == expected, "stale: run python benchmarks/readme_measured.py --write"


def test_the_sampler_tables_of_docs_samplers_are_what_the_benchmark_writes():
    samplers = script("samplers")
    text = samplers.DOC.read_text()
    written = samplers.DOC_BEGIN + text.split(samplers.DOC_BEGIN, 1)[1].split(samplers.DOC_END, 1)[0] + samplers.DOC_END
    result = json.loads((ROOT / "benchmarks/results/samplers.json").read_text())
    assert written == samplers.doc_section(result), "stale: run python benchmarks/samplers.py --merge … or a run"


def test_an_invocation_that_ran_one_sampler_still_writes_its_verdict():
    samplers = script("samplers")
    result = json.loads((ROOT / "benchmarks/results/samplers.json").read_text())
    result["runs"] = [r for r in result["runs"] if r["task"] == "digits" and r["sampler"] == "hardcore"]
    result["summary"] = samplers.summarize(result["runs"], ["digits"], ["hardcore"])
    result["acceptance"] = samplers.acceptance(result["summary"], result["runs"])
    section = samplers.doc_section(result)  # `--samplers hardcore` wrote the JSON, then failed on the doc
    hard = result["summary"]["digits"]["hardcore"]
    assert f"digits: {hard['final_hv_mean']:.3f} vs not run (**missed**)" in section
    assert f"| HardCoReNAS | {hard['final_hv_mean']:.3f} ± {hard['final_hv_std']:.3f} |" in section
    assert "| random |" not in section


def test_a_settings_table_names_the_machine_its_runs_recorded():
    samplers = script("samplers")
    result = json.loads((ROOT / "benchmarks/results/samplers.json").read_text())
    runs = [r for r in result["runs"] if r["task"] == "digits"]
    for r in runs:  # runs from before the field: no machine after the load average
        r.pop("machine", None)
    assert re.search(r"load average [0-9.]+–[0-9.]+\):$", samplers.doc_task("digits", result)[0])
    for i, r in enumerate(runs):
        r["machine"] = {"cpu": "Intel Xeon" if i % 2 else "AMD EPYC", "machine": "x86_64"}
    assert samplers.doc_task("digits", result)[0].endswith("; AMD EPYC and Intel Xeon (**mixed machines**)):")
    for r in runs:
        r["machine"]["cpu"] = "AMD EPYC"
    assert samplers.doc_task("digits", result)[0].endswith("; AMD EPYC):")
