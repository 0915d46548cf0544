"""The block-wise relative-position attention of SAM's image encoder equals transformers' own."""

from __future__ import annotations

import pytest
import torch

from roadparse.models.sam import encoder as sam_encoder
from roadparse.models.sam.encoder import use_fast_attention


def _vision_config(side: int) -> dict:
    # windows of 3 on a 6x6 token grid (2x2 windows), one global block; enough heads to block over
    return {
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": side, "patch_size": 16,
        "output_channels": 16, "window_size": 3, "global_attn_indexes": [1], "num_pos_feats": 8, "mlp_dim": 64,
    }


def _model(kind: str):
    from transformers import SamConfig, SamHQConfig, SamHQModel, SamModel

    torch.manual_seed(0)
    vision = _vision_config(96)
    prompt = {"hidden_size": 16, "image_size": 96, "patch_size": 16}
    decoder = {"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "iou_head_hidden_dim": 16}
    if kind == "sam":
        model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder))
    else:
        model = SamHQModel(SamHQConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config={**decoder, "vit_dim": 32}))
    with torch.no_grad():  # default init gives ~1e-8 outputs and zero tables, which would hide a wrong bias
        for param in model.vision_encoder.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.2)
        for layer in model.vision_encoder.layers:
            layer.attn.rel_pos_h.normal_(0, 1.0)
            layer.attn.rel_pos_w.normal_(0, 1.0)
    return model.eval()


@pytest.mark.parametrize("kind", ["sam", "sam_hq"])
@pytest.mark.parametrize("block_bytes", [1, 1 << 30])  # one query row per block / everything in one block
def test_blockwise_attention_equals_transformers(kind, block_bytes, monkeypatch):
    model = _model(kind)
    pixels = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = model.vision_encoder(pixels, output_hidden_states=True)
        monkeypatch.setattr(sam_encoder, "BIAS_BLOCK_BYTES", block_bytes)
        assert use_fast_attention(model) == 2
        fast = model.vision_encoder(pixels, output_hidden_states=True)
    assert reference.hidden_states[-1].abs().max() > 0.1
    for ref, out in zip(reference.hidden_states, fast.hidden_states, strict=True):
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.last_hidden_state, reference.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_models_without_sam_vit_are_left_alone():
    assert use_fast_attention(torch.nn.Linear(2, 2)) == 0


def test_retain_freed_memory_is_harmless():
    from roadparse.models import retain_freed_memory

    assert isinstance(retain_freed_memory(), bool)
    assert torch.ones(1 << 20).sum() == 1 << 20  # allocation still works afterwards


def test_retain_freed_memory_keeps_large_blocks_mapped():
    """Freed 64 MB blocks are reused without page faults (they were not: a trim threshold of 4 GB
    passed as a C int wrapped to 0, and glibc gave the top of the heap back at every free)."""
    import resource

    from roadparse.models import retain_freed_memory

    if not retain_freed_memory():
        pytest.skip("not glibc")
    size = 64 << 20

    def faults_of_reuse() -> int:
        first, second = torch.empty(size, dtype=torch.uint8), torch.empty(size, dtype=torch.uint8)
        first.fill_(1)
        second.fill_(1)
        del first, second
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        again = torch.empty(size, dtype=torch.uint8)
        again.fill_(1)
        del again
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_reuse()  # the heap settles
    assert faults_of_reuse() < size // 4096 // 10  # 16384 pages when mapped afresh
