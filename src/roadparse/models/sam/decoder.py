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
* the image tokens change per point only by low-rank updates (attention weights x value
  rows, then a layer norm): the first upscaling convolution is computed from those factors
  and the shared image tokens (:func:`_first_upscaling`), 2.2x fewer multiply-adds than
  convolving each point's tokens;
* the upscaling convolutions (kernel 2, stride 2) are per-pixel linear maps, run as
  batched matrix products in channels-last layout, only for the three multimask outputs,
  and skipped for points whose three predicted IoUs are all at or under the caller's
  threshold;
* large layer norms run in place (``F.layer_norm`` is 2-3x slower on CPU), and the large
  scratch tensors are reused across point chunks.

``decode_points_reference`` runs ``SamModel``'s own modules; tests hold the two equal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F

POINT_CHUNK = 32
"""Points through the two-way transformer together (ViT-B: ~12 MB each): large, so that the many
small token-side operations run once for many points (each costs a thread wake-up on a busy CPU),
not larger: 64 decodes no faster once warm, and the first tile of a process spends seconds
faulting in the larger buffers (measured, 256 points: 64: 5.5-6.2 s cold, 3.6-3.8 s warm; 32:
4.3-4.6 s cold, 3.5-3.6 s warm; 16: 4.3 s cold, 4.0 s warm)."""
UPSCALE_CHUNK = 16
"""Points upscaled together (ViT-B: ~40 MB each)."""


def decode_points_reference(
    model: Any, embedding: torch.Tensor, image_pe: torch.Tensor, points: torch.Tensor
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


class _Buffers:
    """Large scratch tensors reused across the chunks of one call.

    A fresh tensor of hundreds of MB is new memory from the OS each time, and touching its
    pages for the first time costs about as much as the arithmetic written into it.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Returns the buffer ``name`` with ``shape`` (contents undefined), reallocated if its shape changed."""
        buffer = self._tensors.get(name)
        if buffer is None or buffer.shape != torch.Size(shape) or buffer.dtype != like.dtype:
            buffer = like.new_empty(shape)
            self._tensors[name] = buffer
        return buffer


_gelu_out = cast(Callable[..., torch.Tensor], torch._C._nn.gelu)
"""GELU into a given ``out`` tensor (cast: torch's stubs omit the ``out=`` overload aten's gelu has)."""


def _layer_norm_(x: torch.Tensor, norm: torch.nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``x`` (..., C) overwritten with ``norm(x)``, and the (..., 1) mean and inverse standard
    deviation it was normalised with.

    The same normalisation as ``F.layer_norm`` (biased variance over the last dimension)
    in five in-place passes: on large CPU tensors ``F.layer_norm`` takes 2-3x as long
    (measured on (64, 4096, 256): 91 ms vs 36 ms, max difference 3e-6).
    """
    mean = x.mean(-1, keepdim=True)
    centred = x.sub_(mean)
    variance = torch.linalg.vector_norm(centred, dim=-1, keepdim=True).square_().div_(x.shape[-1])
    inv_std = variance.add_(norm.eps).rsqrt_()
    centred.mul_(inv_std)
    return torch.addcmul(norm.bias, centred, norm.weight, out=centred), mean, inv_std


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Returns (..., T, H, dh) from (..., T, H*dh)."""
    return x.unflatten(-1, (heads, -1))


def _image_side(decoder, prompt_encoder, embedding: torch.Tensor, image_pe: torch.Tensor) -> _Image:
    """Returns the tensors shared by every point of a (1, C, h, w) embedding and its positional embedding."""
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


def _one_thread(fn):
    """Returns ``fn`` run on a single thread.

    For the small token-side operations (~7 tokens per point): with several threads each
    costs a thread barrier, milliseconds on a busy CPU, much more than the work itself.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        if threads == 1:
            return fn(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


@_one_thread
def _self_attention(layer, queries: torch.Tensor, point_pe: torch.Tensor, first: bool) -> torch.Tensor:
    """Returns the (p, T, C) tokens after a layer's self-attention block (the first layer: no PE, no residual)."""
    attn = layer.self_attn
    heads = attn.num_attention_heads
    query = queries if first else queries + point_pe
    q = _split(attn.q_proj(query), heads).transpose(1, 2)
    k = _split(attn.k_proj(query), heads).transpose(1, 2)
    v = _split(attn.v_proj(queries), heads).transpose(1, 2)
    out = attn.out_proj(F.scaled_dot_product_attention(q, k, v, scale=attn.scaling).transpose(1, 2).flatten(2))
    return layer.layer_norm1(out if first else queries + out)


@_one_thread
def _after_cross_attention(layer, queries: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Returns the (p, T, C) tokens after the token->image residual, its norm and the MLP block."""
    queries = layer.layer_norm2(queries + out)
    return layer.layer_norm3(queries + layer.mlp(queries))


@_one_thread
def _pulled_queries(attn, query: torch.Tensor, channels: int) -> torch.Tensor:
    """Returns (p, H*T, C): scaled token queries pulled back through the key projection (q Wk).

    q . (Wk k + bk) = (q Wk) . k + const over the keys: the constant leaves the softmax unchanged.
    """
    heads = attn.num_attention_heads
    q = _split(attn.q_proj(query), heads) * attn.scaling  # (p, T, H, dh)
    return torch.einsum("pthe,hec->phtc", q, attn.k_proj.weight.view(heads, -1, channels)).flatten(1, 2)


@_one_thread
def _projected_mixture(attn, mixed: torch.Tensor) -> torch.Tensor:
    """Returns (p, T, C): value and output projections of (p, H, T, C) attention-averaged image tokens.

    Softmax rows sum to 1, so projecting the average equals averaging the projections.
    """
    heads = attn.num_attention_heads
    v_weight = attn.v_proj.weight.view(heads, -1, mixed.shape[-1])  # (H, dh, C)
    out = torch.einsum("phtc,hec->pthe", mixed, v_weight) + attn.v_proj.bias.view(heads, -1)
    return attn.out_proj(out.flatten(2))


def _tokens_to_image(attn, query: torch.Tensor, keys_pe: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Returns (p, T, C): token->image ``SamAttention`` with per-point image tokens, never projecting them.

    Args:
        query: (p, T, C) tokens + their positional embedding.
        keys_pe: (p, N, C) image tokens + positional embedding (attention keys before projection).
        keys: (p, N, C) image tokens (values before projection).
    """
    pulled = _pulled_queries(attn, query, keys.shape[-1])
    weights = torch.bmm(pulled, keys_pe.transpose(1, 2)).softmax(dim=-1)  # (p, H*T, N)
    mixed = torch.bmm(weights, keys).unflatten(1, (attn.num_attention_heads, -1))  # (p, H, T, C)
    return _projected_mixture(attn, mixed)


@_one_thread
def _token_keys(attn, queries: torch.Tensor, point_pe: torch.Tensor) -> torch.Tensor:
    """Returns (p, T, H, dh) scaled keys of the tokens for image->token attention."""
    return _split(attn.k_proj(queries + point_pe), attn.num_attention_heads) * attn.scaling


@_one_thread
def _block_diagonal(token_keys: torch.Tensor) -> torch.Tensor:
    """Returns (p*H*T, H*dh) token keys with each head's row zero outside that head's channels."""
    p, n_tokens, heads, dh = token_keys.shape
    block = token_keys.new_zeros(p, heads, n_tokens, heads, dh)
    block.diagonal(dim1=1, dim2=3).copy_(token_keys.permute(0, 1, 3, 2))
    return block.flatten(0, 2).flatten(1)


@_one_thread
def _pulled_image_queries(attn, token_keys: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (p, H*T, C) token keys pulled back through the image query projection and (p, H*T, 1) biases."""
    heads = attn.num_attention_heads
    q_weight = attn.q_proj.weight.view(heads, -1, channels)  # (H, dh, C)
    pulled = torch.einsum("hec,pthe->phtc", q_weight, token_keys).flatten(1, 2)
    bias = torch.einsum("he,pthe->pht", attn.q_proj.bias.view(heads, -1), token_keys).flatten(1)
    return pulled, bias[:, :, None]


@_one_thread
def _value_rows(attn, tokens: torch.Tensor) -> torch.Tensor:
    """Returns (p, H*T, C): each token's value through the output projection, one row per head and token.

    Every head's attention weights sum to 1 at each image token, so the output bias is
    spread over the heads' rows.
    """
    heads = attn.num_attention_heads
    values = _split(attn.v_proj(tokens), heads)  # (p, T, H, dh)
    out_weight = attn.out_proj.weight.view(attn.out_proj.weight.shape[0], heads, -1)  # (C, H, dh)
    rows = torch.einsum("pthe,che->phtc", values, out_weight).flatten(1, 2)
    return rows + attn.out_proj.bias / heads


@dataclass
class _Update:
    """One layer's update of the image tokens: ``keys = norm(previous + weights^T @ rows)``."""

    weights: torch.Tensor  # (p, H*T, N) attention weights (each head's column sums to 1)
    rows: torch.Tensor  # (p, H*T, C) value rows through the output projection
    mean: torch.Tensor  # (p, N, 1) of the normalised sum
    inv_std: torch.Tensor  # (p, N, 1)
    norm: torch.nn.LayerNorm

    def select(self, part: slice | torch.Tensor) -> _Update:
        """Returns the update of the points ``part``."""
        return _Update(self.weights[part], self.rows[part], self.mean[part], self.inv_std[part], self.norm)


def _image_to_tokens(
    attn, scores: torch.Tensor, tokens: torch.Tensor, base: torch.Tensor, out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``out`` (p, N, C) = ``base`` + image->token attention output, and the output's factors:
    (p, H*T, N) attention weights and (p, H*T, C) value rows (output = weights^T @ rows).

    Args:
        scores: (p, H*T, N) scaled attention logits of every image token against every prompt token.
        tokens: (p, T, C) prompt tokens (the values before projection).
        base: (N, C) or (p, N, C) residual the output is added to; may be ``out`` itself.
        out: (p, N, C) tensor written (a reused buffer: a fresh one costs page faults and
            made this product 3x slower).
    """
    heads = attn.num_attention_heads
    p, _, n = scores.shape
    weights = scores.view(p, heads, -1, n).softmax(dim=2).view(p, -1, n)  # softmax over each head's T tokens
    value_rows = _value_rows(attn, tokens)
    if base is not out:
        out.copy_(base.expand_as(out))
    return out.baddbmm_(weights.transpose(1, 2), value_rows), weights, value_rows


@_one_thread
def _first_token_queries(attn, query: torch.Tensor) -> torch.Tensor:
    """Returns (H, p*T, dh) token queries of the first layer's token->image attention."""
    q = _split(attn.q_proj(query), attn.num_attention_heads)  # (p, T, H, dh)
    return q.permute(2, 0, 1, 3).flatten(1, 2)


@_one_thread
def _first_output(attn, out: torch.Tensor, p: int) -> torch.Tensor:
    """Returns (p, T, C) from (H, p*T, dh) attention output of the first layer."""
    return attn.out_proj(out.unflatten(1, (p, -1)).permute(1, 2, 0, 3).flatten(2))


def _transformer(
    decoder, image: _Image, tokens: torch.Tensor, buffers: _Buffers
) -> tuple[torch.Tensor, list[_Update]]:
    """Returns the two-way transformer's (p, 1 + M, C) output IoU token and multimask tokens and each
    layer's update of the (p, N, C) image tokens (the upscaling needs only those)."""
    transformer = decoder.transformer
    point_pe = tokens
    queries = tokens
    keys: torch.Tensor | None = None  # (p, N, C) image tokens, from layer 0 on
    keys_pe: torch.Tensor | None = None
    updates = []
    channels = tokens.shape[-1]
    for index, layer in enumerate(transformer.layers):
        queries = _self_attention(layer, queries, point_pe, first=index == 0)
        attn = layer.cross_attn_token_to_image
        if index == 0:  # the image side is shared by every point: keys and values projected once
            q = _first_token_queries(attn, queries + point_pe)
            out = F.scaled_dot_product_attention(q, image.first_keys, image.first_values, scale=attn.scaling)
            out = _first_output(attn, out, len(queries))
        else:
            assert keys is not None and keys_pe is not None  # set by layer 0
            out = _tokens_to_image(attn, queries + point_pe, keys_pe, keys)
        queries = _after_cross_attention(layer, queries, out)

        attn = layer.cross_attn_image_to_token
        token_keys = _token_keys(attn, queries, point_pe)
        if index == 0:  # image queries are shared: one (p*H*T, d) x (d, N) product, heads kept apart by zeros
            scores = (_block_diagonal(token_keys) @ image.first_queries.T).view(len(queries), -1, len(image.keys))
            out = buffers.get("keys", (len(queries), *image.keys.shape), image.keys)
            keys, weights, rows = _image_to_tokens(attn, scores, queries, image.keys, out)
        else:  # (k + pe) Wq^T + bq against each token key, as one (N, C) x (C, H*T) product per point
            assert keys is not None and keys_pe is not None  # set by layer 0
            pulled, bias = _pulled_image_queries(attn, token_keys, channels)
            scores = torch.baddbmm(bias, pulled, keys_pe.transpose(1, 2))
            keys, weights, rows = _image_to_tokens(attn, scores, queries, keys, keys)
        keys, mean, inv_std = _layer_norm_(keys, layer.layer_norm4)
        updates.append(_Update(weights, rows, mean, inv_std, layer.layer_norm4))
        keys_pe = torch.add(keys, image.pe, out=buffers.get("keys_pe", keys.shape, keys))

    # Only the IoU token and the multimask tokens are read after the final attention, in which
    # every token attends on its own: the others are dropped.
    used = [0, *range(2, decoder.num_mask_tokens + 1)]
    queries, point_pe = queries[:, used], point_pe[:, used]
    assert keys is not None and keys_pe is not None, "the two-way transformer has no layers"
    out = _tokens_to_image(transformer.final_attn_token_to_image, queries + point_pe, keys_pe, keys)
    return _final_norm(transformer, queries, out), updates


@_one_thread
def _final_norm(transformer, queries: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return transformer.layer_norm_final_attn(queries + out)


@_one_thread
def _hypernetworks(decoder, mask_tokens: torch.Tensor) -> torch.Tensor:
    """Returns (p, M, out) per-mask weights over the upscaled channels from (p, M, C) multimask tokens."""
    mlps = decoder.output_hypernetworks_mlps[1:]
    return torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(mlps)], dim=1)


@_one_thread
def _predicted_iou(decoder, queries: torch.Tensor) -> torch.Tensor:
    """Returns (p, M) multimask predicted IoUs from the (p, 1 + M, C) output tokens."""
    return decoder.iou_prediction_head(queries[:, 0])[:, 1:]


@_one_thread
def _point_tokens(model, points: torch.Tensor) -> torch.Tensor:
    """Returns (P, T, C) decoder input tokens (IoU token, mask tokens, point, padding point) of (P, 2) points."""
    decoder, prompt_encoder = model.mask_decoder, model.prompt_encoder
    labels = torch.ones(1, points.shape[0], 1, dtype=torch.long, device=points.device)
    sparse, _ = prompt_encoder(input_points=points[None, :, None, :], input_labels=labels, input_boxes=None, input_masks=None)
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
    return torch.cat([output_tokens.expand(points.shape[0], -1, -1), sparse[0]], dim=1)


def _conv1_weight(decoder) -> torch.Tensor:
    """Returns the first upscaling ``ConvTranspose2d`` (kernel 2, stride 2) as a (C, 2*2*mid) per-pixel
    matrix, columns sub-pixel major."""
    return decoder.upscale_conv1.weight.permute(0, 2, 3, 1).flatten(1)


def _first_upscaling(
    decoder, shared: torch.Tensor, updates: list[_Update], buffers: _Buffers
) -> torch.Tensor:
    """Returns (p, N, 2*2*mid): the first upscaling convolution of the final image tokens, from the
    layers' low-rank updates instead of the (p, N, C) tokens themselves.

    Each layer sets ``keys_i = r_i (keys_{i-1} + W_i^T R_i - mu_i) g_i + b_i`` (``r``, ``mu``: per-row
    layer-norm scale and mean; ``W``: (H*T, N) attention weights; ``R``: (H*T, C) value rows;
    ``keys_{-1}``: the image tokens K shared by every point). Unrolled, the convolution
    ``keys_L M`` is ``c_0 (K G_0 M)`` plus a product of (N, ~2*H*T) per-point row factors with
    (~2*H*T, 2*2*mid) small matrices, ``c_i`` the product of the ``r`` of layers i.., ``G_i`` the
    product of their ``g``: 2 x 56 instead of 256 inner products per output (2.2x fewer
    multiply-adds). Not bit-identical to convolving the tokens: differs by float rounding.

    Args:
        shared: (N, 2*2*mid) = K G_0 M, the image's part (see :func:`_shared_upscaling`).
    """
    weight = _conv1_weight(decoder)
    scaled = [weight]  # scaled[k] = G_{L-k} M: M's rows scaled by the gains of the last k layers
    for update in reversed(updates):
        scaled.append(update.norm.weight[:, None] * scaled[-1])
    scaled.reverse()  # scaled[i] = G_i M, scaled[L] = M
    left, right = [], []
    later = None  # d_i: product of the r of the layers after i (None: 1)
    for i in reversed(range(len(updates))):
        update = updates[i]
        inv_std = update.inv_std[..., 0]  # (p, N)
        if later is not None:  # the layer's bias, scaled by the later layers' norms (the last one's is a constant)
            left.append(later[:, None])
            right.append((update.norm.bias @ scaled[i + 1]).expand(len(inv_std), 1, -1))
        factor = inv_std if later is None else inv_std * later  # c_i
        left.append(update.weights * factor[:, None])
        right.append(torch.bmm(update.rows, scaled[i].expand(len(inv_std), -1, -1)))
        left.append((-factor * update.mean[..., 0])[:, None])
        right.append(scaled[i].sum(0).expand(len(inv_std), 1, -1))
        later = factor
    constant = decoder.upscale_conv1.bias.repeat(4) + updates[-1].norm.bias @ weight
    assert later is not None, "the two-way transformer has no layers"
    out = buffers.get("conv1", (len(later), *shared.shape), shared)
    torch.addcmul(constant, shared, later[..., None], out=out)
    return out.baddbmm_(torch.cat(left, 1).transpose(1, 2), torch.cat(right, 1))


def _shared_upscaling(decoder, image: _Image) -> torch.Tensor:
    """Returns (N, 2*2*mid) = K G_0 M: the image tokens through every layer's norm gain and the
    first upscaling convolution (see :func:`_first_upscaling`)."""
    gain = torch.ones_like(decoder.transformer.layers[0].layer_norm4.weight)
    for layer in decoder.transformer.layers:
        gain = gain * layer.layer_norm4.weight
    return image.keys @ (gain[:, None] * _conv1_weight(decoder))


def _upscale_masks(
    decoder, first: torch.Tensor, mask_tokens: torch.Tensor, side: int, buffers: _Buffers,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Returns (p, M, side, 2, 2, side, 2, 2) mask logits (a view of (p, M, 4*side, 4*side)) from the
    (p, N, 2*2*mid) first upscaling convolution (:func:`_first_upscaling`) and (p, M, C) mask tokens,
    computed in ``dtype``.

    ``ConvTranspose2d`` with kernel 2 and stride 2 maps each input pixel to a 2x2 block on its
    own, so both upscaling steps are per-pixel matrix products in channels-last layout.
    """
    conv2, norm = decoder.upscale_conv2, decoder.upscale_layer_norm
    mid, out_ch = norm.normalized_shape[0], conv2.out_channels
    w2 = conv2.weight.permute(0, 2, 3, 1).flatten(1).to(dtype)  # (mid, 2*2*out)
    p, n = first.shape[:2]
    hidden = _layer_norm_(first.view(p, n * 4, mid), norm)[0].to(dtype)  # in float32, in place
    hidden = _gelu_out(hidden, out=buffers.get("gelu1", hidden.shape, hidden))
    upscaled = buffers.get("conv2", (p * n * 4, 4 * out_ch), hidden)
    torch.addmm(conv2.bias.repeat(4).to(dtype), hidden.flatten(0, 1), w2, out=upscaled)
    upscaled = upscaled.view(p, n * 16, out_ch)
    hidden = _gelu_out(upscaled, out=buffers.get("gelu2", upscaled.shape, upscaled))
    hyper = _hypernetworks(decoder, mask_tokens).to(dtype)  # (p, M, out)
    logits = torch.bmm(hyper, hidden.transpose(1, 2))  # (p, M, N*16): pixel order y, x, dy1, dx1, dy2, dx2
    # (y, dy1, dy2) is the output row and (x, dx1, dx2) the column
    return logits.view(p, -1, side, side, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)


def decode_points_fast(
    model: Any,
    embedding: torch.Tensor,
    image_pe: torch.Tensor,
    points: torch.Tensor,
    iou_thresh: float = 0.0,
    chunk: int = POINT_CHUNK,
    upscale_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ((P, 3, 256, 256) low-res logits, (P, 3) predicted IoU), equal to ``decode_points_reference``.

    Logits of points whose three IoUs are all at or under ``iou_thresh`` are left as zeros
    when ``iou_thresh`` > 0 (callers drop them anyway). With ``upscale_dtype`` bfloat16 the
    upscaling network after its first convolution and layer norm runs in bfloat16: its
    matrix products about twice as fast on CPUs with AVX512-BF16/AMX and on GPUs, and no
    longer equal: logits differ by about 1 % of their scale.

    Args:
        model: a ``transformers.SamModel``.
        embedding: (1, C, h, w) image embedding.
        image_pe: (1, C, h, w) image-wide positional embedding.
        points: (P, 2) float32 (x, y) in the model's input pixel frame.
        iou_thresh: the caller's predicted-IoU threshold.
        chunk: points whose per-point tensors are held at once.
    """
    decoder = model.mask_decoder
    image = _image_side(decoder, model.prompt_encoder, embedding, image_pe)
    all_tokens = _point_tokens(model, points)
    n_masks = decoder.num_mask_tokens - 1
    side = image.side
    logits = torch.zeros(points.shape[0], n_masks, 4 * side, 4 * side, device=points.device)
    ious, buffers, shared = [], _Buffers(), _shared_upscaling(decoder, image)
    for start in range(0, points.shape[0], chunk):
        queries, updates = _transformer(decoder, image, all_tokens[start : start + chunk], buffers)
        iou = _predicted_iou(decoder, queries)
        ious.append(iou)
        keep = (iou > iou_thresh).any(1) if iou_thresh > 0 else torch.ones(len(iou), dtype=torch.bool, device=iou.device)
        rows = keep.nonzero()[:, 0]
        for sub in range(0, len(rows), UPSCALE_CHUNK):
            part = rows[sub : sub + UPSCALE_CHUNK]
            first = int(part[0])
            if int(part[-1]) - first + 1 == len(part):  # consecutive rows: views instead of gathered copies
                part = slice(first, first + len(part))
            conv1 = _first_upscaling(decoder, shared, [update.select(part) for update in updates], buffers)
            upscaled = _upscale_masks(decoder, conv1, queries[part, 1:], side, buffers, upscale_dtype)
            target = logits[start : start + len(iou)].view(len(iou), n_masks, side, 2, 2, side, 2, 2)
            target[part] = upscaled
    return logits, torch.cat(ious)


def decode_points(
    model: Any,
    embedding: torch.Tensor,
    image_pe: torch.Tensor,
    points: torch.Tensor,
    iou_thresh: float = 0.0,
    upscale_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ((P, 3, 256, 256) low-res logits, (P, 3) predicted IoU) for single-point prompts.

    The fast path (:func:`decode_points_fast`); see its docstring.
    """
    return decode_points_fast(model, embedding, image_pe, points, iou_thresh=iou_thresh, upscale_dtype=upscale_dtype)
