"""SAM automatic mask generation over ``transformers.SamModel``, ``SamHQModel`` or ``Sam2Model``.

Same semantics as ``segment_anything.SamAutomaticMaskGenerator`` (point grid, crop
layers, predicted-IoU and stability thresholds, box NMS within and between crops),
arranged so that a CPU or GPU does little work per candidate:

* the image embedding is computed once per crop (and for several tiles in one batch), with
  the ViT's relative-position attention bias built a block at a time
  (``roadparse.models.sam.encoder``: 1 GB less memory traffic per global block of ViT-L);
* the whole grid is decoded in large point batches (SAM: ``roadparse.models.sam.decoder``;
  SAM-HQ and SAM 2: their own prompt encoder and mask decoder, see
  ``roadparse.models.sam.variants``, which also holds each model's input geometry);
* predicted-IoU filtering runs before anything is upsampled (and, in SAM's fast decoder,
  before the per-point upscaling network runs);
* stability scores and boxes are computed exactly as the official does, on logits
  upsampled to the image's resolution (two-step bilinear: to the padded input size,
  crop, to the crop size; SAM 2, whose input is the crop stretched to a square: straight
  to the crop size), but a chunk at a time and reduced to counts and boxes at
  once: no full-resolution mask, RLE or box of a rejected candidate is ever kept.
  (Estimating stability on the 256x256 logits instead is not within tolerance: on
  rough logits it is off by up to 0.3, so it is not used.) With a stability threshold
  of 0 nothing is filtered on stability, so it is computed for the NMS survivors only,
  and the boxes for NMS come from ``roadparse.models.sam.boxes`` (a few exact rows and
  columns per candidate instead of the whole upsampled mask);
* only masks that survive NMS are upsampled again and binarised at full resolution.

Differences from the official generator: returned masks are COCO RLE with end-exclusive
boxes; ``min_mask_area`` drops masks smaller than that many pixels (the COMRP paper's
filter) instead of the official hole/island clean-up; empty masks are never returned.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import batched_nms

from roadparse.io import rle as rle_io
from roadparse.models import retain_freed_memory
from roadparse.models.sam.boxes import UpscaledBoxes
from roadparse.models.sam.variants import Features, model_family

log = logging.getLogger(__name__)

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def build_point_grid(n_per_side: int) -> np.ndarray:
    """Returns the (n*n, 2) float64 grid of (x, y) points in [0, 1], cell centres, row-major."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def generate_crop_boxes(size_hw: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Returns the crop boxes [x0, y0, x1, y1] of every crop layer and each box's layer index."""
    height, width = size_hw
    short_side = min(height, width)
    boxes, layers = [[0, 0, width, height]], [0]
    for layer in range(n_layers):
        n_side = 2 ** (layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_side))
        crop_w = int(math.ceil((overlap * (n_side - 1) + width) / n_side))
        crop_h = int(math.ceil((overlap * (n_side - 1) + height) / n_side))
        for x0 in [int((crop_w - overlap) * i) for i in range(n_side)]:
            for y0 in [int((crop_h - overlap) * i) for i in range(n_side)]:
                boxes.append([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)])
                layers.append(layer + 1)
    return boxes, layers


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Returns (h, w) after resizing the longest side to ``long_side`` (official rounding)."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def stability_scores(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """Returns (N,) float: IoU of the masks thresholded at ``t + offset`` and ``t - offset``.

    Args:
        logits: (N, H, W) float mask logits.
    """
    inner = (logits > (mask_threshold + offset)).flatten(1).sum(1, dtype=torch.int32)
    outer = (logits > (mask_threshold - offset)).flatten(1).sum(1, dtype=torch.int32)
    return inner / outer


def logits_to_boxes(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Returns (N, 4) int64 inclusive boxes of ``logits > threshold`` (zeros for empty masks).

    Row and column maxima of the float logits instead of ``any`` over a boolean mask:
    the same boxes from one cheap reduction each.

    Args:
        logits: (N, H, W) float.
    """
    if logits.shape[0] == 0:
        return torch.zeros(0, 4, dtype=torch.int64)
    return _boxes_from_profiles(logits.amax(2) > threshold, logits.amax(1) > threshold)


def _boxes_from_profiles(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    height, width = rows.shape[1], cols.shape[1]
    row_idx = torch.arange(height, device=rows.device)
    col_idx = torch.arange(width, device=cols.device)
    y1 = torch.where(rows, row_idx, -1).amax(1)
    y0 = torch.where(rows, row_idx, height).amin(1)
    x1 = torch.where(cols, col_idx, -1).amax(1)
    x0 = torch.where(cols, col_idx, width).amin(1)
    boxes = torch.stack([x0, y0, x1, y1], 1)
    return torch.where((y1 >= 0)[:, None], boxes, torch.zeros_like(boxes))


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Returns (N, 4) int64 boxes [x0, y0, x1, y1] with inclusive ends (zeros for empty masks).

    Args:
        masks: (N, H, W) bool.
    """
    if masks.shape[0] == 0:
        return torch.zeros(0, 4, dtype=torch.int64)
    return _boxes_from_profiles(masks.any(2), masks.any(1))


@dataclass
class CropGeometry:
    """How one crop of the image maps onto the model's input."""

    box: list[int]
    """[x0, y0, x1, y1] of the crop in the image."""
    input_hw: tuple[int, int]
    """(h, w) of the resized crop inside the padded square model input (SAM 2: the whole input)."""

    @property
    def size_hw(self) -> tuple[int, int]:
        """Returns (h, w) of the crop."""
        return self.box[3] - self.box[1], self.box[2] - self.box[0]


def _as_float32(features: Any) -> Any:
    """Returns image features (a tensor, or tuples and lists of them for SAM-HQ and SAM 2) with float tensors as float32."""
    if isinstance(features, torch.Tensor):
        return features.float() if features.is_floating_point() else features
    if isinstance(features, (list, tuple)):
        return type(features)(_as_float32(part) for part in features)
    return features


class SamAutomaticMasks:
    """Generates all masks of an image with a point grid and a ``transformers.SamModel``,
    ``SamHQModel`` or ``Sam2Model``.

    Arguments mirror ``segment_anything.SamAutomaticMaskGenerator``; ``min_mask_area``
    replaces ``min_mask_region_area`` (see the module docstring); ``upscale_dtype`` bfloat16
    runs SAM's fast decoder's mask upscaling in bfloat16 (faster, no longer equal to SAM: see
    :func:`roadparse.models.sam.decoder.decode_points_fast`; SAM-HQ and SAM 2 ignore it);
    ``encoder_dtype`` bfloat16 runs the image encoder under bfloat16 autocast (the embeddings come
    back as float32; fast on GPUs and on CPUs with AVX512-BF16 or AMX, slow elsewhere).
    """

    def __init__(
        self,
        model: Any,
        *,
        points_per_side: int = 16,
        points_per_batch: int = 256,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_area: int = 0,
        upscale_dtype: str | torch.dtype = torch.float32,
        encoder_dtype: str | torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.eval().to(self.device)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_area = min_mask_area
        self.upscale_dtype = getattr(torch, upscale_dtype) if isinstance(upscale_dtype, str) else upscale_dtype
        self.encoder_dtype = getattr(torch, encoder_dtype) if isinstance(encoder_dtype, str) else encoder_dtype
        self.point_grids = [
            build_point_grid(int(points_per_side / crop_n_points_downscale_factor**i)) for i in range(crop_n_layers + 1)
        ]
        retain_freed_memory()
        self.family = model_family(self.model)
        self.long_side = self.family.input_side
        self._mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(PIXEL_STD, dtype=torch.float32).view(3, 1, 1)

    # --- image side -------------------------------------------------------------------

    def pixels(self, crop: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Returns the (3, S, S) float32 normalised, padded model input and the resized (h, w).

        Resizing is PIL bilinear of the longest side to S, as the official ``ResizeLongestSide``
        (SAM 2: of both sides to S, as ``SAM2Transforms``; nothing is padded).
        """
        if self.family.stretch:
            new_h = new_w = self.long_side
        else:
            new_h, new_w = resized_shape(crop.shape[0], crop.shape[1], self.long_side)
        resized = np.asarray(Image.fromarray(crop).resize((new_w, new_h), Image.Resampling.BILINEAR))
        tensor = torch.from_numpy(resized.copy()).permute(2, 0, 1).float()
        tensor = (tensor - self._mean) / self._std
        tensor = F.pad(tensor, (0, self.long_side - new_w, 0, self.long_side - new_h))
        return tensor, (new_h, new_w)

    @torch.inference_mode()
    def embed(self, crops: list[np.ndarray]) -> tuple[Features, list[tuple[int, int]]]:
        """Returns the image features of (H, W, 3) uint8 crops and their resized sizes.

        SAM: the (B, C, h, w) image embeddings; SAM-HQ and SAM 2: a tuple of tensors (see
        :mod:`roadparse.models.sam.variants`). ``self.family.select(features, i)`` is crop i's.
        """
        prepared = [self.pixels(crop) for crop in crops]
        batch = torch.stack([tensor for tensor, _ in prepared]).to(self.device)
        with torch.autocast(self.device.type, dtype=self.encoder_dtype, enabled=self.encoder_dtype != torch.float32):
            features = self.family.embed(batch)
        return _as_float32(features), [size for _, size in prepared]

    # --- candidates (per crop, before NMS) --------------------------------------------

    def _upscale_frame(self, geometry: CropGeometry, low_side: int) -> tuple[int, tuple[int, int]]:
        """Returns the side the low-res logits are first upsampled to and the (h, w) kept of it.

        SAM: the padded input and the resized crop inside it. SAM 2: the low-res side itself and
        all of it (the identity), so the logits go straight to the crop's size.
        """
        if self.family.stretch:
            return low_side, (low_side, low_side)
        return self.long_side, geometry.input_hw

    def upscale(self, logits: torch.Tensor, geometry: CropGeometry, chunk: int = 32) -> torch.Tensor:
        """Returns (N, h, w) float logits at the crop's resolution from (N, L, L) low-res logits.

        Bilinear to the padded input size, crop the padding, bilinear to the crop size:
        the official ``Sam.postprocess_masks`` (SAM 2: bilinear to the crop size, as
        ``SAM2Transforms.postprocess_masks``).
        """
        height, width = geometry.size_hw
        out = torch.empty(logits.shape[0], height, width, dtype=logits.dtype, device=logits.device)
        padded, (in_h, in_w) = self._upscale_frame(geometry, logits.shape[-1])
        for start in range(0, logits.shape[0], chunk):
            part = logits[start : start + chunk, None]
            if padded != part.shape[-1]:
                part = F.interpolate(part, (padded, padded), mode="bilinear", align_corners=False)
            part = part[..., :in_h, :in_w]
            out[start : start + chunk] = F.interpolate(part, (height, width), mode="bilinear", align_corners=False)[:, 0]
        return out

    @torch.inference_mode()
    def candidates(self, embedding: Features, geometry: CropGeometry, layer: int = 0) -> dict[str, torch.Tensor]:
        """Returns the crop's candidates that pass the predicted-IoU threshold, before stability and NMS.

        Keys: ``logits`` (N, L, L) low-res float (L = 256 for 1024-pixel inputs), ``iou`` (N,),
        ``points`` (N, 2) float64 (x, y) in crop pixels, ``point_index`` (N,) grid index,
        ``mask_index`` (N,) 0..M-1 (M = 3 multimask outputs).

        Args:
            embedding: the crop's image features (SAM: its (1, C, h, w) image embedding).
        """
        height, width = geometry.size_hw
        points = self.point_grids[layer] * np.array([[width, height]])
        scale = np.array([[geometry.input_hw[1] / width, geometry.input_hw[0] / height]])
        model_points = torch.as_tensor(points * scale, dtype=torch.float32, device=self.device)
        logits, ious, indices = [], [], []
        n_masks = 3
        for start in range(0, len(points), self.points_per_batch):
            batch = model_points[start : start + self.points_per_batch]
            low, iou = self.family.decode(
                embedding, batch, iou_thresh=self.pred_iou_thresh, upscale_dtype=self.upscale_dtype
            )
            n_masks = iou.shape[1]
            iou = iou.flatten()
            keep = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
            logits.append(low.flatten(0, 1)[keep])
            ious.append(iou[keep])
            indices.append((torch.arange(iou.numel(), device=iou.device) + start * n_masks)[keep])
        index = torch.cat(indices)
        return {
            "logits": torch.cat(logits),
            "iou": torch.cat(ious),
            "points": torch.as_tensor(points, dtype=torch.float64)[index.cpu() // n_masks],
            "point_index": index // n_masks,
            "mask_index": index % n_masks,
        }

    def score(
        self, logits: torch.Tensor, geometry: CropGeometry, chunk: int = 32, stability: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Returns exact (N,) stability scores (None unless ``stability``) and (N, 4) inclusive boxes in
        crop pixels of (N, L, L) low-res logits.

        Computed on the upsampled logits as the official does, a chunk at a time, keeping
        nothing at full resolution.
        """
        if not stability:
            return None, self._boxes(logits, geometry, chunk)
        scores, boxes = [], []
        for start in range(0, logits.shape[0], chunk):
            full = self.upscale(logits[start : start + chunk], geometry, chunk)
            if stability:
                scores.append(stability_scores(full, self.mask_threshold, self.stability_score_offset).cpu())
            boxes.append(logits_to_boxes(full, self.mask_threshold).cpu())
        if not boxes:
            return (torch.zeros(0) if stability else None), torch.zeros(0, 4, dtype=torch.int64)
        return (torch.cat(scores) if stability else None), torch.cat(boxes)

    def _boxes(self, logits: torch.Tensor, geometry: CropGeometry, chunk: int) -> torch.Tensor:
        """Returns (N, 4) inclusive boxes in crop pixels of the upsampled logits (see ``sam_boxes``);
        only candidates the banded search cannot settle are upsampled in full."""
        padded, valid_hw = self._upscale_frame(geometry, logits.shape[-1])
        boxer = UpscaledBoxes(logits.shape[-1], padded, valid_hw, geometry.size_hw)
        boxes, unsettled = [], []
        for start in range(0, logits.shape[0], chunk):
            part_boxes, part_unsettled = boxer(logits[start : start + chunk], self.mask_threshold)
            boxes.append(part_boxes)
            unsettled.append(part_unsettled)
        if not boxes:
            return torch.zeros(0, 4, dtype=torch.int64)
        boxes_t, unsettled_t = torch.cat(boxes), torch.cat(unsettled)
        rows = unsettled_t.nonzero()[:, 0]
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            full = self.upscale(logits[part.to(logits.device)], geometry, chunk)
            boxes_t[part] = logits_to_boxes(full, self.mask_threshold).cpu()
        return boxes_t

    def _full_masks(self, found: dict[str, torch.Tensor], geometry: CropGeometry, chunk: int = 32) -> dict[str, Any]:
        """Returns the (N, h, w) bool masks of the candidates at crop resolution, their stability scores
        (computed here when ``found`` has none) and which masks are not empty."""
        masks, scores = [], []
        for start in range(0, found["logits"].shape[0], chunk):
            full = self.upscale(found["logits"][start : start + chunk], geometry, chunk)
            if "stability" not in found:
                scores.append(stability_scores(full, self.mask_threshold, self.stability_score_offset).cpu())
            masks.append(full > self.mask_threshold)
        height, width = geometry.size_hw
        masks_t = torch.cat(masks) if masks else torch.zeros(0, height, width, dtype=torch.bool)
        stability = found["stability"] if "stability" in found else torch.cat(scores) if scores else torch.zeros(0)
        return {"masks": masks_t, "stability": stability, "nonempty": masks_t.flatten(1).any(1)}

    def _near_crop_edge(self, boxes: torch.Tensor, geometry: CropGeometry, image_hw: tuple[int, int]) -> torch.Tensor:
        """Returns (N,) bool: boxes touching a crop edge that is not an image edge (official rule)."""
        x0, y0, _, _ = geometry.box
        shifted = boxes + torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
        crop = torch.tensor(geometry.box, dtype=boxes.dtype)
        image = torch.tensor([0, 0, image_hw[1], image_hw[0]], dtype=boxes.dtype)
        near_crop = torch.isclose(shifted, crop[None], atol=20.0, rtol=0)
        near_image = torch.isclose(shifted, image[None], atol=20.0, rtol=0)
        return (near_crop & ~near_image).any(1)

    @torch.inference_mode()
    def process_crop(
        self, embedding: Features, geometry: CropGeometry, layer: int, image_hw: tuple[int, int]
    ) -> dict[str, Any]:
        """Returns the crop's kept masks: ``masks`` (N, H, W) bool at image size, ``boxes`` (N, 4)
        inclusive xyxy in image pixels, ``iou``, ``stability``, ``points`` (N, 2) in image pixels."""
        found = self.candidates(embedding, geometry, layer)
        # At threshold 0 stability filters nothing: it is then computed for the NMS survivors only.
        filter_stability = self.stability_score_thresh > 0
        stability, found["boxes"] = self.score(found["logits"], geometry, stability=filter_stability)
        keep = torch.ones(len(found["iou"]), dtype=torch.bool)
        if stability is not None:  # computed when filtering by it
            found["stability"] = stability
            keep &= stability >= self.stability_score_thresh
        if self.crop_n_layers > 0:
            keep &= ~self._near_crop_edge(found["boxes"], geometry, image_hw)
        found = {key: value[keep.to(value.device)] for key, value in found.items()}
        order = batched_nms(
            found["boxes"].float(), found["iou"].float().cpu(), torch.zeros(len(found["iou"])), self.box_nms_thresh
        )
        found = {key: value[order.to(value.device)] for key, value in found.items()}
        full = self._full_masks(found, geometry)
        keep = full["nonempty"]
        masks, stability = full["masks"][keep], full["stability"][keep.cpu()]
        x0, y0, x1, y1 = geometry.box
        if (x0, y0, x1, y1) != (0, 0, image_hw[1], image_hw[0]):
            masks = F.pad(masks, (x0, image_hw[1] - x1, y0, image_hw[0] - y1), value=False)
        offset = torch.tensor([[x0, y0]], dtype=torch.float64)
        return {
            "masks": masks,
            "boxes": masks_to_boxes(masks).cpu(),
            "iou": found["iou"][keep.to(found["iou"].device)].float().cpu(),
            "stability": stability.float().cpu(),
            "points": found["points"][keep.cpu()] + offset,
            "crop_boxes": torch.tensor([geometry.box] * int(keep.sum()), dtype=torch.float32).reshape(-1, 4),
        }

    # --- whole images -------------------------------------------------------------------

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Returns the masks of one (H, W, 3) uint8 image as records (see :meth:`generate_batch`)."""
        return self.generate_batch([image])[0]

    def generate_batch(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Returns, per (H, W, 3) uint8 image, its mask records; image embeddings run as one batch.

        Each record: ``rle`` (COCO, counts as str), ``bbox`` [x0, y0, x1, y1] end-exclusive,
        ``area`` (pixels), ``predicted_iou``, ``stability_score``, ``point`` [x, y].
        """
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        jobs: list[tuple[int, list[int], int]] = []  # (image index, crop box, layer)
        for index, image in enumerate(images):
            boxes, layers = generate_crop_boxes(image.shape[:2], self.crop_n_layers, self.crop_overlap_ratio)
            jobs.extend((index, box, layer) for box, layer in zip(boxes, layers, strict=True))
        per_image: list[list[dict[str, Any]]] = [[] for _ in images]
        batch = max(1, len(images))
        for start in range(0, len(jobs), batch):
            group = jobs[start : start + batch]
            crops = [images[i][box[1] : box[3], box[0] : box[2]] for i, box, _ in group]
            features, input_sizes = self.embed(crops)
            for k, ((index, box, layer), input_hw) in enumerate(zip(group, input_sizes, strict=True)):
                geometry = CropGeometry(box=box, input_hw=input_hw)
                crop_features = self.family.select(features, k)
                per_image[index].append(self.process_crop(crop_features, geometry, layer, images[index].shape[:2]))
        return [self._records(parts) for parts in per_image]

    def _records(self, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        data = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
        if len(parts) > 1 and len(data["boxes"]):
            crop = data["crop_boxes"]
            scores = 1 / ((crop[:, 2] - crop[:, 0]) * (crop[:, 3] - crop[:, 1]))
            keep = batched_nms(data["boxes"].float(), scores, torch.zeros(len(scores)), self.crop_nms_thresh)
            data = {key: value[keep.to(value.device)] for key, value in data.items()}
        records = []
        for k in range(len(data["boxes"])):
            mask = data["masks"][k].cpu().numpy()
            area = int(mask.sum())
            if area == 0 or area < self.min_mask_area:
                continue
            records.append(
                {
                    "rle": rle_io.encode(mask),
                    "bbox": list(rle_io.bbox_xyxy(mask)),
                    "area": area,
                    "predicted_iou": round(float(data["iou"][k]), 6),
                    "stability_score": round(float(data["stability"][k]), 6),
                    "point": [round(float(v), 3) for v in data["points"][k]],
                }
            )
        return records
