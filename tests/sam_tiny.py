"""Tiny random-weight SAM twins for tests and benchmarks: official ``segment_anything`` and ``transformers``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch


def build_official_sam(
    image_size: int = 256, width: int = 48, depth: int = 2, heads: int = 2, global_blocks: tuple[int, ...] = (1,),
    prompt_dim: int = 32, decoder_mlp: int = 64, decoder_heads: int = 2, window: int = 4, seed: int = 0,
):
    """Returns an official ``segment_anything`` Sam with random weights drawn from ``seed``."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    patch = 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth, embed_dim=width, img_size=image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=heads, patch_size=patch, qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=list(global_blocks), window_size=window, out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(image_size // patch,) * 2,
            input_image_size=(image_size, image_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=decoder_mlp, num_heads=decoder_heads),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=prompt_dim,
        ),
    )
    with torch.no_grad():  # random, not-too-small positional and rel-pos tables so every path matters
        for name, param in sam.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                param.normal_(0, 0.02)
    torch.random.set_rng_state(generator_state)
    return sam.eval()


def hf_twin(official, path: Path | None = None):
    """Returns a ``transformers.SamModel`` with the official model's weights (saved to ``path`` when given)."""
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    from roadparse.models.sam.convert import official_to_hf_state_dict

    encoder = official.image_encoder
    blocks = encoder.blocks
    prompt_dim = official.prompt_encoder.embed_dim
    decoder = official.mask_decoder
    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=encoder.patch_embed.proj.out_channels, num_hidden_layers=len(blocks),
            num_attention_heads=blocks[0].attn.num_heads, image_size=encoder.img_size, patch_size=16,
            output_channels=prompt_dim, window_size=max(b.window_size for b in blocks),
            global_attn_indexes=[i for i, b in enumerate(blocks) if b.window_size == 0], num_pos_feats=prompt_dim // 2,
            mlp_dim=blocks[0].mlp.lin1.out_features,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=prompt_dim, image_size=encoder.img_size, patch_size=16, mask_input_channels=16,
        ),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=prompt_dim, mlp_dim=decoder.transformer.layers[0].mlp.lin1.out_features,
            num_hidden_layers=len(decoder.transformer.layers), num_attention_heads=decoder.transformer.layers[0].self_attn.num_heads,
            iou_head_hidden_dim=decoder.iou_prediction_head.layers[0].out_features,
        ),
    )
    model = SamModel(config).eval()
    missing, unexpected = model.load_state_dict(official_to_hf_state_dict(official.state_dict()), strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    if path is not None:
        model.save_pretrained(path)
    return model


def road_image(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """Returns an (H, W, 3) uint8 drawing: grey road band, white dashes, green verges, a dark patch, noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    image[:] = (70, 120, 50)
    yy, xx = np.mgrid[:height, :width]
    road = np.abs((yy - height / 2) - 0.3 * (xx - width / 2)) < height / 4
    image[road] = (110, 110, 115)
    image[road & (np.abs((yy - height / 2) - 0.3 * (xx - width / 2)) < 2) & ((xx // 12) % 2 == 0)] = (240, 240, 240)
    image[(yy - 20) ** 2 + (xx - 30) ** 2 < 150] = (40, 35, 30)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
