"""Tiny random-weight twins of the paper's five models, saved as folders or into a local Hugging Face cache.

Each builder saves a model (and its processor where the loader uses one) with ``save_pretrained``;
:func:`fill_hub_cache` lays them out as ``hf download`` does, under the exact ids of the paper
profile, so that ``from_pretrained(id)`` with ``HF_HUB_OFFLINE=1`` loads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

GROUNDING_DINO_QUERIES = 6
REVISION = "0000000000000000000000000000000000000001"


def save_grounding_dino(folder: Path) -> Path:
    """Saves a tiny random Grounding DINO (Swin + BERT) with its processor into ``folder``."""
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "road", "highway", "other"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(words)})
    backbone = SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=64,
                          out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
        decoder_layers=2,  # a single decoder layer breaks the shared bbox-head weight tying
        encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
        num_queries=GROUNDING_DINO_QUERIES, max_text_len=32,
    )
    GroundingDinoForObjectDetection(config).eval().save_pretrained(folder)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}), tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)
    return folder


def save_clip(folder: Path, logit_scale: float | None = None) -> Path:
    """Saves a tiny random CLIP with a BPE tokenizer (vocab.json + merges.txt) into ``folder``.

    ``logit_scale``: the log of the logits' scale; a very negative value makes every label equally
    likely, so the filter keeps every box (its first label, ``road``, wins the tie).
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = ["<|startoftext|>", "<|endoftext|>"] + list("roadhigwyte") + ["road</w>", "highway</w>", "other</w>", "ro"]
    symbols += [f"{c}</w>" for c in "roadhigwyte"]
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nr o\n")
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    text = dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    vision = dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).eval()
    if logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.fill_(logit_scale)
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_sam(folder: Path) -> Path:
    """Saves a tiny random SAM (96-px encoder) whose decoder proposes masks of many sizes into ``folder``."""
    from transformers import SamConfig, SamModel

    vision = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 96, "patch_size": 16,
              "output_channels": 16, "window_size": 3, "global_attn_indexes": [1], "num_pos_feats": 8, "mlp_dim": 64}
    prompt = {"hidden_size": 16, "image_size": 96, "patch_size": 16}
    decoder = {"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "iou_head_hidden_dim": 16}
    model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)).eval()
    with torch.no_grad():  # the default init gives near-zero logits: scale the encoder and the mask heads up
        for param in model.vision_encoder.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.2)
        for name, param in model.mask_decoder.named_parameters():
            if "output_hypernetworks_mlps" in name:
                param.mul_(30)
    model.save_pretrained(folder)
    return folder


def save_dinov2(folder: Path) -> Path:
    """Saves a tiny random DINOv2 ViT (12 layers as ViT-B, so the paper's layer 12 exists; 16-d) into ``folder``."""
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(patch_size=14, image_size=28, hidden_size=16, num_hidden_layers=12, num_attention_heads=2,
                          intermediate_size=32)
    Dinov2Model(config).eval().save_pretrained(folder)
    return folder


def save_segformer(folder: Path) -> Path:
    """Saves a tiny random SegFormer (MiT with 8-d stages) into ``folder``; its head is re-made for the run's classes."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                             decoder_hidden_size=8, num_labels=2)
    SegformerForSemanticSegmentation(config).eval().save_pretrained(folder)
    return folder


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "IDEA-Research/grounding-dino-tiny": save_grounding_dino,
    "openai/clip-vit-base-patch32": lambda folder: save_clip(folder, logit_scale=-100.0),
    "facebook/sam-vit-large": save_sam,
    "facebook/dinov2-base": save_dinov2,
    "nvidia/mit-b0": save_segformer,
}
"""The paper profile's model ids and their tiny twins."""


def fill_hub_cache(cache: Path, models: dict[str, Callable[[Path], Path]] | None = None) -> Path:
    """Saves each model into ``cache`` as ``hf download`` lays it out: ``models--org--name/snapshots/REV/`` + ``refs/main``."""
    torch.manual_seed(0)
    for model_id, build in (models or BUILDERS).items():
        repo = cache / ("models--" + model_id.replace("/", "--"))
        build(repo / "snapshots" / REVISION)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(REVISION)
    return cache
