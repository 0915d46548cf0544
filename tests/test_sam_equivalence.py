"""roadparse's SAM automatic masks equal the official ``segment_anything`` generator (same random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.sam_tiny import build_official_sam, hf_twin, road_image

from roadparse.config import MasksSettings
from roadparse.io import rle as rle_io
from roadparse.models.mask_generators import load_mask_generator
from roadparse.models.sam.amg import CropGeometry, stability_scores

segment_anything = pytest.importorskip("segment_anything")


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    official = build_official_sam(seed=0)
    with torch.no_grad():  # larger mask logits, so stability scores spread over (0, 1)
        for name, param in official.named_parameters():
            if "output_hypernetworks_mlps" in name and "layers.2" in name:
                param.mul_(100)
    folder = tmp_path_factory.mktemp("tiny-sam")
    hf_twin(official, folder)
    return official, folder


@pytest.fixture(scope="module")
def official_candidates(twins):
    """The official predictor's candidates on ``road_image()``, computed once for the module."""
    return _official_candidates(twins[0], road_image())


def _ours(folder, **kw):
    settings = MasksSettings(generator=str(folder), device="cpu", min_mask_area=0, points_per_side=8, **kw)
    return load_mask_generator(settings)


def _official_candidates(official, image, points_per_side=8):
    """Returns official full-res logits (N, H, W), iou (N,) in point-major order, like its AMG batches."""
    from segment_anything import SamPredictor
    from segment_anything.utils.amg import build_point_grid

    predictor = SamPredictor(official)
    predictor.set_image(image)
    points = build_point_grid(points_per_side) * np.array(image.shape[1::-1])[None]
    coords = torch.as_tensor(predictor.transform.apply_coords(points, image.shape[:2]))
    labels = torch.ones(len(coords), dtype=torch.int)
    with torch.no_grad():
        masks, iou, _ = predictor.predict_torch(coords[:, None], labels[:, None], multimask_output=True, return_logits=True)
    return masks.flatten(0, 1), iou.flatten(0, 1), predictor.features


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_image_embeddings_equal(twins, official_candidates):
    _, folder = twins
    image = road_image()
    ours = _ours(folder)
    _, _, features = official_candidates
    embedding, input_sizes = ours.embed([image])
    assert input_sizes == [(192, 256)]
    torch.testing.assert_close(embedding, features, atol=1e-4, rtol=1e-4)


def test_candidates_equal_before_nms(twins, official_candidates):
    _, folder = twins
    image = road_image()
    ours = _ours(folder, pred_iou_thresh=0.0)
    logits_ref, iou_ref, _ = official_candidates
    embedding, input_sizes = ours.embed([image])
    geometry = CropGeometry(box=[0, 0, image.shape[1], image.shape[0]], input_hw=input_sizes[0])
    found = ours.candidates(embedding, geometry)
    assert len(found["iou"]) == len(iou_ref) == 8 * 8 * 3
    torch.testing.assert_close(found["iou"], iou_ref, atol=1e-4, rtol=1e-4)
    full = ours.upscale(found["logits"], geometry)
    assert full.shape == logits_ref.shape
    ious = [_mask_iou(a.numpy(), b.numpy()) for a, b in zip(full > 0, logits_ref > 0, strict=True)]
    assert min(ious) > 0.98 and np.mean(ious) > 0.999
    from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score

    stability_ref = calculate_stability_score(logits_ref, 0.0, 1.0)
    torch.testing.assert_close(stability_scores(full, 0.0, 1.0), stability_ref, atol=2e-3, rtol=0)
    assert stability_ref.std() > 0.05, "test model too degenerate: stability scores do not vary"
    stability, boxes = ours.score(found["logits"], geometry)
    torch.testing.assert_close(stability, stability_ref, atol=2e-3, rtol=0)
    assert torch.equal(boxes, batched_mask_to_box(logits_ref > 0))
    _, banded_boxes = ours.score(found["logits"], geometry, stability=False)  # boxes without full upsampling
    assert torch.equal(banded_boxes, boxes)


@pytest.mark.parametrize(("nms", "stability_thresh"), [(0.7, 0.6), (1.0, 0.0)])
def test_generate_equals_official(twins, official_candidates, nms, stability_thresh):
    """At stability threshold 0, ours scores only the NMS survivors: their scores must still match."""
    from segment_anything import SamAutomaticMaskGenerator

    official, folder = twins
    image = road_image()
    _, iou_ref, _ = official_candidates
    settings = dict(
        pred_iou_thresh=float(iou_ref.median()), stability_score_thresh=stability_thresh, box_nms_thresh=nms,
        points_per_batch=50,
    )
    reference = SamAutomaticMaskGenerator(official, points_per_side=8, min_mask_region_area=0, **settings).generate(image)
    reference = [r for r in reference if r["area"] > 0]
    ours = _ours(folder, **settings).generate(image)
    assert len(reference) > 0
    assert abs(len(ours) - len(reference)) <= max(1, round(0.02 * len(reference)))
    matched = []
    for record in ours:
        mask = rle_io.decode(record["rle"])
        assert record["area"] == mask.sum() and record["bbox"] == list(rle_io.bbox_xyxy(mask))
        ious = [_mask_iou(mask, r["segmentation"]) for r in reference]
        best = reference[int(np.argmax(ious))]
        matched.append(max(ious))
        if max(ious) > 0.999:
            assert abs(record["stability_score"] - best["stability_score"]) < 2e-3
            assert abs(record["predicted_iou"] - best["predicted_iou"]) < 1e-4
    assert np.mean(matched) >= 0.99
