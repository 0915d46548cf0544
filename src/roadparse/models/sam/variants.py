"""What differs between SAM, SAM-HQ and SAM 2 in automatic mask generation, behind one small interface.

:class:`~roadparse.models.sam.amg.SamAutomaticMasks` runs the same point grid, IoU filter,
stability score, box NMS and RLE for every model; a *family* adapter supplies the rest:

* the model input: side ``S`` and how a crop fills it. SAM and SAM-HQ
  (``SamImageProcessor``) resize the longest side to ``S`` and pad bottom/right
  (``letterbox``); SAM 2 (``Sam2ImageProcessor``, the official ``SAM2Transforms``)
  resizes the crop to ``S`` x ``S`` (``stretch``), and its low-res logits are upsampled
  straight to the crop's size. All three normalise with ImageNet mean/std;
* :meth:`embed`: the image side, run once per crop for every point batch. SAM: the
  (B, C, h, w) image embedding. SAM-HQ: the embedding and the first global ViT block's
  (B, h, w, C_vit) output (the ``intermediate_embeddings`` its HQ decoder fuses). SAM 2:
  the two high-resolution FPN maps (B, C/8, 4h, 4w), (B, C/4, 2h, 2w), already projected
  by the decoder's ``conv_s0``/``conv_s1``, and the (B, C, h, w) embedding with the
  no-memory embedding added (``Sam2Model.get_image_embeddings``);
* :meth:`decode`: many single-point prompts on one crop's features, multimask output:
  ((P, M, L, L) low-res logits, (P, M) predicted IoUs). SAM runs the exact fast decoder of
  :mod:`roadparse.models.sam.decoder`; SAM-HQ and SAM 2 run the model's own prompt
  encoder and mask decoder, ``DECODE_CHUNK`` points at a time, exactly as their
  ``forward(..., multimask_output=True)`` does (SAM-HQ: ``hq_token_only=False``, the three
  SAM masks sorted by predicted IoU, each plus the HQ mask; SAM 2: object scores unused,
  as in the official image predictor).

``L`` is 4x the embedding side (256 for 1024-pixel inputs); nothing downstream assumes it.
"""

from __future__ import annotations

from typing import Any

import torch

from roadparse.models.sam.decoder import decode_points
from roadparse.models.sam.encoder import use_fast_attention

DECODE_CHUNK = 16
"""Points through SAM-HQ's / SAM 2's own mask decoder at once: it copies the image side and upscales
per point (SAM-HQ ViT-L: ~50 MB per point), so the caller's point batch is split."""

Features = torch.Tensor | tuple[torch.Tensor, ...]
"""A batch's (or one crop's) image features: a tensor (SAM) or a tuple of tensors."""


def _side(size: Any) -> int:
    return int(size[0] if isinstance(size, (list, tuple)) else size)


class SamFamily:
    """``transformers.SamModel``: letterboxed input, the fast exact point decoder."""

    stretch = False
    """True: the crop is resized to S x S (no aspect ratio kept, no padding)."""

    def __init__(self, model: Any):
        self.model = model
        use_fast_attention(model)  # SAM / SAM-HQ ViT: block-wise relative-position bias (equal, faster)
        self.input_side = self._input_side(model.config)
        device = next(model.parameters()).device
        with torch.inference_mode():
            self.image_pe = model.get_image_wide_positional_embeddings().to(device)

    @staticmethod
    def _input_side(config: Any) -> int:
        return _side(config.vision_config.image_size)

    def embed(self, pixels: torch.Tensor) -> Features:
        """Returns the image features of a (B, 3, S, S) normalised pixel batch (SAM: (B, C, h, w))."""
        return self.model.get_image_embeddings(pixels)

    @staticmethod
    def select(features: Features, index: int) -> Features:
        """Returns crop ``index``'s features from a batch's, batch dimension kept (size 1)."""
        if isinstance(features, torch.Tensor):
            return features[index : index + 1]
        return tuple(part[index : index + 1] for part in features)

    def decode(
        self, features: Features, points: torch.Tensor, iou_thresh: float = 0.0, upscale_dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ((P, M, L, L) low-res logits, (P, M) predicted IoU) of single-point prompts, multimask output.

        Args:
            features: one crop's features (from :meth:`select`).
            points: (P, 2) float32 (x, y) in the model's input pixel frame.
            iou_thresh: the caller's predicted-IoU threshold (SAM: logits of points whose IoUs are all
                at or under it may be left as zeros).
            upscale_dtype: dtype of SAM's mask upscaling (see :func:`~roadparse.models.sam.decoder.decode_points_fast`).
        """
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"SAM decodes one image embedding, got {len(features)} feature maps")
        return decode_points(self.model, features, self.image_pe, points, iou_thresh=iou_thresh, upscale_dtype=upscale_dtype)

    def _decode_chunks(self, points: torch.Tensor, embedding: torch.Tensor, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the model's own prompt encoder + mask decoder's (P, M, L, L) masks and (P, M) IoUs
        (multimask output) of single-point prompts, ``DECODE_CHUNK`` points at a time.

        Args:
            embedding: (1, C, h, w) image embedding.
            inputs: the decoder's family-specific inputs (extra image features).
        """
        logits, ious = [], []
        for start in range(0, points.shape[0], DECODE_CHUNK):
            batch = points[start : start + DECODE_CHUNK]
            labels = torch.ones(1, batch.shape[0], 1, dtype=torch.int, device=batch.device)
            sparse, dense = self.model.prompt_encoder(
                input_points=batch[None, :, None, :], input_labels=labels, input_boxes=None, input_masks=None
            )
            masks, iou = self.model.mask_decoder(
                image_embeddings=embedding,
                image_positional_embeddings=self.image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
                **inputs,
            )[:2]
            logits.append(masks[0])
            ious.append(iou[0])
        return torch.cat(logits), torch.cat(ious)


class SamHQFamily(SamFamily):
    """``transformers.SamHQModel``: SAM's input; the HQ decoder also reads the first global ViT block's output."""

    def embed(self, pixels: torch.Tensor) -> Features:
        """Returns (embedding (B, C, h, w), first global block output (B, h, w, C_vit)); the latter is
        absent when the ViT has no global block (the decoder then uses the embedding alone)."""
        embedding, intermediate = self.model.get_image_embeddings(pixels)
        return (embedding, *intermediate[:1])

    def decode(
        self, features: Features, points: torch.Tensor, iou_thresh: float = 0.0, upscale_dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`SamFamily.decode`; ``iou_thresh`` and ``upscale_dtype`` are not used."""
        embedding, *intermediate = features
        return self._decode_chunks(points, embedding, hq_token_only=False, intermediate_embeddings=intermediate or None)


class Sam2Family(SamFamily):
    """``transformers.Sam2Model``: the crop stretched to S x S; the decoder reads two high-resolution maps."""

    stretch = True

    @staticmethod
    def _input_side(config: Any) -> int:
        return _side(config.prompt_encoder_config.image_size)

    def embed(self, pixels: torch.Tensor) -> Features:
        """Returns (feat_s0 (B, C/8, 4h, 4w), feat_s1 (B, C/4, 2h, 2w), embedding (B, C, h, w))."""
        return tuple(self.model.get_image_embeddings(pixels))

    def decode(
        self, features: Features, points: torch.Tensor, iou_thresh: float = 0.0, upscale_dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`SamFamily.decode`; ``iou_thresh`` and ``upscale_dtype`` are not used."""
        *high_resolution, embedding = features
        return self._decode_chunks(points, embedding, high_resolution_features=high_resolution)


def model_family(model: Any) -> SamFamily:
    """Returns the adapter of a ``SamModel``, ``SamHQModel`` or ``Sam2Model`` (already on its device).

    Raises:
        ValueError: any other model.
    """
    from transformers import Sam2Model, SamHQModel, SamModel

    if isinstance(model, SamHQModel):
        return SamHQFamily(model)
    if isinstance(model, Sam2Model):
        return Sam2Family(model)
    if isinstance(model, SamModel):
        return SamFamily(model)
    raise ValueError(f"automatic masks need a SamModel, SamHQModel or Sam2Model, got {type(model).__name__}")
