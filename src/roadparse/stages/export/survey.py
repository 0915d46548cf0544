"""Survey totals that count ground once, from overlapping georeferenced frames.

Drone frames overlap 60-80 %; adding up per-frame figures counts the overlap two or three
times. With frames in one map CRS the ground is shared out first
(:func:`roadparse.ground_cells.nearest_centre_cells`): each piece of ground goes to the frame
whose centre is nearest among those that cover it (the sharpest, least distorted part of a
nadir frame). The shares do not overlap and together make the union of the footprints. Then

- the area of a class is the sum over frames of the class's pixels inside the frame's share;
- the length of a linear class is the sum of the frame's centre-lines clipped to its share;
- cones are counted once (:func:`count_cones`): cone regions of different frames whose
  centres are closer than a cone's size are one cone.

Shares keep each class's area unbiased: a union of the class's polygons over frames would
take the outer envelope of every ragged edge (more marking wherever two frames disagree on
an edge pixel) and count ground that two frames give to different classes in both.
Functions take geometries and arrays and return numbers (or geometries), so reports can
reuse them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from roadparse.ground_cells import nearest_centre_cells
from roadparse.io.labels import IGNORE_INDEX, ClassSet
from roadparse.stages.export.measure import CONE_CLASS
from roadparse.stages.export.rasters import FrameRaster
from roadparse.stages.export.vectors import Layer


def footprint(raster: FrameRaster) -> Any:
    """Returns the (multi)polygon of a frame's labelled pixels (not IGNORE_INDEX) in its map coordinates."""
    import shapely
    from rasterio.features import shapes
    from rasterio.transform import Affine

    valid = (raster.labels != IGNORE_INDEX).astype(np.uint8)
    parts = [shapely.geometry.shape(g) for g, value in shapes(valid, mask=valid > 0, connectivity=4,
                                                              transform=Affine(*raster.transform))]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def share_mask(raster: FrameRaster, share: Any) -> np.ndarray:
    """Returns the (H, W) bool pixels of a frame whose centre lies in ``share``."""
    from rasterio.features import rasterize
    from rasterio.transform import Affine

    if share.is_empty:
        return np.zeros(raster.labels.shape, dtype=bool)
    inside = rasterize([share], out_shape=raster.labels.shape, transform=Affine(*raster.transform), fill=0,
                       default_value=1, dtype="uint8")
    return inside.astype(bool)


def clipped_length(lines: list[Any], share: Any) -> float:
    """Returns the length of the parts of ``lines`` inside ``share`` (map units)."""
    import shapely

    if not lines or share.is_empty:
        return 0.0
    return float(shapely.length(shapely.intersection(np.array(lines, dtype=object), share)).sum())


def count_cones(centres: np.ndarray, sizes: np.ndarray, frames: np.ndarray) -> int:
    """Returns the number of cones among cone regions seen in several frames.

    Args:
        centres: (N, 2) region centroids in map units.
        sizes: (N,) region sizes (diameter of the circle of equal area).
        frames: (N,) frame index of each region; regions of one frame are always different cones.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    count = len(centres)
    if count == 0:
        return 0
    centres, sizes, frames = np.asarray(centres, np.float64), np.asarray(sizes, np.float64), np.asarray(frames)
    pairs = np.array(sorted(cKDTree(centres).query_pairs(float(sizes.max()))), dtype=np.int64).reshape(-1, 2)
    if len(pairs):
        gap = np.hypot(*(centres[pairs[:, 0]] - centres[pairs[:, 1]]).T)
        same = (gap < np.maximum(sizes[pairs[:, 0]], sizes[pairs[:, 1]])) & (frames[pairs[:, 0]] != frames[pairs[:, 1]])
        pairs = pairs[same]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    return int(connected_components(graph, directed=False)[0])


def survey_totals(rasters: list[FrameRaster], per_frame: list[dict[str, Layer]], classes: ClassSet) -> dict[str, float | int]:
    """Returns the survey's ``area_m2.<class>``, ``<linear class>_m`` and cone count with ground counted once.

    Args:
        rasters: the frames, all in one map CRS.
        per_frame: each frame's layers (:func:`roadparse.stages.export.vectors.frame_layers`), in the same order.
        classes: class names by id.
    """
    import shapely

    footprints = [footprint(raster) for raster in rasters]
    centres = np.array([_centre(raster) for raster in rasters])
    shares = nearest_centre_cells(footprints, centres)
    counts = np.zeros(256, dtype=np.float64)
    lengths: dict[str, float] = {}
    for raster, layers, share in zip(rasters, per_frame, shares, strict=True):
        counts += np.bincount(raster.labels[share_mask(raster, share)], minlength=256) * raster.pixel_area_m2
        for name, layer in layers.items():
            if name.endswith("_centreline"):
                key = f"{name.removesuffix('_centreline')}_m"
                lengths[key] = lengths.get(key, 0.0) + clipped_length(layer.geometries, share)
    totals: dict[str, float | int] = {f"area_m2.{name}": round(float(counts[i]), 4) for i, name in enumerate(classes.names)}
    totals.update({key: round(value, 3) for key, value in sorted(lengths.items())})
    if CONE_CLASS in classes.names:
        cones = [(shapely.centroid(g), g.area, i) for i, layers in enumerate(per_frame)
                 for g in (layers[CONE_CLASS].geometries if CONE_CLASS in layers else [])]
        totals[f"{CONE_CLASS}_count"] = count_cones(
            np.array([(c.x, c.y) for c, _, _ in cones]).reshape(-1, 2),
            np.array([2.0 * np.sqrt(area / np.pi) for _, area, _ in cones]), np.array([i for *_, i in cones]))
    return totals


def _centre(raster: FrameRaster) -> tuple[float, float]:
    """Returns the map coordinates of the centre of a frame's pixel grid."""
    a, b, c, d, e, f = raster.transform
    col, row = raster.labels.shape[1] / 2.0, raster.labels.shape[0] / 2.0
    return a * col + b * row + c, d * col + e * row + f
