"""Unstructured magnitude pruning: exact sparsity, schedules, masks kept through fine-tuning."""

from __future__ import annotations

import pytest
import torch

from jointnas.compression import (
    MagnitudePruner,
    PipelineConfig,
    SparsityConfig,
    TrainConfig,
    gradual_prune,
    layer_sparsity,
    prune_magnitude,
    run_pipeline,
    scheduled_sparsity,
)
from jointnas.spaces import Candidate, Stage, UserInputError, build_model

MLP = Candidate("mlp", (1, 8, 8), 10, (Stage(64), Stage(32)))
CNN = Candidate("cnn", (1, 8, 8), 10, (Stage(8, 1, 3, 2, 1), Stage(16, 1, 3, 2, 2)), stem_channels=8)


def test_schedules_start_at_zero_end_at_target_and_differ_in_shape():
    for kind in ("linear", "exponential", "cubic"):
        assert scheduled_sparsity(kind, 0.0, 0.8) == 0.0
        assert scheduled_sparsity(kind, 1.0, 0.8) == pytest.approx(0.8)
        assert scheduled_sparsity(kind, 2.0, 0.8) == pytest.approx(0.8)  # clipped after the end
    assert scheduled_sparsity("linear", 0.5, 0.8) == pytest.approx(0.4)
    assert scheduled_sparsity("cubic", 0.5, 0.8) == pytest.approx(0.8 * (1 - 0.125))
    assert scheduled_sparsity("exponential", 0.5, 0.75) == pytest.approx(0.5)  # density 0.25**0.5
    with pytest.raises(UserInputError, match="schedule 'step'"):
        scheduled_sparsity("step", 0.5, 0.5)


def test_layerwise_pruning_hits_the_sparsity_in_every_layer():
    torch.manual_seed(0)
    model = build_model(CNN)
    report = prune_magnitude(model, 0.6, scope="layer")
    assert "stem.conv" not in report and "classifier" not in report  # head layers stay dense
    for name, s in report.items():
        n = model.get_submodule(name).weight.numel()
        assert s == pytest.approx(round(0.6 * n) / n)
    # The smallest magnitudes went: every surviving weight is at least as large as any pruned one.
    torch.manual_seed(0)
    w0 = build_model(CNN).blocks[0].expand.conv.weight.detach().abs().flatten()
    kept = model.blocks[0].expand.conv.weight.detach().flatten() != 0
    assert w0[~kept].max() <= w0[kept].min()


def test_global_pruning_hits_the_overall_sparsity_with_uneven_layers():
    torch.manual_seed(0)
    model = build_model(MLP)
    with torch.no_grad():
        model.blocks[1].linear.weight.mul_(10)  # a layer of large weights keeps more of them globally
    report = prune_magnitude(model, 0.5, scope="global")
    sizes = {n: model.get_submodule(n).weight.numel() for n in report}
    zeros = sum(report[n] * sizes[n] for n in report)
    assert zeros == pytest.approx(round(0.5 * sum(sizes.values())))
    assert report["blocks.1.linear"] < 0.5 < report["blocks.0.linear"]


@pytest.mark.parametrize("schedule", ["linear", "exponential", "cubic"])
def test_gradual_pruning_follows_the_schedule_during_training(schedule):
    torch.manual_seed(0)
    model = build_model(MLP)
    x, y = torch.randn(256, 1, 8, 8), torch.randint(0, 10, (256,))
    seen: list[float] = []
    pruner = MagnitudePruner(model)
    names = pruner.names

    class Spy(torch.nn.Module):  # records overall sparsity at every forward pass (= every step)
        def forward(self, t):
            total = sum(model.get_submodule(n).weight.numel() for n in names)
            nz = sum(int(torch.count_nonzero(model.get_submodule(n).weight)) for n in names)
            seen.append(1 - nz / total)
            return t

    model.flatten = torch.nn.Sequential(model.flatten, Spy())
    cfg = SparsityConfig(0.7, schedule=schedule, end_fraction=0.5, updates=8)
    pruner = gradual_prune(model, x, y, TrainConfig(epochs=4, batch_size=32, lr=1e-3), cfg)
    assert seen[0] == 0.0
    assert all(b >= a - 1e-9 for a, b in zip(seen, seen[1:], strict=False))  # never regrows
    assert seen[len(seen) // 2 + 1] == pytest.approx(0.7, abs=1e-3)  # reached at end_fraction
    assert seen[-1] == pytest.approx(0.7, abs=1e-3)  # masks held during the fixed-mask phase
    mid = seen[len(seen) // 4]  # a quarter of the way = half of the schedule
    assert mid == pytest.approx(scheduled_sparsity(schedule, 0.5, 0.7), abs=0.08)
    report = pruner.fold(model)
    assert sum(report.values()) / len(report) > 0.5


def test_pipeline_sparsify_keeps_masks_through_qat_and_reports_layers():
    from jointnas.objectives import TaskConfig, load_task

    task = load_task(TaskConfig())
    cfg = PipelineConfig(
        train_epochs=1,
        finetune_epochs=1,
        steps=["sparsify", "quantize", "finetune"],
        sparsity=0.5,
        sparsity_scope="layer",
    )
    c = Candidate("mlp", (1, 8, 8), 10, (Stage(64, weight_bits=8, act_bits=8),), head_bits=8)
    res = run_pipeline(c, task.x_train, task.y_train, task.x_val, task.y_val, cfg)
    assert res.layer_sparsity == {"blocks.0.linear": pytest.approx(0.5)}
    assert layer_sparsity(res.model)["blocks.0.linear"] == pytest.approx(0.5)  # survived QAT + BN fold


def test_sparsity_plans_are_validated():
    with pytest.raises(UserInputError, match="sparsity 1.0"):
        prune_magnitude(build_model(MLP), 1.0)
    with pytest.raises(UserInputError, match="scope 'rows'"):
        SparsityConfig(0.5, scope="rows")
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="go together"):
        PipelineConfig(sparsity=0.5)
    with pytest.raises(ValidationError, match="go together"):
        PipelineConfig(steps=["sparsify"])


def test_random_criterion_hits_the_sparsity_and_ignores_magnitudes():
    torch.manual_seed(0)
    model = build_model(CNN)
    w0 = model.blocks[0].expand.conv.weight.detach().abs().flatten().clone()
    report = prune_magnitude(model, 0.5, scope="layer", criterion="random", generator=torch.Generator().manual_seed(1))
    for name, s in report.items():
        n = model.get_submodule(name).weight.numel()
        assert s == pytest.approx(round(0.5 * n) / n)
    kept = model.blocks[0].expand.conv.weight.detach().flatten() != 0
    assert w0[~kept].max() > w0[kept].min()  # not the smallest magnitudes that went
    # Same generator seed, same masks; another seed, other masks.
    torch.manual_seed(0)
    a, b, c = build_model(CNN), build_model(CNN), build_model(CNN)
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    prune_magnitude(a, 0.5, criterion="random", generator=torch.Generator().manual_seed(3))
    prune_magnitude(b, 0.5, criterion="random", generator=torch.Generator().manual_seed(3))
    prune_magnitude(c, 0.5, criterion="random", generator=torch.Generator().manual_seed(4))
    wa, wb, wc = (m.blocks[1].expand.conv.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_random_masks_grow_monotonically():
    torch.manual_seed(0)
    model = build_model(MLP)
    pruner = MagnitudePruner(model, "layer", criterion="random", generator=torch.Generator().manual_seed(0))
    pruner.update(model, 0.3)
    first = {n: m.clone() for n, m in pruner.masks.items()}
    pruner.update(model, 0.6)
    for n, m in pruner.masks.items():
        assert bool((m <= first[n]).all())  # every weight pruned at 0.3 stays pruned at 0.6
        assert 1 - m.float().mean().item() == pytest.approx(0.6, abs=0.01)


def test_conv_layers_only_leave_linears_dense():
    torch.manual_seed(0)
    model = build_model(CNN)
    report = prune_magnitude(model, 0.5, layers="conv")
    convs = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)} - {"stem.conv"}
    assert set(report) == convs and all(v > 0 for v in report.values())
    assert layer_sparsity(model)["classifier"] == 0.0
    mlp = build_model(MLP)
    assert prune_magnitude(mlp, 0.5, layers="conv") == {}  # an MLP has no convolution to prune
    assert layer_sparsity(mlp)["blocks.0.linear"] == 0.0
    with pytest.raises(UserInputError, match="sparsity layers 'dense'"):
        prune_magnitude(mlp, 0.5, layers="dense")
    with pytest.raises(UserInputError, match="sparsity criterion 'taylor'"):
        SparsityConfig(0.5, criterion="taylor")


def test_pipeline_passes_criterion_and_layers_to_the_sparsify_step():
    from jointnas.objectives import TaskConfig, load_task

    task = load_task(TaskConfig())
    cnn = Candidate("cnn", task.input_shape, 10, (Stage(8, 1, 3, 2, 1),), stem_channels=8)
    cfg = PipelineConfig(
        train_epochs=0,
        finetune_epochs=1,
        steps=["sparsify"],
        sparsity=0.5,
        sparsity_scope="layer",
        sparsity_criterion="random",
        sparsity_layers="conv",
    )
    res = run_pipeline(cnn, task.x_train[:128], task.y_train[:128], task.x_val[:64], task.y_val[:64], cfg)
    assert set(res.layer_sparsity) == {"blocks.0.expand.conv", "blocks.0.dw.conv", "blocks.0.project.conv"}
    assert all(v == pytest.approx(0.5, abs=0.05) for v in res.layer_sparsity.values())
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="sparsity_layers"):
        PipelineConfig(sparsity=0.5, steps=["sparsify"], sparsity_layers="linear")
