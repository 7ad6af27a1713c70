"""Building blocks shared by every family: conv-BN-activation, inverted residual, dense-activation.

Compression code relies on the attribute names used here (``conv``, ``bn``, ``act``, ``out_quant``,
``expand``, ``dw``, ``project``, ``linear``): they are the contract between families and compression.
"""

from __future__ import annotations

from torch import Tensor, nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


class ConvBNAct(nn.Module):
    """Conv → BatchNorm → activation (ReLU, or identity when ``act=False``).

    ``dims`` picks 2-D (``Conv2d``/``BatchNorm2d``, images) or 1-D (``Conv1d``/``BatchNorm1d``, series).
    ``out_quant`` is an identity slot where quantization inserts an activation fake-quantizer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
        dims: int = 2,
    ) -> None:
        super().__init__()
        self.conv = _CONV[dims](
            in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=False
        )
        self.bn = _BATCHNORM[dims](out_channels)
        self.act = nn.ReLU() if act else nn.Identity()
        self.out_quant: nn.Module = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.out_quant(self.act(self.bn(self.conv(x))))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand → k×k depthwise → 1x1 project, residual when shapes match.

    The expand conv is always present (also for expansion 1) so the hidden width can be pruned without
    touching the block's input or output, which residual connections tie to their neighbours.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, expansion: int, stride: int, dims: int = 2
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvBNAct(in_channels, hidden, 1, dims=dims)
        self.dw = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, dims=dims)
        self.project = ConvBNAct(hidden, out_channels, 1, act=False, dims=dims)
        self.use_residual = stride == 1 and in_channels == out_channels

    @property
    def hidden_channels(self) -> int:
        return self.dw.conv.out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_residual else y


class DenseAct(nn.Module):
    """Linear → ReLU, with an ``out_quant`` slot for an activation fake-quantizer."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.act = nn.ReLU()
        self.out_quant: nn.Module = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.out_quant(self.act(self.linear(x)))
