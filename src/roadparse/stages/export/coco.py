"""Label maps → COCO instance annotations (one per 4-connected region, compressed RLE).

Readable by pycocotools and by the COCO importers of CVAT (Datumaro) and other labelling
tools, so pseudo-labels or predictions can be corrected where people already label.
Category ids are class id + 1 (COCO reserves 0); predictions carry a ``score`` (mean
class probability of the region) when confidence maps exist. Images that know their ground
sampling distance carry ``gsd_cm``, their annotations ``area_m2``, and regions smaller than
the minimum area (in m², converted to pixels with the image's GSD) are left out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadparse.io.labels import IGNORE_INDEX, ClassSet
from roadparse.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelImage:
    """One image's label map and where the image is."""

    file_name: str
    labels: np.ndarray
    """(H, W) uint8 class ids; 255 = unlabelled"""
    confidence: np.ndarray | None = None
    """(H, W) uint8 class probability × 255, or None"""
    gsd_cm: float | None = None
    """ground sampling distance of the label's pixels (annotations then carry ``area_m2``), or None"""


def region_rle(band: np.ndarray, x0: int, width: int) -> dict[str, Any]:
    """Returns the compressed COCO RLE of a region given as the (H, w) bool column band starting at column ``x0``
    of an image ``width`` wide (the image is False outside the band).

    Encodes only the band (column-major runs, padded with the columns before and after),
    so a small region of a large frame costs its band, not the whole frame.
    """
    from pycocotools import mask as mask_utils

    height = band.shape[0]
    flat = band.ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs.insert(0, 0)  # COCO runs start with zeros
    runs[0] += x0 * height
    after = (width - x0 - band.shape[1]) * height
    if len(runs) % 2 == 1:  # ends with zeros
        runs[-1] += after
    elif after:
        runs.append(after)
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    counts = rle["counts"]  # bytes from pycocotools; the stubs allow str too
    return {"size": [height, width], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def min_region_pixels(min_area_m2: float, gsd_cm: float | None) -> int:
    """Returns the fewest pixels a region of at least ``min_area_m2`` has at ``gsd_cm`` (1 when the GSD is unknown)."""
    if gsd_cm is None or min_area_m2 <= 0:
        return 1
    return max(1, math.ceil(min_area_m2 / (gsd_cm / 100.0) ** 2 - 1e-9))


def coco_dataset(
    images: list[LabelImage], classes: ClassSet, description: str = "roadparse labels", coordinates: str | None = None,
    min_area_m2: float = 0.0,
) -> dict[str, Any]:
    """Returns a COCO instances dict: images, categories, one annotation per region of each class.

    ``area`` and ``bbox`` are in the label's pixels (COCO's convention); images with a known
    GSD also carry ``gsd_cm`` and their annotations ``area_m2``, and their regions under
    ``min_area_m2`` are left out (``info`` says how many, and the minimum). ``coordinates``,
    when given, says in ``info`` which pixels the annotations are in.
    """
    from scipy import ndimage

    annotations: list[dict[str, Any]] = []
    records = []
    left_out, unknown_gsd = 0, []
    for image_id, image in enumerate(images, start=1):
        height, width = image.labels.shape
        record: dict[str, Any] = {"id": image_id, "file_name": image.file_name, "width": width, "height": height}
        if image.gsd_cm is not None:
            record["gsd_cm"] = image.gsd_cm
        elif min_area_m2 > 0:
            unknown_gsd.append(image.file_name)
        records.append(record)
        smallest = min_region_pixels(min_area_m2, image.gsd_cm)
        for class_id in range(len(classes)):
            components, count = ndimage.label(image.labels == class_id)
            sizes = np.bincount(components.ravel(), minlength=count + 1)
            for component, box in enumerate(ndimage.find_objects(components), start=1):
                if box is None:
                    continue
                if sizes[component] < smallest:
                    left_out += 1
                    continue
                rows, cols = box
                band = components[:, cols] == component
                area = int(sizes[component])
                annotation = {
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": class_id + 1,
                    "segmentation": region_rle(band, cols.start, width), "area": area,
                    "bbox": [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start], "iscrowd": 0,
                }
                if image.gsd_cm is not None:
                    annotation["area_m2"] = round(area * (image.gsd_cm / 100.0) ** 2, 6)
                if image.confidence is not None:
                    region = components[box] == component
                    annotation["score"] = round(float(image.confidence[box][region].mean()) / 255.0, 4)
                annotations.append(annotation)
    if unknown_gsd:
        log.warning("%d image(s) without a known GSD (%s...): no minimum area applied to them; pass --gsd-cm",
                    len(unknown_gsd), unknown_gsd[0])
    categories = [{"id": i + 1, "name": name, "supercategory": "road"} for i, name in enumerate(classes.names)]
    info = {"description": description, **({"coordinates": coordinates} if coordinates else {}),
            "min_area_m2": min_area_m2, "left_out": left_out}
    return {"info": info, "images": records, "categories": categories, "annotations": annotations}


def prediction_images(pred_dir: Path, summary: dict[str, Any]) -> list[LabelImage]:
    """Returns the label maps of a ``roadparse predict`` folder, named by their input file, with their GSD."""
    from PIL import Image

    from roadparse.io.labels import read_label_png

    images = []
    for record in summary["images"]:
        stem = Path(record["input"]).stem
        confidence = None
        if (pred_dir / f"{stem}_confidence.png").is_file():
            with Image.open(pred_dir / f"{stem}_confidence.png") as source:
                confidence = np.asarray(source)
        images.append(LabelImage(Path(record["input"]).name, read_label_png(pred_dir / f"{stem}_label.png"), confidence,
                                 gsd_cm=_record_gsd_cm(record)))
    return images


def _record_gsd_cm(record: dict[str, Any]) -> float | None:
    """Returns the GSD of a ``roadparse predict`` record: from its pixel area (the georeference's when it has one)."""
    if record.get("pixel_area_m2"):
        return round(100.0 * float(record["pixel_area_m2"]) ** 0.5, 6)
    return float(record["gsd_cm"]) if record.get("gsd_cm") else None


def label_folder_images(label_dir: Path, image_suffix: str = ".png") -> list[LabelImage]:
    """Returns the label PNGs of a folder (e.g. ``WORKDIR/pseudolabel/labels``), named ``<stem><image_suffix>``."""
    from roadparse.io.labels import read_label_png

    paths = sorted(label_dir.glob("*.png"))
    if not paths:
        raise ValueError(f"{label_dir}: no label PNGs")
    return [LabelImage(f"{path.stem}{image_suffix}", read_label_png(path)) for path in paths]


def workdir_frame_images(workspace: Workspace, label_dir: Path) -> list[LabelImage]:
    """Returns a work directory's tile labels (e.g. its pseudo-labels) pasted into their frames, in frame pixels.

    One image per frame with at least one label PNG in ``label_dir`` (``<tile_id>.png``),
    named by the frame's file name and as large as the frame; each frame pixel takes the
    label of the tile pixel holding its centre (tiles resampled by ``roi.target_gsd_cm``
    are mapped back to the frame grid), pixels under no tile are unlabelled, and where
    tiles overlap (``roi.tile_overlap``) the later tile wins. ``gsd_cm`` is the frame's own GSD.
    """
    from roadparse.artifacts import frame_label_part, list_frames
    from roadparse.io.labels import read_label_png

    images = []
    for frame in list_frames(workspace):
        tiles = [tile for tile in frame.tiles if (label_dir / f"{tile.id}.png").is_file()]
        if not tiles:
            continue
        canvas = np.full((frame.size[1], frame.size[0]), IGNORE_INDEX, np.uint8)
        for tile in tiles:
            (x0, y0, x1, y1), part = frame_label_part(read_label_png(label_dir / f"{tile.id}.png"), tile, frame.size)
            canvas[y0:y1, x0:x1] = part
        images.append(LabelImage(frame.path.name, canvas, gsd_cm=frame.gsd_cm))
    if not images:
        raise ValueError(f"{label_dir}: no label PNG of a tile of {workspace.root}; run `roadparse pseudolabel` first")
    return images
