"""`jointnas lut build` covers the blocks of a ``cnn1d`` study (1-D shapes in the block keys)."""

from __future__ import annotations

from jointnas.devices import load_profile
from jointnas.devices.blocks import group_blocks
from jointnas.search.config import parse_config
from jointnas.search.tools.lut import space_blocks, timing_model
from jointnas.spaces import Candidate, Stage, trace_layers


def test_lut_space_blocks_cover_a_cnn1d_study():
    config = parse_config(
        {
            "task": {"dataset": "mnist1d"},
            "space": {
                "family": "cnn1d",
                "stages": [8, 16],
                "strides": [1, 2],
                "depth": [1, 2],
                "width_mult": [1.0],
                "kernel": [5],
                "expansion": [2],
                "stem_channels": [8],
                "compression": {"prune_ratio": [0.0, 0.0], "weight_bits": [8], "act_bits": [8]},
            },
        }
    )
    keys = [spec.key for spec in space_blocks(config, load_profile("ort-cpu"))]
    assert any(k.startswith("stem|in=1x40|") for k in keys)
    assert any(k.startswith("ir|in=8x40|") for k in keys) and any(k.startswith("ir|in=16x20|") for k in keys)
    # Every block a candidate of this space executes is in the table's key set.
    c = Candidate("cnn1d", (1, 40), 10, (Stage(8, 2, 5, 2, 1, 0, 1, 8, 8), Stage(16, 2, 5, 2, 2, 0, 1, 8, 8)), 8, 8)
    layers = trace_layers(timing_model(c, list(config.pipeline.steps)), (1, 40))
    assert {spec.key for spec, _ in group_blocks(layers)} <= set(keys)
