"""masks.merge_across_tiles through the stages: objects.json, one embedding per object, one class per object."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from roadparse.artifacts import (
    list_tiles,
    mask_key,
    read_index,
    read_objects,
    read_surround,
    with_objects,
)
from roadparse.config import load_settings
from roadparse.io.images import write_image
from roadparse.stages import embed, masks, roi
from roadparse.stages.embed import mask_colour
from roadparse.workspace import Workspace


class _MeanEncoder:
    """A stand-in encoder: the mean colour and the crop's red share, so crops can be checked."""

    layers = [1]

    def encode(self, crops: np.ndarray) -> dict[int, np.ndarray]:
        return {1: crops.reshape(len(crops), -1, 3).mean(axis=1).astype(np.float32)}


def _frame() -> np.ndarray:
    image = np.full((200, 400, 3), (90, 90, 90), np.uint8)  # grey road
    image[80:120, 50:350] = (220, 40, 40)  # a red bar cut by the tile border at x = 200
    image[10:40, 250:290] = (40, 40, 220)  # a blue square inside the right tile
    return image


def _run(tmp_path: Path, merge: bool) -> Workspace:
    frames = tmp_path / "frames"
    frames.mkdir(exist_ok=True)
    write_image(frames / "f.png", _frame())
    settings = load_settings(None, [
        "roi.mode=none", "roi.tile_size=200", "roi.gsd_cm=1.0", "masks.generator=felzenszwalb",
        "masks.min_mask_area_cm2=300", f"masks.merge_across_tiles={str(merge).lower()}", "embed.layers=[1]",
    ])
    workspace = Workspace(tmp_path / ("merged" if merge else "plain"))
    roi.run(workspace, settings, [frames / "f.png"])
    masks.run(workspace, settings)
    embed.run(workspace, settings, encoder=_MeanEncoder())  # type: ignore[arg-type]
    return workspace


def test_bar_cut_by_a_border_is_one_object_embedded_once(tmp_path):
    plain = _run(tmp_path, merge=False)
    merged = _run(tmp_path, merge=True)
    assert [t.id for t in list_tiles(merged)] == ["f_x0_y0", "f_x200_y0"]
    objects = read_objects(merged)
    # grey road (both tiles) and red bar (both tiles) are objects; the blue square stays a single-tile mask
    assert len(objects) == 2 and all(len(members) == 2 for members in objects.values())
    manifest = json.loads((merged.root / "masks" / "manifest.json").read_text())
    assert manifest["summary"]["objects"]["links"] == {"duplicate": 0, "border": 2}
    assert manifest["summary"]["min_mask_area_px"] == {"1": 300}  # 300 cm² at 1 cm/px
    assert read_index(plain).num_rows == 5 and read_index(merged).num_rows == 3
    index = read_index(merged)
    features = np.load(merged.root / "embed" / "features_layer1.npy")
    red_row = int(np.argmax(features[:, 0] - features[:, 2]))
    x0, x1 = index.column("x0")[red_row].as_py(), index.column("x1")[red_row].as_py()
    assert (x0, x1) == (50, 350)  # the object's whole box (representative's tile starts at x = 0)
    assert index.column("area")[red_row].as_py() == 40 * 300
    # its surround is the grey road around it, though the bar fills its own box: the canvas is widened by the ring
    grey = cv2.cvtColor(np.full((4, 4, 3), 90, np.uint8), cv2.COLOR_RGB2LAB)
    np.testing.assert_allclose(read_surround(merged)[red_row], mask_colour(grey, np.ones((4, 4), bool)), atol=1e-6)


def test_object_members_share_their_representatives_value():
    objects = {mask_key("a", "a/0"): [mask_key("a", "a/0"), mask_key("b", "b/3")]}
    classes = with_objects({mask_key("a", "a/0"): 2, mask_key("b", "b/1"): 5}, objects)
    assert classes[mask_key("b", "b/3")] == 2 and classes[mask_key("b", "b/1")] == 5
