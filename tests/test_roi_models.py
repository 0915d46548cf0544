"""roi with models: tiny random-weight Grounding DINO and CLIP saved to disk and loaded by the user-facing loaders."""

from __future__ import annotations

import numpy as np
import pytest

from roadparse.artifacts import list_tiles
from roadparse.config import load_settings
from roadparse.io.images import write_image
from roadparse.models import ModelLoadError
from roadparse.models.detectors import GroundingDinoDetector, load_detector, prompt_queries
from roadparse.models.zero_shot import load_zero_shot_classifier
from roadparse.stages import roi as roi_stage
from roadparse.workspace import Workspace
from tiny_hub import GROUNDING_DINO_QUERIES, save_clip, save_grounding_dino

NUM_QUERIES = GROUNDING_DINO_QUERIES


@pytest.fixture(scope="module")
def tiny_grounding_dino(tmp_path_factory):
    """Returns the folder of a tiny random Grounding DINO (Swin + BERT) with its processor."""
    return save_grounding_dino(tmp_path_factory.mktemp("grounding_dino"))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """Returns the folder of a tiny random CLIP with a BPE tokenizer built from vocab.json + merges.txt."""
    return save_clip(tmp_path_factory.mktemp("clip"))


def test_detector_loads_from_folder_and_detects(tiny_grounding_dino):
    detector = load_detector(str(tiny_grounding_dino), device="cpu")
    assert isinstance(detector, GroundingDinoDetector)
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    everything = detector.detect(image, "road. highway.", box_threshold=0.0, text_threshold=0.0)
    assert 0 < len(everything) <= NUM_QUERIES
    scores = [d.score for d in everything]
    assert scores == sorted(scores, reverse=True)
    for detection in everything:
        x0, y0, x1, y1 = detection.box_xyxy
        assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 120
        assert "[SEP]" not in detection.label and set(
            detection.label.replace(".", " ").split()
        ) <= {"road", "highway"}
    assert detector.detect(image, "road. highway.", box_threshold=1.0, text_threshold=0.25) == []


def test_zero_shot_classifier_returns_probabilities(tiny_clip):
    classifier = load_zero_shot_classifier(str(tiny_clip), device="cpu", batch_size=2)
    rng = np.random.default_rng(0)
    crops = [
        rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((20, 30), (64, 40), (33, 33))
    ]
    probabilities = classifier.classify(crops, ["road", "highway", "other"])
    assert probabilities.shape == (3, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert classifier.classify([], ["road"]).shape == (0, 1)
    with pytest.raises(ValueError, match="image 0"):
        classifier.classify([np.zeros((0, 4, 3), dtype=np.uint8)], ["road"])


def test_loaders_reject_unknown_models_with_clear_errors(tiny_clip, tiny_grounding_dino, tmp_path):
    with pytest.raises(ValueError, match="supported model types: grounding-dino"):
        load_detector(str(tiny_clip), device="cpu")
    with pytest.raises(ValueError, match="supported model types: clip"):
        load_zero_shot_classifier(str(tiny_grounding_dino), device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_detector(str(tmp_path / "missing"), device="cpu")
    assert prompt_queries("road. highway.") == ["road", "highway"]


def _detector_settings(detector, clip, *extra):
    return load_settings(
        None, [f"roi.detector={detector}", f"roi.filter={clip}", "roi.device=cpu", *extra]
    )


def test_stage_detector_mode_end_to_end(tiny_grounding_dino, tiny_clip, tmp_path):
    frames = tmp_path / "frames"
    rng = np.random.default_rng(1)
    write_image(frames / "a.jpg", rng.integers(0, 255, (900, 1300, 3), dtype=np.uint8))
    write_image(frames / "b.png", rng.integers(0, 255, (500, 700, 3), dtype=np.uint8))

    keep_all = _detector_settings(
        tiny_grounding_dino,
        tiny_clip,
        "roi.box_threshold=0.0",
        "roi.text_threshold=0.0",
        "roi.reject_labels=[]",
    )
    workspace = Workspace(tmp_path / "keep")
    manifest = roi_stage.run(workspace, keep_all, sorted(frames.iterdir()))
    record = manifest["items"]["a"]
    assert record["frame_size"] == [1300, 900]
    assert 0 < len(record["boxes"]) <= NUM_QUERIES
    for box in record["boxes"]:
        assert box["source"] == "detector" and box["filter_label"] in ("road", "highway", "other")
        assert set(box["filter_probabilities"]) == {"road", "highway", "other"}
        x0, y0, x1, y1 = box["box"]
        assert 0 <= x0 < x1 <= 1300 and 0 <= y0 < y1 <= 900
    assert manifest["summary"]["tiles"] == len(list_tiles(workspace)) > 0
    regions = [r["box"] for r in record["regions"]]
    for tile in record["tiles"]:  # every tile lies in the frame and overlaps a kept region
        x, y = tile["offset"]
        assert any(
            x < r[2] and r[0] < x + tile["size"][0] and y < r[3] and r[1] < y + tile["size"][1]
            for r in regions
        )

    reject_all = _detector_settings(
        tiny_grounding_dino,
        tiny_clip,
        "roi.box_threshold=0.0",
        "roi.reject_labels=[road, highway, other]",
    )
    rejected = roi_stage.run(Workspace(tmp_path / "reject"), reject_all, sorted(frames.iterdir()))
    assert rejected["summary"]["tiles"] == 0 and rejected["summary"]["frames_without_road"] == [
        "a",
        "b",
    ]
    assert rejected["failed"] == {}

    none_found = roi_stage.run(
        Workspace(tmp_path / "none"),
        _detector_settings(tiny_grounding_dino, tiny_clip, "roi.box_threshold=1.0"),
        sorted(frames.iterdir()),
    )
    assert all(item["boxes"] == [] and item["tiles"] == [] for item in none_found["items"].values())
