"""The mask-generator family: SAM (by Hugging Face id, local folder or official ``.pth``), SAM-HQ or
SAM 2 (by Hugging Face id or local folder), or offline Felzenszwalb segments.

Every generator has ``generate(image (H, W, 3) uint8) -> list[dict]`` and
``generate_batch(images) -> list[list[dict]]``; records hold ``rle``, ``bbox``
[x0, y0, x1, y1] end-exclusive, ``area``, ``predicted_iou``, ``stability_score`` and
``point`` [x, y].
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from roadparse.config import REFERENCE_GSD_CM, MasksSettings
from roadparse.models import load_pretrained, looks_like_path, resolve_device
from roadparse.units import area_px

log = logging.getLogger(__name__)

SAM_MODELS = ("facebook/sam-vit-base", "facebook/sam-vit-large", "facebook/sam-vit-huge")
SAM_VARIANT_MODELS = ("syscv-community/sam-hq-vit-large", "facebook/sam2.1-hiera-large")
"""SAM-HQ ViT-L and SAM 2.1 Hiera-L; any SAM-HQ or SAM 2 id or folder works too."""
OFFLINE_METHODS = ("felzenszwalb",)
_SUPPORTED_TYPES = ("sam", "sam_hq", "sam2", "sam2_video")
"""Config ``model_type``s the generator runs; ``sam2_video`` (the ``facebook/sam2.1-*`` checkpoints)
is loaded as an image ``Sam2Model``, its video memory modules unused."""
_MODEL_CLASSES = {"sam": "SamModel", "sam_hq": "SamHQModel", "sam2": "Sam2Model", "sam2_video": "Sam2Model"}


class MaskGenerator(Protocol):
    """Anything that turns an image into mask records."""

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]: ...

    def generate_batch(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]: ...


def list_mask_generators() -> list[str]:
    """Returns the generator names this build knows (any SAM, SAM-HQ or SAM 2 folder, or SAM ``.pth`` path, works too)."""
    return [*SAM_MODELS, *SAM_VARIANT_MODELS, *OFFLINE_METHODS]


def _load_sam_model(name_or_path: str) -> Any:
    """Returns a ``transformers.SamModel``, ``SamHQModel`` or ``Sam2Model`` from a hub id or a saved
    folder (the class chosen by its config's ``model_type``), or a ``SamModel`` from an official checkpoint.

    Raises:
        ValueError: the config's model type is not one of ``_SUPPORTED_TYPES``.
    """
    if name_or_path.endswith((".pth", ".pt")):
        from roadparse.models.sam.convert import load_official_checkpoint

        return load_official_checkpoint(name_or_path)
    import transformers
    from transformers import AutoConfig

    config = load_pretrained(AutoConfig, name_or_path)
    if config.model_type not in _SUPPORTED_TYPES:
        raise ValueError(
            f"{name_or_path!r} is a {config.model_type!r} model; the automatic mask generator supports model types "
            f"{', '.join(_SUPPORTED_TYPES)} (SAM ViT-B/L/H: {', '.join(SAM_MODELS)}, or an official SAM .pth; "
            f"SAM-HQ and SAM 2, e.g. {', '.join(SAM_VARIANT_MODELS)}; or a folder saved from any of them), "
            f"or the offline generator {', '.join(OFFLINE_METHODS)}"
        )
    return load_pretrained(getattr(transformers, _MODEL_CLASSES[config.model_type]), name_or_path)


def masks_at_gsd(settings: MasksSettings, gsd_cm: float) -> MasksSettings:
    """Returns ``settings`` with every pixel size filled in for tiles at ``gsd_cm`` cm/px.

    A pixel setting given by the user (``min_mask_area``, ``offline_min_size``) wins over its
    physical twin; otherwise the physical value is converted (areas by GSD², lengths by GSD). The
    Felzenszwalb scale and smoothing (``offline_scale``, ``offline_sigma``) stay in pixels at every
    GSD: that law was measured, not assumed. Converted by GSD² (scale 200 at 0.25 cm/px → 1.4 at
    3 cm/px) they split the highway family's coarse frames into 6-7x as many masks per m² as at
    0.25 cm/px; held in pixels, masks per m² stay within 2x from 0.25 to 3 cm/px
    (docs/benchmarks.md). At the paper's 0.25 cm/px the defaults give the paper's pixel values
    (3000 px, scale 200, sigma 0.5).
    """
    area = settings.min_mask_area
    if area is None:
        area = round(area_px(settings.min_mask_area_cm2, gsd_cm))
    min_size = settings.offline_min_size
    if min_size is None and settings.offline_min_size_cm2 is not None:
        min_size = max(1, round(area_px(settings.offline_min_size_cm2, gsd_cm)))
    return settings.model_copy(update={"min_mask_area": area, "offline_min_size": min_size})


def load_mask_generator(
    settings: MasksSettings, device: str | None = None, gsd_cm: float = REFERENCE_GSD_CM
) -> MaskGenerator:
    """Returns the generator named by ``settings.generator`` configured from ``settings`` for tiles at ``gsd_cm``.

    Physical sizes (``min_mask_area_cm2``, ``offline_min_size_cm2``, ...) become pixels at
    ``gsd_cm`` (see :func:`masks_at_gsd`); pixel settings given by the user win.

    Raises:
        ModelLoadError: a SAM id/path that cannot be loaded (the message says how to give a local path).
        ValueError: a model that is not a supported mask generator.
    """
    settings = masks_at_gsd(settings, gsd_cm)
    name = settings.generator
    if name in OFFLINE_METHODS:
        from roadparse.models.offline_masks import OfflineMaskGenerator

        return OfflineMaskGenerator(
            scale=settings.offline_scale,
            sigma=settings.offline_sigma,
            min_size=settings.offline_min_size,
            min_mask_area=settings.min_mask_area,  # type: ignore[arg-type]
        )
    from roadparse.models.sam.amg import SamAutomaticMasks

    if "/" not in name and not looks_like_path(name) and not name.endswith((".pth", ".pt")):
        raise ValueError(
            f"unknown mask generator {name!r}; available: {', '.join(list_mask_generators())}, "
            "or a path to a SAM / SAM-HQ / SAM 2 folder or an official SAM .pth checkpoint"
        )
    model = _load_sam_model(name)
    return SamAutomaticMasks(
        model,
        points_per_side=settings.points_per_side,
        points_per_batch=settings.points_per_batch,
        pred_iou_thresh=settings.pred_iou_thresh,
        stability_score_thresh=settings.stability_score_thresh,
        stability_score_offset=settings.stability_score_offset,
        mask_threshold=settings.mask_threshold,
        box_nms_thresh=settings.box_nms_thresh,
        crop_n_layers=settings.crop_n_layers,
        crop_nms_thresh=settings.crop_nms_thresh,
        crop_overlap_ratio=settings.crop_overlap_ratio,
        crop_n_points_downscale_factor=settings.crop_n_points_downscale_factor,
        min_mask_area=settings.min_mask_area,  # type: ignore[arg-type]
        upscale_dtype=settings.upscale_dtype,
        encoder_dtype=settings.encoder_dtype,
        device=resolve_device(device or settings.device),
    )
