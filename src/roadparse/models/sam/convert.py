"""Official Segment Anything checkpoints (``sam_vit_l_0b3195.pth``) as ``transformers.SamModel``.

Users often hold the official ``.pth`` files rather than a Hugging Face folder; this maps
their state-dict keys onto ``SamModel`` so both load through the same generator. The
equivalence test and the benchmark use the same mapping to copy random weights across.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Official image-encoder variants: embed dim -> (depth, heads, global attention blocks).
_VARIANTS: dict[int, tuple[int, int, list[int]]] = {
    768: (12, 12, [2, 5, 8, 11]),  # vit_b
    1024: (24, 16, [5, 11, 17, 23]),  # vit_l
    1280: (32, 16, [7, 15, 23, 31]),  # vit_h
}

_RENAMES: list[tuple[str, str]] = [
    (r"^image_encoder\.", "vision_encoder."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"^vision_encoder\.blocks\.", "vision_encoder.layers."),
    (r"\.norm(\d)\.", r".layer_norm\1."),
    (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
    (r"\.neck\.0\.", ".neck.conv1."),
    (r"\.neck\.1\.", ".neck.layer_norm1."),
    (r"\.neck\.2\.", ".neck.conv2."),
    (r"\.neck\.3\.", ".neck.layer_norm2."),
    (r"\.point_embeddings\.", ".point_embed."),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
]
_MLP = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(.*)$")


def official_to_hf_state_dict(state_dict: dict[str, Any], mlp_depth: int = 3) -> dict[str, Any]:
    """Returns the official SAM state dict renamed to ``transformers.SamModel`` keys.

    Args:
        state_dict: keys like ``image_encoder.blocks.0.attn.qkv.weight``.
        mlp_depth: layers of the decoder's MLP heads (3 in every released SAM).
    """
    converted: dict[str, Any] = {}
    for key, value in state_dict.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        if key == "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix":
            converted["prompt_encoder.shared_embedding.positional_embedding"] = value
            converted["shared_image_embedding.positional_embedding"] = value
            continue
        new = key
        for pattern, replacement in _RENAMES:
            new = re.sub(pattern, replacement, new)
        match = _MLP.match(new)
        if match:
            prefix, index, rest = match.group(1), int(match.group(2)), match.group(3)
            if index == 0:
                new = f"{prefix}.proj_in.{rest}"
            elif index == mlp_depth - 1:
                new = f"{prefix}.proj_out.{rest}"
            else:
                new = f"{prefix}.layers.{index - 1}.{rest}"
        converted[new] = value
    return converted


def sam_config_for_state_dict(state_dict: dict[str, Any]) -> Any:
    """Returns the ``SamConfig`` of a full-size official checkpoint (ViT-B, ViT-L or ViT-H).

    Raises:
        ValueError: the encoder width is not one of the released variants.
    """
    from transformers import SamConfig, SamVisionConfig

    width = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[0])
    if width not in _VARIANTS:
        raise ValueError(f"unknown SAM image encoder width {width}; known: {sorted(_VARIANTS)} (vit_b, vit_l, vit_h)")
    depth, heads, global_blocks = _VARIANTS[width]
    vision = SamVisionConfig(
        hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads, global_attn_indexes=global_blocks
    )
    return SamConfig(vision_config=vision)


def load_official_checkpoint(path: str | Path) -> Any:
    """Returns a ``transformers.SamModel`` holding the weights of an official ``.pth`` checkpoint.

    Raises:
        ValueError: the file is missing, unreadable, or not a SAM checkpoint.
    """
    import torch
    from transformers import SamModel

    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{path}: SAM checkpoint not found")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"{path}: cannot read SAM checkpoint: {exc}") from None
    if "image_encoder.patch_embed.proj.weight" not in state_dict:
        raise ValueError(f"{path}: not an official Segment Anything checkpoint (no image_encoder weights)")
    model = SamModel(sam_config_for_state_dict(state_dict))
    missing, unexpected = model.load_state_dict(official_to_hf_state_dict(state_dict), strict=False)
    if unexpected or [k for k in missing if "positional_embedding" not in k]:
        raise ValueError(f"{path}: checkpoint does not match SAM: missing {missing[:5]}, unexpected {unexpected[:5]}")
    log.info("loaded official SAM checkpoint %s", path)
    return model.eval()
