"""`jointnas compare`: workflows as config transforms, metrics, and the end-to-end report."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from jointnas.search.cli import main
from jointnas.search.config import load_config
from jointnas.search.tools.workflows import hypervolume, parse_workflows, post_plan, reference_point, stage_configs
from jointnas.spaces import UserInputError

from ..conftest import TINY_CONFIG, write_config


def test_stage_configs_are_transforms_of_one_config(tiny_config):
    config = load_config(tiny_config)
    nas, post = stage_configs(config, "post")
    assert (nas.study.name, post.study.name) == ("tiny-post-nas", "tiny-post")
    knobs = nas.space.compression
    assert knobs.prune_ratio == (0.0, 0.0) and knobs.rank_ratio == (1.0, 1.0)
    assert (knobs.weight_bits, knobs.act_bits, knobs.head_bits) == ([32], [32], [32])
    assert nas.pipeline.steps == [] and nas.constraints.bounds() == {}
    fixed = post.space.compression
    assert fixed.prune_ratio == (0.25, 0.25) and fixed.weight_bits == [8] and fixed.act_bits == [8]
    assert post.pipeline.steps == ["prune", "lowrank", "quantize"]
    # The architecture part of the space is untouched, so stage-1 parameters replay in stage 2.
    assert nas.space.model_dump(exclude={"compression"}) == config.space.model_dump(exclude={"compression"})
    (aware,) = stage_configs(config, "aware")
    assert aware.study.name == "tiny-aware" and "finetune" not in aware.pipeline.steps
    assert aware.space == config.space
    (full,) = stage_configs(config, "aware-finetune")
    assert full.pipeline == config.pipeline and full.study.name == "tiny-aware-finetune"
    hashes = {c.config_hash() for c in (nas, post, aware, full)}
    assert len(hashes) == 4


def test_post_plan_snaps_to_the_space(tmp_path):
    text = TINY_CONFIG.replace("weight_bits = [4, 8, 32]", "weight_bits = [2, 4]").replace(
        "prune_ratio = [0.0, 0.5]\nprune_step = 0.25", "prune_ratio = [0.0, 0.4]\nprune_step = 0.2"
    )
    plan = post_plan(load_config(write_config(tmp_path, text)))
    assert plan == {"prune_ratio": 0.2, "rank_ratio": 1.0, "weight_bits": 4, "act_bits": 8, "head_bits": 8}


def test_parse_workflows_and_bad_names(tmp_path, tiny_config, capsys):
    assert parse_workflows("aware, post,aware") == ["aware", "post"]
    with pytest.raises(UserInputError, match="unknown"):
        parse_workflows("post,nas")
    code = main(["compare", str(tiny_config), "--out", str(tmp_path / "o"), "--workflows", "bogus"])
    assert code == 2 and "choose from post,aware,aware-finetune" in capsys.readouterr().err
    no_ft = write_config(tmp_path, TINY_CONFIG.replace("[pipeline]", '[pipeline]\nsteps = ["prune", "quantize"]'))
    code = main(["compare", str(no_ft), "--out", str(tmp_path / "o")])
    assert code == 2 and "needs 'finetune'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_hypervolume_with_a_fixed_reference_point():
    directions = ["maximize", "minimize"]
    ref = np.array([0.0, 1.0])
    assert hypervolume(np.array([[0.5, 0.5]]), ref, directions) == pytest.approx(0.25)
    # Two points: union of boxes 0.5*0.5 + 0.25*... = area dominated in (1-acc, cost) space.
    two = np.array([[0.5, 0.5], [0.75, 0.75]])
    assert hypervolume(two, ref, directions) == pytest.approx(0.25 + 0.25 * 0.25)
    assert hypervolume(np.array([[0.9, 2.0]]), ref, directions) == 0.0  # beyond the reference point
    assert hypervolume(np.empty((0, 2)), ref, directions) == 0.0
    ref = reference_point([np.array([[0.9, 10.0]]), np.array([[0.8, 20.0]])], directions)
    assert ref.tolist() == pytest.approx([0.0, 22.0])


def test_compare_end_to_end_and_resume(tiny_config, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", str(tiny_config), "--out", str(out), "--n-trials", "2"])
    assert code == 0, capsys.readouterr().err
    for name in ("compare.json", "compare.html", "compare.md", "compare.png"):
        assert (out / name).is_file(), name
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "compare.json").read_text())
    rows = {r["workflow"]: r for r in summary["table"]}
    assert list(rows) == ["post", "aware", "aware-finetune"]
    assert all(r["search_trials"] == 2 for r in rows.values())
    url = f"sqlite:///{tiny_config.parent / 'tiny.db'}"
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert names == {"tiny-post-nas", "tiny-post", "tiny-aware", "tiny-aware-finetune"}
    nas = optuna.load_study(study_name="tiny-post-nas", storage=url)
    post = optuna.load_study(study_name="tiny-post", storage=url)
    # Stage 2 compresses exactly stage 1's front architectures.
    assert sorted(json.dumps(t.params, sort_keys=True) for t in post.trials) == sorted(
        json.dumps(t.params, sort_keys=True) for t in nas.best_trials
    )
    assert all(t.user_attrs["candidate"]["stages"][0]["weight_bits"] == 8 for t in post.trials)
    assert all(t.user_attrs["fp32_flash_bytes"] > t.user_attrs["flash_bytes"] for t in post.trials)
    assert rows["post"]["evaluated_models"] == len(nas.best_trials)
    assert all(0.0 <= r["hypervolume"] <= 1.0 for r in rows.values())
    assert all(len(c) == 2 for c in summary["curves"].values())
    assert summary["winner"]["hypervolume"] in rows
    html = (out / "compare.html").read_text()
    assert 'id="curves"' in html and 'id="front-flash_bytes"' in html
    # Resume: the same command adds no trial.
    before = {n: len(optuna.load_study(study_name=n, storage=url).trials) for n in names}
    assert main(["compare", str(tiny_config), "--out", str(out), "--n-trials", "2"]) == 0
    assert {n: len(optuna.load_study(study_name=n, storage=url).trials) for n in names} == before
