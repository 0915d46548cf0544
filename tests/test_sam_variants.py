"""SAM-HQ and SAM 2 in the automatic mask generator: tiny random models saved to a folder and loaded by path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.sam_tiny import road_image

from roadparse.config import MasksSettings
from roadparse.io import rle as rle_io
from roadparse.models.mask_generators import (
    _SUPPORTED_TYPES,
    list_mask_generators,
    load_mask_generator,
)
from roadparse.models.sam.amg import CropGeometry, build_point_grid

SIDE = 128  # model input side: 8x8 embeddings, 32x32 low-res masks


def _randomise(model: torch.nn.Module) -> None:
    """PyTorch's default initialisation (as the official models) instead of transformers' N(0, 0.02), whose
    near-zero logits give one flat mask; random, not-too-small positional tables so that positions matter."""
    torch.manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for name, param in model.named_parameters():
            if "pos_embed" in name or "rel_pos" in name:
                param.normal_(0, 0.02)


def _tiny_sam_hq(folder: Path) -> Path:
    from transformers import SamHQConfig, SamHQModel

    torch.manual_seed(0)
    config = SamHQConfig(
        vision_config={
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": SIDE, "patch_size": 16,
            "output_channels": 32, "window_size": 4, "global_attn_indexes": [1], "num_pos_feats": 16, "mlp_dim": 64,
        },
        prompt_encoder_config={"hidden_size": 32, "image_size": SIDE, "patch_size": 16, "mask_input_channels": 16},
        mask_decoder_config={
            "hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "iou_head_hidden_dim": 32, "vit_dim": 32,
        },
    )
    model = SamHQModel(config)
    _randomise(model)
    model.save_pretrained(folder)
    return folder


def _tiny_sam2(folder: Path, video: bool = False) -> Path:
    """A 4-stage Hiera (16..128 channels, 5 blocks): feature maps 32, 16 and 8 pixels wide at input 128.

    ``video``: saved as ``Sam2VideoModel`` (model type ``sam2_video``, like the ``facebook/sam2.1-*`` checkpoints).
    """
    from transformers import Sam2Config, Sam2Model, Sam2VideoConfig, Sam2VideoModel
    from transformers.models.sam2.configuration_sam2 import (
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    torch.manual_seed(0)
    backbone = Sam2HieraDetConfig(
        hidden_size=16, num_attention_heads=1, image_size=[SIDE, SIDE], blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3], window_positional_embedding_background_size=[4, 4],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16], fpn_hidden_size=32,
        backbone_feature_sizes=[[SIDE // 4] * 2, [SIDE // 8] * 2, [SIDE // 16] * 2],
    )
    prompt = {"hidden_size": 32, "image_size": SIDE, "patch_size": 16}
    decoder = {"hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "iou_head_hidden_dim": 32}
    if video:
        config = Sam2VideoConfig(
            vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder, image_size=SIDE,
            memory_attention_hidden_size=32, memory_attention_num_layers=1, memory_encoder_hidden_size=32,
            memory_encoder_output_channels=16, mask_downsampler_embed_dim=32, memory_fuser_embed_dim=32,
        )
        model = Sam2VideoModel(config)
    else:
        config = Sam2Config(
            vision_config=vision, prompt_encoder_config=Sam2PromptEncoderConfig(**prompt),
            mask_decoder_config=Sam2MaskDecoderConfig(**decoder),
        )
        model = Sam2Model(config)
    _randomise(model)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["sam_hq", "sam2"])
def variant(request, tmp_path_factory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp(request.param) / "model"
    build = _tiny_sam_hq if request.param == "sam_hq" else _tiny_sam2
    return request.param, build(folder)


def _generator(folder: Path, **overrides):
    settings = {
        "generator": str(folder), "points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
        "min_mask_area": 10, "device": "cpu", **overrides,
    }
    return load_mask_generator(MasksSettings(**settings))


def test_names_and_supported_types():
    assert {"sam", "sam_hq", "sam2"} <= set(_SUPPORTED_TYPES)
    names = list_mask_generators()
    assert "syscv-community/sam-hq-vit-large" in names and "facebook/sam2.1-hiera-large" in names


def test_refuses_other_model_types(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16, image_size=32)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'vit' model.*sam, sam_hq, sam2"):
        _generator(tmp_path)


def test_generate_records_are_well_formed(variant):
    kind, folder = variant
    # Random tiny models give small, noisy logits (whole-image boxes, stability 0 at offset 1): box NMS off
    # and a small stability offset keep many candidates with varied scores to check.
    generator = _generator(folder, box_nms_thresh=1.0, stability_score_offset=0.02)
    assert type(generator.model).__name__ == {"sam_hq": "SamHQModel", "sam2": "Sam2Model"}[kind]
    image = road_image(120, 160)
    records = generator.generate(image)
    assert records, "the tiny model gave no mask at all: the test would check nothing"
    for record in records:
        mask = rle_io.decode(record["rle"])
        assert mask.shape == image.shape[:2]
        assert record["area"] == int(mask.sum()) >= 10
        x0, y0, x1, y1 = record["bbox"]
        assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
        assert record["bbox"] == list(rle_io.bbox_xyxy(mask))
        assert isinstance(record["predicted_iou"], float)
        assert 0.0 <= record["stability_score"] <= 1.0
        assert len(record["point"]) == 2
    assert len(records) >= 10 and len({record["stability_score"] for record in records}) > 1
    # two tiles in one embedding batch: the same records as one at a time (up to float rounding of a batched ViT)
    other = road_image(120, 160, seed=3)
    for batched, single in zip(generator.generate_batch([image, other]), [records, generator.generate(other)], strict=True):
        assert len(batched) == len(single)
        for key in ("predicted_iou", "stability_score", "area"):
            np.testing.assert_allclose([r[key] for r in batched], [r[key] for r in single], rtol=1e-3, atol=1e-4)


def test_candidates_equal_the_models_forward(variant):
    """Low-res logits and IoUs of the grid points equal ``model(pixel_values, input_points, multimask_output=True)``:
    the same input pixels, point frame, image features and decoder call."""
    kind, folder = variant
    generator = _generator(folder, points_per_side=2, points_per_batch=3)  # two point batches
    image = road_image(120, 160)
    features, sizes = generator.embed([image])
    assert sizes == [(SIDE, SIDE) if kind == "sam2" else (96, SIDE)]
    found = generator.candidates(features, CropGeometry(box=[0, 0, 160, 120], input_hw=sizes[0]))
    height, width = sizes[0]
    points = torch.as_tensor(build_point_grid(2) * np.array([[width, height]]), dtype=torch.float32)
    pixels = generator.pixels(image)[0][None]
    with torch.no_grad():
        out = generator.model(pixel_values=pixels, input_points=points[None, :, None, :], multimask_output=True)
    low_side = SIDE // 4
    assert out.pred_masks.shape == (1, 4, 3, low_side, low_side)
    torch.testing.assert_close(found["logits"], out.pred_masks[0].flatten(0, 1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(found["iou"], out.iou_scores[0].flatten(), atol=1e-4, rtol=1e-4)
    assert found["point_index"].tolist() == [i // 3 for i in range(12)]
    assert found["mask_index"].tolist() == [i % 3 for i in range(12)]
    full = generator.upscale(found["logits"][:2], CropGeometry(box=[0, 0, 160, 120], input_hw=sizes[0]))
    assert full.shape == (2, 120, 160)


def test_pixels_match_the_models_image_processor(variant):
    """SAM-HQ: ``SamImageProcessor`` (longest side, padded); SAM 2: ``Sam2ImageProcessor`` (stretched to a square).
    Both ImageNet-normalised; PIL's and torchvision's bilinear resizes differ by a few thousandths."""
    from transformers import Sam2ImageProcessor, SamImageProcessor

    kind, folder = variant
    if kind == "sam2":
        processor = Sam2ImageProcessor(size={"height": SIDE, "width": SIDE})
    else:
        processor = SamImageProcessor(size={"longest_edge": SIDE}, pad_size={"height": SIDE, "width": SIDE})
    image = road_image(120, 160)
    expected = processor(images=image, return_tensors="pt")["pixel_values"][0]
    ours = _generator(folder).pixels(image)[0]
    difference = (ours - expected).abs()
    assert difference.mean() < 0.01 and difference.max() < 0.1


def test_sam2_video_checkpoint_loads_as_image_model(tmp_path):
    generator = _generator(_tiny_sam2(tmp_path / "video", video=True), points_per_side=2)
    assert type(generator.model).__name__ == "Sam2Model" and generator.family.stretch
    records = generator.generate(road_image(60, 80))
    assert all(record["area"] >= 10 for record in records)
