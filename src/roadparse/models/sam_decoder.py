"""SAM's prompt encoder + mask decoder for many single-point prompts on one image embedding.

``decode_points`` gives the same logits and predicted IoUs as ``SamModel``'s prompt encoder
and mask decoder (multimask output) with far less work per point. ``transformers`` copies
the image embedding once per point and runs every projection over all h*w image tokens
per point; here:

* everything that depends on the image only (the no-mask dense embedding, the first
  layer's image-side keys, values and queries) is computed once and broadcast;
* attention from the ~7 prompt tokens to the image never projects the image tokens:
  the token queries are pulled back through the key projection (``q Wk . k`` =
  ``(q Wk) . k``) and the values are projected after the attention average (softmax
  rows sum to 1), so per point the cost is (heads x tokens) x h*w x C instead of
  h*w x C x C;
* attention from the image to the tokens is computed as one (h*w, C) x (C, heads x
  tokens) product per point, and its output as attention weights x (value x out-projection);
* the upscaling convolutions (kernel 2, stride 2) are per-pixel linear maps, run as
  batched matrix products in channels-last layout, only for the three multimask outputs,
  and skipped for points whose three predicted IoUs are all at or under the caller's
  threshold.

``decode_points_reference`` runs ``SamModel``'s own modules; tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

POINT_CHUNK = 64
"""Points through the two-way transformer together (ViT-B: ~12 MB each): large, so that the many
small token-side operations run once for many points (each costs a thread wake-up on a busy CPU)."""
UPSCALE_CHUNK = 16
"""Points upscaled together (ViT-B: ~40 MB each)."""


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


@dataclass
class _Image:
    """Image-side tensors shared by every point (channels last, N = h*w tokens)."""

    keys: torch.Tensor  # (N, C) image embedding + no-mask embedding
    pe: torch.Tensor  # (N, C) positional embedding
    first_keys: torch.Tensor  # (H, N, dh) layer-0 token->image keys
    first_values: torch.Tensor  # (H, N, dh) layer-0 token->image values
    first_queries: torch.Tensor  # (N, H*dh) layer-0 image->token queries
    side: int  # h (= w) of the embedding


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Returns (..., T, H, dh) from (..., T, H*dh)."""
    return x.unflatten(-1, (heads, -1))


def _image_side(decoder, prompt_encoder, embedding: torch.Tensor, image_pe: torch.Tensor) -> _Image:
    side = embedding.shape[-1]
    keys = (embedding[0] + prompt_encoder.no_mask_embed.weight[0, :, None, None]).flatten(1).T.contiguous()
    pe = image_pe[0].flatten(1).T.contiguous()
    layer = decoder.transformer.layers[0]
    to_image, to_token = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    heads = to_image.num_attention_heads
    keys_pe = keys + pe
    return _Image(
        keys=keys,
        pe=pe,
        first_keys=_split(to_image.k_proj(keys_pe), heads).transpose(0, 1).contiguous(),
        first_values=_split(to_image.v_proj(keys), heads).transpose(0, 1).contiguous(),
        first_queries=to_token.q_proj(keys_pe),
        side=side,
    )


def _token_attention(attn, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Returns (p, T, C): ``SamAttention`` among a point's own tokens (all (p, T, C))."""
    heads = attn.num_attention_heads
    q = _split(attn.q_proj(query), heads).transpose(1, 2)
    k = _split(attn.k_proj(key), heads).transpose(1, 2)
    v = _split(attn.v_proj(value), heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, scale=attn.scaling)
    return attn.out_proj(out.transpose(1, 2).flatten(2))


def _tokens_to_image(attn, query: torch.Tensor, keys_pe: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Returns (p, T, C): token->image ``SamAttention`` with per-point image tokens, never projecting them.

    Args:
        query: (p, T, C) tokens + their positional embedding.
        keys_pe: (p, N, C) image tokens + positional embedding (attention keys before projection).
        keys: (p, N, C) image tokens (values before projection).
    """
    heads = attn.num_attention_heads
    q = _split(attn.q_proj(query), heads) * attn.scaling  # (p, T, H, dh)
    k_weight = attn.k_proj.weight.view(heads, -1, keys.shape[-1])  # (H, dh, C)
    v_weight = attn.v_proj.weight.view(heads, -1, keys.shape[-1])
    # q . (Wk k + bk) = (q Wk) . k + const over the keys: the constant leaves the softmax unchanged.
    pulled = torch.einsum("pthe,hec->phtc", q, k_weight).flatten(1, 2)  # (p, H*T, C)
    weights = torch.bmm(pulled, keys_pe.transpose(1, 2)).softmax(dim=-1)  # (p, H*T, N)
    mixed = torch.bmm(weights, keys).unflatten(1, (heads, -1))  # (p, H, T, C): attention-weighted image tokens
    # softmax rows sum to 1, so projecting the average equals averaging the projections
    out = torch.einsum("phtc,hec->pthe", mixed, v_weight) + attn.v_proj.bias.view(heads, -1)
    return attn.out_proj(out.flatten(2))


def _image_to_tokens(attn, scores: torch.Tensor, tokens: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Returns (p, N, C): ``base`` + image->token attention output.

    Args:
        scores: (p, H*T, N) scaled attention logits of every image token against every prompt token.
        tokens: (p, T, C) prompt tokens (the values before projection).
        base: (N, C) or (p, N, C) residual the output is added to.
    """
    heads = attn.num_attention_heads
    p, _, n = scores.shape
    weights = scores.view(p, heads, -1, n).softmax(dim=2).view(p, -1, n)  # softmax over each head's T tokens
    values = _split(attn.v_proj(tokens), heads)  # (p, T, H, dh)
    out_weight = attn.out_proj.weight.view(attn.out_proj.weight.shape[0], heads, -1)  # (C, H, dh)
    value_out = torch.einsum("pthe,che->phtc", values, out_weight).flatten(1, 2)  # (p, H*T, C)
    # every head's weights sum to 1 at each image token: the output bias is spread over the heads' rows
    value_out = value_out + attn.out_proj.bias / heads
    if base.dim() == 3:
        return base.baddbmm_(weights.transpose(1, 2), value_out)
    return torch.baddbmm(base, weights.transpose(1, 2), value_out)


def _transformer(decoder, image: _Image, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns the (p, T, C) output tokens and (p, N, C) updated image tokens of the two-way transformer."""
    transformer = decoder.transformer
    point_pe = tokens
    queries, keys, keys_pe = tokens, None, None
    for index, layer in enumerate(transformer.layers):
        if index == 0:  # skip_first_layer_pe: no residual, no positional embedding
            queries = layer.layer_norm1(_token_attention(layer.self_attn, queries, queries, queries))
            attn = layer.cross_attn_token_to_image
            heads = attn.num_attention_heads
            q = _split(attn.q_proj(queries + point_pe), heads)  # (p, T, H, dh)
            p, n_tokens = q.shape[:2]
            q = q.permute(2, 0, 1, 3).flatten(1, 2)  # (H, p*T, dh)
            out = F.scaled_dot_product_attention(q, image.first_keys, image.first_values, scale=attn.scaling)
            out = out.unflatten(1, (p, n_tokens)).permute(1, 2, 0, 3).flatten(2)
            queries = layer.layer_norm2(queries + attn.out_proj(out))
        else:
            query = queries + point_pe
            queries = layer.layer_norm1(queries + _token_attention(layer.self_attn, query, query, queries))
            out = _tokens_to_image(layer.cross_attn_token_to_image, queries + point_pe, keys_pe, keys)
            queries = layer.layer_norm2(queries + out)
        queries = layer.layer_norm3(queries + layer.mlp(queries))

        attn = layer.cross_attn_image_to_token
        heads = attn.num_attention_heads
        token_keys = _split(attn.k_proj(queries + point_pe), heads) * attn.scaling  # (p, T, H, dh)
        if index == 0:  # image queries are shared: one (p*H*T, d) x (d, N) product, heads kept apart by zeros
            p, n_tokens, _, dh = token_keys.shape
            block = token_keys.new_zeros(p, heads, n_tokens, heads, dh)
            block.diagonal(dim1=1, dim2=3).copy_(token_keys.permute(0, 1, 3, 2))
            scores = (block.flatten(0, 2).flatten(1) @ image.first_queries.T).view(p, heads * n_tokens, -1)
            keys = _image_to_tokens(attn, scores, queries, image.keys)
        else:  # (k + pe) Wq^T + bq against each token key, as one (N, C) x (C, H*T) product per point
            q_weight = attn.q_proj.weight.view(heads, -1, keys.shape[-1])  # (H, dh, C)
            pulled = torch.einsum("hec,pthe->phtc", q_weight, token_keys).flatten(1, 2)  # (p, H*T, C)
            bias = torch.einsum("he,pthe->pht", attn.q_proj.bias.view(heads, -1), token_keys).flatten(1)
            scores = torch.baddbmm(bias[:, :, None], pulled, keys_pe.transpose(1, 2))
            keys = _image_to_tokens(attn, scores, queries, keys)
        keys = layer.layer_norm4(keys)
        keys_pe = keys + image.pe

    out = _tokens_to_image(transformer.final_attn_token_to_image, queries + point_pe, keys_pe, keys)
    return transformer.layer_norm_final_attn(queries + out), keys


def _upscale_masks(decoder, keys: torch.Tensor, mask_tokens: torch.Tensor, side: int) -> torch.Tensor:
    """Returns (p, M, side, 2, 2, side, 2, 2) mask logits (a view of (p, M, 4*side, 4*side)) from (p, N, C)
    image tokens and (p, M, C) mask tokens.

    ``ConvTranspose2d`` with kernel 2 and stride 2 maps each input pixel to a 2x2 block on its
    own, so both upscaling steps are per-pixel matrix products in channels-last layout.
    """
    conv1, conv2, norm = decoder.upscale_conv1, decoder.upscale_conv2, decoder.upscale_layer_norm
    mid, out_ch = conv1.out_channels, conv2.out_channels
    w1 = conv1.weight.permute(0, 2, 3, 1).flatten(1)  # (C, 2*2*mid), sub-pixel major
    w2 = conv2.weight.permute(0, 2, 3, 1).flatten(1)  # (mid, 2*2*out)
    p, n = keys.shape[:2]
    hidden = torch.addmm(conv1.bias.repeat(4), keys.flatten(0, 1), w1).view(p, n * 4, mid)
    hidden = F.gelu(F.layer_norm(hidden, (mid,), norm.weight, norm.bias, norm.eps))
    hidden = torch.addmm(conv2.bias.repeat(4), hidden.flatten(0, 1), w2).view(p, n * 16, out_ch)
    hidden = F.gelu(hidden)
    hyper = torch.stack(
        [mlp(mask_tokens[:, i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps[1:])], dim=1
    )  # (p, M, out)
    logits = torch.bmm(hyper, hidden.transpose(1, 2))  # (p, M, N*16): pixel order y, x, dy1, dx1, dy2, dx2
    # (y, dy1, dy2) is the output row and (x, dx1, dx2) the column
    return logits.view(p, -1, side, side, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)


def decode_points_fast(
    model: object,
    embedding: torch.Tensor,
    image_pe: torch.Tensor,
    points: torch.Tensor,
    iou_thresh: float = 0.0,
    chunk: int = POINT_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ((P, 3, 256, 256) low-res logits, (P, 3) predicted IoU), equal to ``decode_points_reference``.

    Logits of points whose three IoUs are all at or under ``iou_thresh`` are left as zeros
    when ``iou_thresh`` > 0 (callers drop them anyway).

    Args:
        model: a ``transformers.SamModel``.
        embedding: (1, C, h, w) image embedding.
        image_pe: (1, C, h, w) image-wide positional embedding.
        points: (P, 2) float32 (x, y) in the model's input pixel frame.
        iou_thresh: the caller's predicted-IoU threshold.
        chunk: points whose per-point tensors are held at once.
    """
    decoder, prompt_encoder = model.mask_decoder, model.prompt_encoder
    image = _image_side(decoder, prompt_encoder, embedding, image_pe)
    labels = torch.ones(1, points.shape[0], 1, dtype=torch.long, device=points.device)
    sparse, _ = prompt_encoder(input_points=points[None, :, None, :], input_labels=labels, input_boxes=None, input_masks=None)
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
    n_masks = decoder.num_mask_tokens - 1
    side = image.side
    logits = torch.zeros(points.shape[0], n_masks, 4 * side, 4 * side, device=points.device)
    ious = []
    for start in range(0, points.shape[0], chunk):
        prompt = sparse[0, start : start + chunk]
        tokens = torch.cat([output_tokens.expand(prompt.shape[0], -1, -1), prompt], dim=1)
        queries, keys = _transformer(decoder, image, tokens)
        iou = decoder.iou_prediction_head(queries[:, 0])[:, 1:]
        ious.append(iou)
        keep = (iou > iou_thresh).any(1) if iou_thresh > 0 else torch.ones(len(iou), dtype=torch.bool, device=iou.device)
        rows = keep.nonzero()[:, 0]
        for sub in range(0, len(rows), UPSCALE_CHUNK):
            part = rows[sub : sub + UPSCALE_CHUNK]
            first = int(part[0])
            if int(part[-1]) - first + 1 == len(part):  # consecutive rows: views instead of gathered copies
                part = slice(first, first + len(part))
            upscaled = _upscale_masks(decoder, keys[part], queries[part, 2 : 2 + n_masks], side)
            target = logits[start : start + len(iou)].view(len(iou), n_masks, side, 2, 2, side, 2, 2)
            target[part] = upscaled
    return logits, torch.cat(ious)


def decode_points(
    model: object,
    embedding: torch.Tensor,
    image_pe: torch.Tensor,
    points: torch.Tensor,
    iou_thresh: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ((P, 3, 256, 256) low-res logits, (P, 3) predicted IoU) for single-point prompts.

    The fast path (:func:`decode_points_fast`); see its docstring.
    """
    return decode_points_fast(model, embedding, image_pe, points, iou_thresh=iou_thresh)
