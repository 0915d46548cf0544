"""Zero-shot image classifiers behind one interface: ``classify(images, labels) -> (N, L) probabilities``.

Used by the roi stage to filter detector boxes (paper: CLIP ViT-B/32 with "road",
"highway", "other") and by clustering to name clusters. The family is chosen from
the loaded config's ``model_type``:

- ``clip`` (``openai/clip-vit-base-patch32``): softmax over the labels of the
  image-text logits, as in the paper.
- ``siglip`` / ``siglip2`` (e.g. ``google/siglip2-base-patch16-224``): these models
  are trained with a sigmoid per (image, text) pair, so their probabilities are
  independent and need not sum to 1. We return the softmax over the labels of the
  same logits ``scale * cos + bias``: the bias is shared by all labels and cancels,
  the best label is the one with the highest sigmoid probability, and rows sum to 1
  like CLIP's, so a caller's "best label" logic is the same for every family.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from roadparse.models import load_pretrained, resolve_device

log = logging.getLogger(__name__)

CLASSIFIER_TYPES: tuple[str, ...] = ("clip", "siglip", "siglip2")


class ZeroShotClassifier(Protocol):
    """What the roi filter and cluster naming need from a zero-shot classifier."""

    def classify(self, images: list[np.ndarray], labels: list[str]) -> np.ndarray:
        """Returns (N, L) float32 probabilities of each label for each (h, w, 3) uint8 image."""
        ...


class ContrastiveClassifier:
    """CLIP or SigLIP through ``transformers``: image-text logits, softmax over labels."""

    def __init__(self, model: Any, processor: Any, device: Any, batch_size: int = 32):
        self.model = model
        self.processor = processor
        self.device = device
        self.batch_size = batch_size
        self.model_type = model.config.model_type

    def _text_kwargs(self) -> dict[str, Any]:
        if self.model_type in ("siglip", "siglip2"):
            # SigLIP was trained on text padded to 64 tokens; other padding changes its embeddings.
            return {"padding": "max_length", "max_length": 64, "truncation": True}
        return {"padding": True, "truncation": True}

    def classify(self, images: list[np.ndarray], labels: list[str]) -> np.ndarray:
        """Returns (N, L) float32 label probabilities (rows sum to 1) for N RGB images.

        Args:
            images: (h, w, 3) uint8 RGB crops of any size; the processor resizes them.
            labels: L text labels, e.g. ["road", "highway", "other"].

        Raises:
            ValueError: no labels, or an image that is not (h, w, 3) uint8 / is empty.
        """
        import torch

        if not labels:
            raise ValueError("zero-shot classification needs at least one label")
        for index, image in enumerate(images):
            if (
                image.ndim != 3
                or image.shape[2] != 3
                or image.dtype != np.uint8
                or 0 in image.shape[:2]
            ):
                raise ValueError(
                    f"image {index}: expected a non-empty (h, w, 3) uint8 RGB array, got {image.shape} {image.dtype}"
                )
        if not images:
            return np.zeros((0, len(labels)), dtype=np.float32)
        probabilities = []
        for start in range(0, len(images), self.batch_size):
            batch = [
                image if image.flags.writeable else image.copy()
                for image in images[start : start + self.batch_size]
            ]
            inputs = self.processor(
                images=batch, text=list(labels), return_tensors="pt", **self._text_kwargs()
            )
            inputs = inputs.to(self.device)
            with torch.inference_mode():
                logits = self.model(**inputs).logits_per_image  # (batch, L)
            probabilities.append(logits.float().softmax(dim=-1).cpu().numpy())
        return np.concatenate(probabilities).astype(np.float32)


def load_zero_shot_classifier(
    name_or_path: str | Path = "openai/clip-vit-base-patch32",
    device: str = "auto",
    batch_size: int = 32,
) -> ZeroShotClassifier:
    """Returns a zero-shot classifier for a Hugging Face id or local folder (CLIP, SigLIP, SigLIP 2).

    Raises:
        ModelLoadError: the model or its processor cannot be loaded (the message says
            how to give a local path).
        ValueError: the model type is not one roadparse supports.
    """
    from transformers import AutoConfig, AutoModel, AutoProcessor

    config = load_pretrained(AutoConfig, name_or_path)
    if config.model_type not in CLASSIFIER_TYPES:
        raise ValueError(
            f"{name_or_path}: model type {config.model_type!r} is not a supported zero-shot classifier; "
            f"supported model types: {', '.join(CLASSIFIER_TYPES)}"
        )
    torch_device = resolve_device(device)
    processor = load_pretrained(AutoProcessor, name_or_path)
    model = load_pretrained(AutoModel, name_or_path).to(torch_device).eval()
    log.info(
        "loaded %s zero-shot classifier %s on %s", config.model_type, name_or_path, torch_device
    )
    return ContrastiveClassifier(model, processor, torch_device, batch_size=batch_size)
