"""SAM's prompt encoder + mask decoder for many single-point prompts on one image embedding.

``decode_points`` gives the same logits and predicted IoUs as ``SamModel``'s prompt encoder
and mask decoder (multimask output), computed with less work per point.
"""

from __future__ import annotations

import torch


def decode_points_reference(
    model: object, embedding: torch.Tensor, image_pe: torch.Tensor, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ((P, 3, 256, 256) low-res logits, (P, 3) predicted IoU) through ``SamModel``'s own modules.

    Args:
        model: a ``transformers.SamModel``.
        embedding: (1, C, h, w) image embedding.
        image_pe: (1, C, h, w) image-wide positional embedding.
        points: (P, 2) float32 (x, y) in the model's input pixel frame.
    """
    labels = torch.ones(1, points.shape[0], 1, dtype=torch.long, device=points.device)
    sparse, dense = model.prompt_encoder(
        input_points=points[None, :, None, :], input_labels=labels, input_boxes=None, input_masks=None
    )
    masks, iou = model.mask_decoder(
        image_embeddings=embedding,
        image_positional_embeddings=image_pe,
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )
    return masks[0], iou[0]


def decode_points(
    model: object,
    embedding: torch.Tensor,
    image_pe: torch.Tensor,
    points: torch.Tensor,
    iou_thresh: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ((P, 3, 256, 256) low-res logits, (P, 3) predicted IoU) for single-point prompts.

    Logits of candidates whose IoU is not above ``iou_thresh`` may be left uncomputed
    (zeros) when ``iou_thresh`` > 0: callers drop them anyway.

    Args:
        model: a ``transformers.SamModel``.
        embedding: (1, C, h, w) image embedding.
        image_pe: (1, C, h, w) image-wide positional embedding.
        points: (P, 2) float32 (x, y) in the model's input pixel frame.
        iou_thresh: the caller's predicted-IoU threshold.
    """
    return decode_points_reference(model, embedding, image_pe, points)
