"""Binary masks as COCO run-length encoding (pycocotools), JSON-ready."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pycocotools import mask as mask_utils

if TYPE_CHECKING:
    from pycocotools import _EncodedRLE  # the stubs' name for {"size": [h, w], "counts": ...}


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Returns the COCO RLE of a (H, W) bool mask as {"size": [H, W], "counts": str}."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]  # bytes from pycocotools; the stubs allow str too
    text = counts.decode("ascii") if isinstance(counts, bytes) else counts
    return {"size": [int(v) for v in rle["size"]], "counts": text}


def _to_coco(rle: dict[str, Any]) -> _EncodedRLE:
    """Returns ``rle`` as pycocotools takes it: counts as bytes."""
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode(rle: dict[str, Any]) -> np.ndarray:
    """Returns the (H, W) bool mask of a COCO RLE (counts as str or bytes)."""
    return mask_utils.decode(_to_coco(rle)).astype(bool)


def area(rle: dict[str, Any]) -> int:
    """Returns the number of foreground pixels of a COCO RLE without decoding it."""
    return int(mask_utils.area(_to_coco(rle)))


def bbox_xyxy(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Returns the tight box (x0, y0, x1, y1), end-exclusive, of a (H, W) bool mask; zeros when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
