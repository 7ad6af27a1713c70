"""A fourth family registered through `jointnas.spaces.families` is searched, pruned, priced in a latency
table and exported without editing any other module; a sampler that cannot cover it refuses it."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
from torch import Tensor, nn

from jointnas.devices import load_profile
from jointnas.search.config import load_config
from jointnas.search.samplers import make_sampler
from jointnas.search.study import create_or_resume, run_study
from jointnas.search.tools.export import export_trial
from jointnas.search.tools.lut import space_blocks, timing_model
from jointnas.search.worker import record_run
from jointnas.spaces import Candidate, SpaceConfig, Stage, UserInputError, build_model, trace_layers
from jointnas.spaces import space as space_module
from jointnas.spaces.families import Family, register_family
from jointnas.spaces.layers import DenseAct
from jointnas.spaces.params import choice, int_range
from jointnas.spaces.space import knob_grid, stage_knobs


class Ladder(nn.Module):
    """Dense layers whose widths halve: ``width``, ``width/2``, … (at least 4)."""

    def __init__(self, candidate: Candidate) -> None:
        super().__init__()
        width = math.prod(candidate.input_shape)
        self.flatten = nn.Flatten()
        self.blocks = nn.Sequential(
            *(DenseAct(w, s.channels) for w, s in zip(self._ins(width, candidate), candidate.stages, strict=True))
        )
        self.classifier = nn.Linear(candidate.stages[-1].channels, candidate.num_classes)

    @staticmethod
    def _ins(width: int, candidate: Candidate) -> list[int]:
        return [width] + [s.channels for s in candidate.stages[:-1]]

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.blocks(self.flatten(x)))


class LadderFamily(Family):
    """One width parameter (``width``) for the first layer, ``rungs`` layers, knobs ``r{i}_*``."""

    name = "ladder"
    layout = "dense"

    def sample(self, suggester, space, input_shape, num_classes) -> Candidate:
        head_bits = choice(suggester, "head_bits", space.compression.head_bits)
        width = choice(suggester, "width", space.widths)
        n = int_range(suggester, "rungs", space.depth)
        stages = tuple(Stage(max(4, width >> i), **stage_knobs(suggester, i, space.compression, "r")) for i in range(n))
        return Candidate(self.name, tuple(input_shape), num_classes, stages, head_bits=head_bits)

    def stage_widths(self, space) -> list[list[int]]:
        return [[max(4, w >> i) for w in space.widths] for i in range(space.depth[1])]

    def grid(self, space) -> dict[str, list[Any]]:
        grid = {"head_bits": list(space.compression.head_bits), "width": list(space.widths)}
        grid["rungs"] = list(range(space.depth[0], space.depth[1] + 1))
        for i in range(space.depth[1]):
            grid.update(knob_grid(i, space.compression, "r"))
        return grid

    def build(self, candidate: Candidate) -> nn.Module:
        return Ladder(candidate)


CONFIG = """
[study]
name = "ladder"
seed = 1

[task]
dataset = "digits"

[space]
family = "ladder"
depth = [2, 3]
widths = [32, 64]

[space.compression]
prune_ratio = [0.0, 0.5]
prune_step = 0.25
rank_ratio = [0.5, 1.0]
rank_step = 0.5
weight_bits = [4, 8]
act_bits = [8, 32]

[pipeline]
train_epochs = 1
finetune_epochs = 1
steps = ["prune", "finetune", "lowrank", "quantize", "finetune"]

[device]
repeats = 3
warmup = 1

[sampler]
name = "random"

[budget]
n_trials = 2
"""


@pytest.fixture
def ladder(monkeypatch):
    monkeypatch.setitem(space_module._FAMILIES, "ladder", LadderFamily())
    yield
    # monkeypatch restores the registry: the family is gone for other tests


def test_a_registered_family_is_searched_pruned_priced_and_exported(ladder, tmp_path: Path) -> None:
    path = tmp_path / "ladder.toml"
    path.write_text(textwrap.dedent(CONFIG))
    config = load_config(path)
    study = create_or_resume(config, f"sqlite:///{tmp_path / 'ladder.db'}")
    record_run(study, 2, tmp_path / "artifacts")
    run_study(config, study, config_path=path, artifact_dir=tmp_path / "artifacts")
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        cand = Candidate.from_dict(t.user_attrs["candidate"])
        assert cand.family == "ladder" and set(t.params) >= {"width", "rungs", "r0_prune", "r0_wbits"}
        widths = [s.channels for s in cand.stages]
        assert widths == [max(4, t.params["width"] >> i) for i in range(t.params["rungs"])]
        # Pruned as planned: the prune step removes weights whenever a rung has a ratio above 0.
        steps = {r["step"]: r for r in t.user_attrs["steps"][:2]}
        pruned = any(s.prune_ratio > 0 for s in cand.stages)
        assert (steps["prune"]["params"] < steps["train"]["params"]) == pruned
        assert t.values[1] > 0 and t.values[2] == t.user_attrs["flash_bytes"] > 0
        # The latency table enumeration covers every block the trial's deployment form has.
        model = timing_model(cand, list(config.pipeline.steps), config.pipeline.prune_scope, config.pipeline.rank_mode)
        blocks = {s.key for s in space_blocks(config, load_profile("ort-cpu"))}
        table_keys = {s.key for s in study_table_blocks(model, cand)}
        assert table_keys <= blocks
    # exported from its stored model (the family's modules rebuilt from plain data), and rebuilt by retraining
    report = export_trial(study, 0, tmp_path / "out", lut=tmp_path / "lut-ort-cpu-t1.json")
    assert report["candidate"]["family"] == "ladder" and report["source"] == "stored model"
    assert report["accuracy"]["torch"] == pytest.approx(trials[0].user_attrs["test_accuracy"])
    rebuilt = export_trial(
        study, 0, tmp_path / "re", retrain=True, retrain_epochs=1, lut=tmp_path / "lut-ort-cpu-t1.json"
    )
    assert rebuilt["source"] == "retrained"
    assert (tmp_path / "out" / "model.onnx").is_file()


def study_table_blocks(model: nn.Module, cand: Candidate):
    from jointnas.devices import LatencyTable

    return LatencyTable(None, warmup=1, repeats=3).blocks(trace_layers(model, cand.input_shape))


def test_registering_needs_a_name_and_unknown_families_are_config_errors() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        register_family(Family())
    with pytest.raises(ValueError, match="unknown family 'ladder'; choose one of cnn, cnn1d, mlp"):
        SpaceConfig(family="ladder")


def test_a_sampler_that_cannot_cover_the_family_refuses_it(ladder) -> None:
    space = SpaceConfig(family="ladder", depth=(2, 3), widths=[32, 64])
    assert build_model(space_module.sample_candidate(_first(), space, (64,), 10)).classifier.out_features == 10
    with pytest.raises(UserInputError, match=r"the dnas sampler needs a \[space\] family a supernet covers"):
        make_sampler("dnas", {}, seed=0, space=space)
    with pytest.raises(UserInputError, match="sampler 'hardcore' searches the block choices and depths"):
        make_sampler("hardcore", {}, seed=0, space=space)
    grid = make_sampler("grid", {}, seed=0, space=space)
    assert {"width", "rungs", "r0_prune", "r2_wbits"} <= set(grid._search_space)
    assert "stem_channels" not in grid._search_space


def _first():
    from jointnas.spaces import FixedParams

    return FixedParams({})
