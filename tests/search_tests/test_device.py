"""``[pipeline] device`` through the CLI: refused before any write, outside the study's hash, and a
``cnn1d`` HardCoReNAS study with ``device = "auto"`` completes on a CPU machine."""

from __future__ import annotations

import optuna
import pytest
import torch

from jointnas.search.cli import main
from jointnas.search.config import load_config

from ..conftest import TINY_CONFIG, write_config

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _with_device(text: str, device: str) -> str:
    return text.replace("[pipeline]\n", f'[pipeline]\ndevice = "{device}"\n')


@NO_CUDA
def test_cuda_on_a_machine_without_it_exits_2_before_any_write(tmp_path, capsys):
    cfg = write_config(tmp_path, _with_device(TINY_CONFIG, "cuda"))
    assert main(["run", str(cfg), "--n-trials", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "no CUDA device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]  # no storage, no artifacts


def test_the_device_is_not_part_of_the_study_definition(tmp_path):
    hashes = {
        load_config(write_config(tmp_path, _with_device(TINY_CONFIG, d), f"{d}.toml")).config_hash()
        for d in ("auto", "cpu", "cuda")
    }
    assert len(hashes) == 1
    assert load_config(write_config(tmp_path, TINY_CONFIG)).config_hash() in hashes  # configs from before the key


def test_a_cnn1d_hardcore_study_with_device_auto_completes_on_the_cpu(tmp_path, capsys):
    """Acceptance of issue 18: MNIST-1D, ``family = "cnn1d"``, ``[sampler] name = "hardcore"``,
    ``[pipeline] device = "auto"`` (the CPU here); every trial within its LUT budget."""
    text = _with_device(TINY_CONFIG, "auto").replace('dataset = "digits"', 'dataset = "mnist1d"')
    options = "supernet_epochs = 1, score_samples = 8, fw_iterations = 5, finetune_epochs = 1"
    text = text.replace('family = "cnn"', 'family = "cnn1d"')
    text = text.replace('name = "random"', f'name = "hardcore"\noptions = {{ {options} }}')
    cfg = write_config(tmp_path, text)
    assert main(["run", str(cfg), "--n-trials", "2"]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:
        assert t.user_attrs["hardcore:scoring"] == "inherited"
        assert t.user_attrs["hardcore:lut_latency_ms"] <= t.user_attrs["hardcore:budget_ms"]
        assert t.user_attrs["fp32_latency_ms"] == pytest.approx(t.user_attrs["hardcore:lut_latency_ms"], rel=1e-9)
    assert study.user_attrs["hardcore:supernet_train_s"] > 0
