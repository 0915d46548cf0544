"""Crop encoders: one embedding per mask crop, from any hidden layer of one forward pass.

Families (detected from the loaded config's ``model_type``, so local paths work):

- **ViT** (``dinov2``, ``dinov2_with_registers``, ``dinov3_vit``): the CLS token of
  hidden layer L = ``hidden_states[L][:, 0]`` (``hidden_states[0]`` is the patch
  embedding, so layers are 1..num_hidden_layers). No layernorm is applied, matching
  the paper's "hidden 12 state".
- **ResNet** (``resnet``, e.g. ``microsoft/resnet-50``): global-average-pooled output
  of stage k, where stage 1 is the stem (embedder) and stages 2..5 the four residual
  stages, i.e. ``hidden_states[k - 1].mean((2, 3))`` -- the paper's "5-stage
  hierarchical CNN".
- **EfficientNet-Lite0** (name ``efficientnet-lite0``, offline, real ImageNet weights):
  global-average-pooled layers 1..7 = MBConv stage outputs, 8 = 1280-d head.

Every encoder takes crops already resized to ``input_size`` as (B, S, S, 3) uint8 RGB
and applies its own normalisation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.models import load_pretrained, resolve_device

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIT_TYPES = ("dinov2", "dinov2_with_registers", "dinov3_vit")
CNN_TYPES = ("resnet",)
EFFICIENTNET_LITE0 = "efficientnet-lite0"

_KNOWN: dict[str, str] = {
    "facebook/dinov2-base": "DINOv2 ViT-B/14, CLS of layers 1..12 (paper default: 12)",
    "facebook/dinov2-small": "DINOv2 ViT-S/14, CLS of layers 1..12",
    "facebook/dinov2-large": "DINOv2 ViT-L/14, CLS of layers 1..24",
    "facebook/dinov3-vitb16-pretrain-lvd1689m": "DINOv3 ViT-B/16, CLS of layers 1..12",
    "facebook/dinov3-vitl16-pretrain-sat493m": "DINOv3 ViT-L/16 satellite-pretrained, CLS of layers 1..24",
    "microsoft/resnet-50": "ResNet-50 ImageNet-1k, pooled stages 1 (stem)..5",
    EFFICIENTNET_LITE0: "EfficientNet-Lite0 ImageNet, offline weights; pooled stages 1..7, 8 = 1280-d head",
}


def list_encoders() -> dict[str, str]:
    """Returns known encoder names -> descriptions (any DINOv2/DINOv3/ResNet id or local path also works)."""
    return dict(_KNOWN)


class Encoder:
    """A frozen image model that maps crops to one embedding per requested layer.

    Attributes:
        name: the id, path or name it was loaded from.
        layers: the layers :meth:`encode` returns.
        available_layers: every layer this model can give.
        input_size: crop side the model expects (pixels).
        device: the torch device it runs on.
    """

    def __init__(self, name: str, model: Any, layers: list[int], available_layers: list[int], device: Any,
                 mean: tuple[float, ...], std: tuple[float, ...], input_size: int = 224):
        bad = [layer for layer in layers if layer not in available_layers]
        if not layers or bad:
            raise ValueError(
                f"encoder {name!r}: layer(s) {bad or layers} not available; "
                f"valid layers: {available_layers[0]}..{available_layers[-1]}"
            )
        import torch

        self.name = name
        self.model = model.to(device).eval()
        self.layers = sorted(set(layers))
        self.available_layers = list(available_layers)
        self.input_size = input_size
        self.device = device
        # Normalisation as (x - mean) / std on 0..255 input, folded into one multiply-add.
        self._mean = torch.tensor([255.0 * m for m in mean], device=device).view(1, 3, 1, 1)
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=device).view(1, 3, 1, 1)

    def _to_tensor(self, crops: np.ndarray) -> Any:
        import torch

        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be (B, S, S, 3) uint8, got {crops.shape} {crops.dtype}")
        batch = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        return (batch.permute(0, 3, 1, 2).float() - self._mean) * self._scale

    def _forward(self, pixels: Any) -> dict[int, Any]:
        raise NotImplementedError

    def encode(self, crops: np.ndarray) -> dict[int, np.ndarray]:
        """Returns {layer: (B, D) float32 embeddings} of (B, S, S, 3) uint8 RGB crops."""
        import torch

        if len(crops) == 0:
            raise ValueError("encode() needs at least one crop")
        with torch.inference_mode():
            features = self._forward(self._to_tensor(crops))
        return {layer: features[layer].float().cpu().numpy() for layer in self.layers}


class VitEncoder(Encoder):
    """CLS token of chosen hidden layers of a DINOv2 / DINOv3 ViT, from one forward pass."""

    def _forward(self, pixels: Any) -> dict[int, Any]:
        hidden = self.model(pixel_values=pixels, output_hidden_states=True).hidden_states
        return {layer: hidden[layer][:, 0] for layer in self.layers}


class ResNetEncoder(Encoder):
    """Global-average-pooled stage outputs of a ResNet: stage 1 = stem, 2..5 = residual stages."""

    def _forward(self, pixels: Any) -> dict[int, Any]:
        hidden = self.model(pixel_values=pixels, output_hidden_states=True).hidden_states
        return {layer: hidden[layer - 1].mean(dim=(2, 3)) for layer in self.layers}


class EfficientNetLiteEncoder(Encoder):
    """Global-average-pooled stage outputs of EfficientNet-Lite0 (1..7 MBConv stages, 8 head)."""

    def _forward(self, pixels: Any) -> dict[int, Any]:
        maps = self.model.feature_maps(pixels, set(self.layers))
        return {layer: maps[layer].mean(dim=(2, 3)) for layer in self.layers}


def _normalisation(name_or_path: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Returns (mean, std) from the model's image processor config, else ImageNet's."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        if len(mean) == 3 and len(std) == 3:
            return mean, std
    except (OSError, ValueError, AttributeError, TypeError, ImportError) as exc:
        log.debug("%s: no image processor config (%s); using ImageNet mean/std", name_or_path, exc)
    return IMAGENET_MEAN, IMAGENET_STD


def _load_transformers_encoder(name_or_path: str, layers: list[int], device: Any) -> Encoder:
    from transformers import AutoConfig, AutoModel

    config = load_pretrained(AutoConfig, name_or_path)
    model_type = getattr(config, "model_type", None)
    if model_type not in VIT_TYPES + CNN_TYPES:
        raise ValueError(
            f"encoder {name_or_path!r} is a {model_type!r} model; supported families: "
            f"{', '.join(VIT_TYPES + CNN_TYPES)} (by id or local path) or {EFFICIENTNET_LITE0!r}. "
            f"Known encoders: {', '.join(_KNOWN)}"
        )
    model = load_pretrained(AutoModel, name_or_path)
    resolved = str(Path(name_or_path).expanduser()) if Path(name_or_path).expanduser().exists() else name_or_path
    mean, std = _normalisation(resolved)
    input_size = 224  # the paper's crop side; ViTs interpolate position embeddings for others
    if model_type in VIT_TYPES:
        available = list(range(1, config.num_hidden_layers + 1))
        return VitEncoder(name_or_path, model, layers, available, device, mean, std, input_size)
    available = list(range(1, len(config.hidden_sizes) + 2))
    return ResNetEncoder(name_or_path, model, layers, available, device, mean, std, input_size)


def load_encoder(name_or_path: str | Path, layers: list[int], device: Any = "auto") -> Encoder:
    """Returns a ready encoder for ``layers`` of the model at ``name_or_path``.

    Args:
        name_or_path: Hugging Face id or local folder of a DINOv2 / DINOv3 / ResNet
            model, or ``efficientnet-lite0`` (offline ImageNet weights).
        layers: layers to return (see the module docstring for the numbering).
        device: ``auto``, ``cpu``, ``cuda:N`` or a ``torch.device``.

    Raises:
        ValueError: unknown family or layer (the message lists the valid ones);
            ``ModelLoadError`` (a ValueError) when the weights cannot be loaded.
    """
    import torch

    device = device if isinstance(device, torch.device) else resolve_device(str(device))
    name = str(name_or_path)
    if name.lower() == EFFICIENTNET_LITE0:
        from roadparse.models.efficientnet_lite import (
            INPUT_MEAN,
            INPUT_STD,
            LAYER_CHANNELS,
            load_efficientnet_lite0,
        )

        mean = (INPUT_MEAN / 255.0,) * 3
        std = (INPUT_STD / 255.0,) * 3
        # batch norms folded into the convolutions: 1.3x, the same clusters (bench/encoder_speedups.py)
        return EfficientNetLiteEncoder(EFFICIENTNET_LITE0, load_efficientnet_lite0().folded(), layers,
                                       sorted(LAYER_CHANNELS), device, mean, std, 224)
    return _load_transformers_encoder(name, layers, device)
