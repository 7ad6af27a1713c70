"""A traced layer's geometry as one string (comparing traces in tests)."""

from __future__ import annotations

from jointnas.spaces import LayerInfo


def layer_key(layer: LayerInfo) -> str:
    shape = "x".join(str(d) for d in layer.in_shape)
    return (
        f"{layer.kind}|in={shape}|out={layer.out_channels}|k={layer.kernel}|s={layer.stride}"
        f"|g={layer.groups}|relu={int(layer.relu)}"
    )
