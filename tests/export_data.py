"""Test data of the export tests: prediction folders as `roadparse predict` writes them (ragged markings: roadparse.synth.ragged)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from roadparse.io.labels import load_classes, write_label_png

CLASSES = load_classes()
ROAD, WHITE, SEALING, CONE = (CLASSES.index(n) for n in ("road", "white_marking", "crack_sealing", "traffic_cone"))
GSD_CM = 0.5  # 10 m = 2000 px, 4 cm = 8 px, 1 m² = 200 x 200 px


def write_prediction(pred_dir: Path, labels: dict[str, np.ndarray], geo: dict[str, dict] | None = None,
                     confidence: int = 230, gsd_cm: float = GSD_CM) -> Path:
    """Writes a prediction folder as `roadparse predict` does: label + confidence PNGs and summary.json."""
    from PIL import Image

    pred_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for stem, label in labels.items():
        write_label_png(pred_dir / f"{stem}_label.png", label, CLASSES)
        Image.fromarray(np.full(label.shape, confidence, np.uint8), mode="L").save(pred_dir / f"{stem}_confidence.png")
        records.append({"input": f"/frames/{stem}.png", "width": label.shape[1], "height": label.shape[0],
                        "gsd_cm": gsd_cm, "pixel_area_m2": (gsd_cm / 100) ** 2, "run_key": "abc123",
                        **(geo or {}).get(stem, {})})
    summary = {"model": "/runs/w/train/round_1/model", "classes": list(CLASSES.names), "images": records, "failed": {}}
    (pred_dir / "summary.json").write_text(json.dumps(summary))
    return pred_dir
