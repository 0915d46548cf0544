"""Open-vocabulary detectors behind one interface: ``detect(image, prompt, ...) -> [Detection]``.

The family is chosen from the loaded config's ``model_type``, so a Hugging Face id
and a local folder (``save_pretrained`` output) go through the same code:

- ``grounding-dino`` (paper: ``IDEA-Research/grounding-dino-tiny``, Swin-T + BERT-base)
  and ``mm-grounding-dino`` (e.g. ``openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg``):
  the prompt is given as is ("road. highway."); box and text thresholds as in the paper.
- ``owlv2`` / ``owlvit``: the prompt is split at "." into queries; these models have
  no text threshold (it is ignored), the box threshold applies to the query score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from roadparse.models import load_pretrained, resolve_device

log = logging.getLogger(__name__)

GROUNDING_TYPES = ("grounding-dino", "mm-grounding-dino")
OWL_TYPES = ("owlv2", "owlvit")
DETECTOR_TYPES: tuple[str, ...] = GROUNDING_TYPES + OWL_TYPES


@dataclass(frozen=True)
class Detection:
    """One detected box in the pixels of the image given to ``detect``."""

    box_xyxy: tuple[float, float, float, float]
    score: float
    label: str


class Detector(Protocol):
    """What the roi stage needs from a detector."""

    def detect(
        self, image: np.ndarray, prompt: str, box_threshold: float, text_threshold: float
    ) -> list[Detection]:
        """Returns the detections of ``prompt`` in an (h, w, 3) uint8 RGB image."""
        ...


def prompt_queries(prompt: str) -> list[str]:
    """Returns the phrases of a Grounding-DINO style prompt: ``"road. highway."`` -> ``["road", "highway"]``."""
    queries = [part.strip() for part in prompt.replace(",", ".").split(".")]
    return [query for query in queries if query]


def _clean_label(text: str) -> str:
    for token in ("[SEP]", "[CLS]", "[PAD]"):
        text = text.replace(token, " ")
    return " ".join(text.replace(" .", ".").split()).strip(" .")


def _detections(
    boxes: Any, scores: Any, labels: list[str], height: int, width: int
) -> list[Detection]:
    boxes = np.asarray(boxes.detach().cpu(), dtype=np.float64).reshape(-1, 4)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    scores = np.asarray(scores.detach().cpu(), dtype=np.float64).reshape(-1)
    found = [
        Detection(box_xyxy=(float(box[0]), float(box[1]), float(box[2]), float(box[3])), score=float(score), label=label)
        for box, score, label in zip(boxes, scores, labels, strict=True)
        if box[2] > box[0] and box[3] > box[1]
    ]
    return sorted(found, key=lambda d: -d.score)


class _TransformersDetector:
    """A ``transformers`` detection model with its processor, on one device."""

    def __init__(self, model: Any, processor: Any, device: Any):
        self.model = model
        self.processor = processor
        self.device = device


class GroundingDinoDetector(_TransformersDetector):
    """Grounding DINO / MM-Grounding-DINO through ``transformers``."""

    def detect(
        self,
        image: np.ndarray,
        prompt: str,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
    ) -> list[Detection]:
        """Returns detections above the box threshold, labelled with the prompt words above the text threshold.

        Args:
            image: (h, w, 3) uint8 RGB image (the paper feeds the frame at long side 1024).
            prompt: phrases ending in ".", e.g. "road. highway.".
            box_threshold: minimum box score (best token probability).
            text_threshold: minimum token probability for a word to be in the label.
        """
        import torch

        height, width = image.shape[:2]
        image = (
            image if image.flags.writeable else image.copy()
        )  # torch.from_numpy warns on read-only arrays
        text = prompt.strip().lower()
        if not text.endswith("."):
            text += "."  # Grounding DINO expects phrases terminated by "."
        inputs = self.processor(images=image, text=text, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=box_threshold,
            text_threshold=text_threshold,
            target_sizes=[(height, width)],
        )[0]
        labels = [_clean_label(label) for label in result["text_labels"]]
        return _detections(result["boxes"], result["scores"], labels, height, width)


class OwlDetector(_TransformersDetector):
    """OWLv2 / OWL-ViT through ``transformers``; one query per prompt phrase."""

    def detect(
        self,
        image: np.ndarray,
        prompt: str,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
    ) -> list[Detection]:
        """Returns detections above the box threshold; ``text_threshold`` is not used by OWL models."""
        import torch

        height, width = image.shape[:2]
        image = image if image.flags.writeable else image.copy()
        queries = prompt_queries(prompt)
        if not queries:
            raise ValueError(f"detector prompt {prompt!r} holds no phrase")
        inputs = self.processor(images=image, text=[queries], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        # OWLv2 pads the image to a square at the bottom/right: boxes are relative to that square.
        side = max(height, width) if self.model.config.model_type == "owlv2" else None
        target = [(side, side)] if side else [(height, width)]
        result = self.processor.post_process_grounded_object_detection(
            outputs, threshold=box_threshold, target_sizes=target, text_labels=[queries]
        )[0]
        return _detections(
            result["boxes"], result["scores"], list(result["text_labels"]), height, width
        )


def load_detector(
    name_or_path: str | Path = "IDEA-Research/grounding-dino-tiny", device: str = "auto"
) -> Detector:
    """Returns a detector for a Hugging Face id or local folder, chosen by its config's model_type.

    Raises:
        ModelLoadError: the model or its processor cannot be loaded (the message says
            how to give a local path).
        ValueError: the model is not an open-vocabulary detector roadparse supports.
    """
    from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

    config = load_pretrained(AutoConfig, name_or_path)
    model_type = config.model_type
    if model_type not in DETECTOR_TYPES:
        raise ValueError(
            f"{name_or_path}: model type {model_type!r} is not a supported detector; "
            f"supported model types: {', '.join(DETECTOR_TYPES)}"
        )
    torch_device = resolve_device(device)
    processor = load_pretrained(AutoProcessor, name_or_path)
    model = (
        load_pretrained(AutoModelForZeroShotObjectDetection, name_or_path).to(torch_device).eval()
    )
    log.info("loaded %s detector %s on %s", model_type, name_or_path, torch_device)
    if model_type in GROUNDING_TYPES:
        return GroundingDinoDetector(model, processor, torch_device)
    return OwlDetector(model, processor, torch_device)
