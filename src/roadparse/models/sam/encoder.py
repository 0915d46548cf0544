"""SAM's ViT image encoder attention without the full relative-position bias.

``transformers``' SDPA attention for SAM's image encoder adds the decomposed relative
position terms (one (query, key-row) and one (query, key-column) table per head) into a
dense (batch, heads, N, N) bias before calling ``scaled_dot_product_attention``: for a
global-attention block of ViT-L that is 16 x 4096 x 4096 floats (1 GB) written and read
again, four times per image. :func:`fast_attention_forward` computes the same attention a
block of query rows at a time, so each bias block is a few MB and stays in cache; the
result equals the original to float rounding (tested).

:func:`use_fast_attention` installs it on a loaded ``SamModel``'s vision encoder.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

BIAS_BLOCK_BYTES = 4 << 20
"""Largest relative-position bias block built at once (bytes)."""


def fast_attention_forward(self: Any, hidden_states: torch.Tensor, output_attentions: bool = False) -> tuple[torch.Tensor, None]:
    """Returns (output, None) of a ``SamVisionAttention`` on (B, H, W, C) tokens, bias built block by block."""
    batch, height, width, _ = hidden_states.shape
    heads = self.num_attention_heads
    n = height * width
    qkv = self.qkv(hidden_states).reshape(batch, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)  # (B, heads, N, d)
    if not self.use_rel_pos:
        out = F.scaled_dot_product_attention(query, key, value)
    else:
        dim = query.shape[-1]
        table_h = self.get_rel_pos(height, height, self.rel_pos_h)  # (H, Hk, d)
        table_w = self.get_rel_pos(width, width, self.rel_pos_w)  # (W, Wk, d)
        grid = query.reshape(batch, heads, height, width, dim)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, table_h)  # (B, heads, H, W, Hk)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, table_w)  # (B, heads, H, W, Wk)
        out = torch.empty_like(query)
        # blocks of whole query rows (and of windows when many windows come as a batch)
        row_bytes = heads * width * n * query.element_size()
        rows = max(1, min(height, BIAS_BLOCK_BYTES // row_bytes))
        items = max(1, min(batch, BIAS_BLOCK_BYTES // (row_bytes * height))) if rows == height else 1
        for b0 in range(0, batch, items):
            b1 = min(batch, b0 + items)
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                bias = rel_h[b0:b1, :, r0:r1, :, :, None] + rel_w[b0:b1, :, r0:r1, :, None, :]
                bias = bias.reshape(b1 - b0, heads, (r1 - r0) * width, n)
                out[b0:b1, :, r0 * width : r1 * width] = F.scaled_dot_product_attention(
                    query[b0:b1, :, r0 * width : r1 * width], key[b0:b1], value[b0:b1], attn_mask=bias
                )
    out = out.view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return self.proj(out), None


def use_fast_attention(model: Any) -> int:
    """Installs :func:`fast_attention_forward` on every attention block of a ``SamModel``'s vision
    encoder; returns how many were patched (0 for models without SAM's ViT, e.g. SAM 2)."""
    encoder = getattr(model, "vision_encoder", None)
    patched = 0
    for layer in getattr(encoder, "layers", []):
        attn = getattr(layer, "attn", None)
        if attn is not None and hasattr(attn, "get_rel_pos") and hasattr(attn, "qkv"):
            attn.forward = types.MethodType(fast_attention_forward, attn)
            patched += 1
    return patched
