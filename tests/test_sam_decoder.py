"""The fast point decoder equals ``transformers``' SAM prompt encoder + mask decoder."""

from __future__ import annotations

import pytest
import torch
from tests.sam_tiny import build_official_sam, hf_twin

from roadparse.models.sam.decoder import decode_points, decode_points_fast, decode_points_reference


def _perturbed(model, seed: int, scale: float):
    """Returns ``model`` with noise added to its decoder and prompt encoder, so no path is near zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (model.mask_decoder, model.prompt_encoder):
            for param in module.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * scale)
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    return _perturbed(hf_twin(build_official_sam(seed=1)), seed=2, scale=0.1)


@pytest.fixture(scope="module")
def vit_b_decoder():
    """A ``SamModel`` with the full-size (ViT-B/L/H) prompt encoder and mask decoder; a 1-block image encoder."""
    from transformers import SamConfig, SamModel

    torch.manual_seed(0)
    config = SamConfig()
    config.vision_config.num_hidden_layers = 1
    config.vision_config.global_attn_indexes = [0]
    return _perturbed(SamModel(config), seed=3, scale=0.03)


def _inputs(model, n_points: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    side = model.config.prompt_encoder_config.image_embedding_size
    channels = model.config.mask_decoder_config.hidden_size
    size = model.config.prompt_encoder_config.image_size
    embedding = torch.randn(1, channels, side, side, generator=generator)
    points = torch.rand(n_points, 2, generator=generator) * size
    points[0] = torch.tensor([0.0, 0.0])  # corners of the input frame
    points[1] = torch.tensor([size - 1.0, size - 1.0])
    with torch.inference_mode():
        image_pe = model.get_image_wide_positional_embeddings()
    return embedding, image_pe, points


@pytest.mark.parametrize("model_name", ["tiny", "vit_b_decoder"])
def test_fast_equals_reference(request, model_name):
    model = request.getfixturevalue(model_name)
    embedding, image_pe, points = _inputs(model, n_points=5, seed=4)
    with torch.inference_mode():
        logits_ref, iou_ref = decode_points_reference(model, embedding, image_pe, points)
        logits, iou = decode_points_fast(model, embedding, image_pe, points, chunk=2)  # chunks of 2, 2, 1
    side = 4 * embedding.shape[-1]
    assert logits.shape == logits_ref.shape == (5, 3, side, side)
    assert iou.shape == iou_ref.shape == (5, 3)
    assert logits_ref.std() > 0.05 and iou_ref.std() > 1e-3, "test model too degenerate"
    assert (logits - logits_ref).abs().max() <= 1e-4
    assert (iou - iou_ref).abs().max() <= 1e-4


@pytest.mark.parametrize("model_name", ["tiny", "vit_b_decoder"])
def test_bfloat16_upscaling_stays_close(request, model_name):
    model = request.getfixturevalue(model_name)
    embedding, image_pe, points = _inputs(model, n_points=3, seed=5)
    with torch.inference_mode():
        logits_ref, iou_ref = decode_points_reference(model, embedding, image_pe, points)
        logits, iou = decode_points_fast(model, embedding, image_pe, points, upscale_dtype=torch.bfloat16)
    assert logits.dtype == torch.float32 and (iou - iou_ref).abs().max() <= 1e-4  # the IoU head runs before upscaling
    scale = logits_ref.abs().max()
    assert (logits - logits_ref).abs().max() <= 0.03 * scale
    assert ((logits > 0) == (logits_ref > 0)).float().mean() > 0.99


def test_iou_threshold_skips_only_rejected_points(tiny):
    embedding, image_pe, points = _inputs(tiny, n_points=12, seed=5)
    with torch.inference_mode():
        logits_ref, iou_ref = decode_points_reference(tiny, embedding, image_pe, points)
        # halfway between the two middle points' best IoUs: no point sits on the threshold, where the
        # decoders' float differences (<= 1e-4) would decide whether it is kept
        best = iou_ref.max(1).values.sort().values
        middle = len(best) // 2
        assert best[middle] - best[middle - 1] > 1e-3, "test points too close to split"
        thresh = float(best[middle - 1] + best[middle]) / 2
        logits, iou = decode_points(tiny, embedding, image_pe, points, iou_thresh=thresh)
    kept = (iou_ref > thresh).any(1)
    assert 0 < kept.sum() < len(kept)
    torch.testing.assert_close(iou, iou_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(logits[kept], logits_ref[kept], atol=1e-4, rtol=0)
    assert not logits[~kept].any()
