import numpy as np
import pytest
from PIL import Image

from roadparse.io import rle
from roadparse.io.images import (
    ImageReadError,
    image_size,
    list_images,
    read_image,
    read_image_reduced,
    write_image,
)
from roadparse.io.labels import ClassSet, load_classes, read_label_png, write_label_png


def _rgb(h=60, w=90, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_modes_to_rgb_uint8(tmp_path):
    base = _rgb()
    Image.fromarray(base).save(tmp_path / "rgb.png")
    Image.fromarray(base).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([base, np.full(base.shape[:2], 128, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(base).convert("P").save(tmp_path / "pal.png")
    grey16 = (np.arange(60 * 90).reshape(60, 90) * 12).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.tif")
    for name in ("rgb.png", "grey.png", "rgba.png", "pal.png", "g16.tif"):
        image = read_image(tmp_path / name)
        assert image.shape == (60, 90, 3) and image.dtype == np.uint8, name
    assert np.array_equal(read_image(tmp_path / "rgb.png"), base)
    g16 = read_image(tmp_path / "g16.tif")[..., 0].astype(int)
    expected = np.round(grey16 / 65535 * 255).astype(int)
    assert np.abs(g16 - expected).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    base = _rgb(40, 100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    Image.fromarray(base).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "rot.jpg")
    assert image.shape == (100, 40, 3)
    assert image_size(tmp_path / "rot.jpg") == (40, 100)
    small, full = read_image_reduced(tmp_path / "rot.jpg", long_side=50)
    assert full == (40, 100) and small.shape == (50, 20, 3)


def test_reduced_read_matches_full_resize(tmp_path):
    yy, xx = np.mgrid[0:1600, 0:2400]
    smooth = np.dstack([(xx / 2400 * 255), (yy / 1600 * 255), ((xx + yy) / 4000 * 255)]).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    small, full = read_image_reduced(tmp_path / "big.jpg", long_side=600)
    assert full == (2400, 1600) and small.shape == (400, 600, 3)
    reference = np.asarray(Image.fromarray(read_image(tmp_path / "big.jpg")).resize((600, 400), Image.Resampling.BILINEAR))
    assert np.abs(small.astype(int) - reference.astype(int)).mean() < 3


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"this is not an image", "not an image")],
)
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as info:
        read_image(path)
    assert "bad.jpg" in str(info.value)


def test_truncated_and_missing(tmp_path):
    Image.fromarray(_rgb(200, 200)).save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="trunc.jpg"):
        read_image(tmp_path / "trunc.jpg")
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="no such directory"):
        list_images(tmp_path / "nodir")


def test_list_and_write_images(tmp_path):
    write_image(tmp_path / "b.png", _rgb())
    write_image(tmp_path / "a.jpg", _rgb())
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png"]
    with pytest.raises(ValueError, match="suffix"):
        write_image(tmp_path / "c.gif", _rgb())


def test_rle_round_trip_area_bbox():
    mask = np.zeros((50, 70), bool)
    mask[10:20, 30:45] = True
    mask[40, 5] = True
    encoded = rle.encode(mask)
    assert isinstance(encoded["counts"], str) and encoded["size"] == [50, 70]
    assert np.array_equal(rle.decode(encoded), mask)
    assert rle.area(encoded) == 151
    assert rle.bbox_xyxy(mask) == (5, 10, 45, 41)
    assert rle.bbox_xyxy(np.zeros((3, 3), bool)) == (0, 0, 0, 0)
    with pytest.raises(ValueError):
        rle.encode(np.zeros((2, 2, 2), bool))


def test_classes_and_palette_labels(tmp_path):
    classes = load_classes()
    assert classes.names[:6] == ("road", "white_marking", "yellow_marking", "guardrail", "crack_sealing", "traffic_cone")
    label = np.full((20, 30), 255, np.uint8)
    label[:10] = 1
    label[10:, :5] = 5
    write_label_png(tmp_path / "l.png", label, classes)
    assert np.array_equal(read_label_png(tmp_path / "l.png"), label)
    with Image.open(tmp_path / "l.png") as image:
        assert image.mode == "P" and image.getpalette()[3:6] == list(classes.colors[1])
    assert classes.colorize(label)[0, 0].tolist() == list(classes.colors[1])
    Image.fromarray(_rgb()).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette or greyscale"):
        read_label_png(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="unknown class"):
        classes.index("bridge")


def test_custom_classes_file_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("classes:\n  - {name: a, color: [1, 2, 3]}\n  - {name: b}\n")
    cs = load_classes(path)
    assert isinstance(cs, ClassSet) and cs.names == ("a", "b") and cs.colors[0] == (1, 2, 3)
    path.write_text("classes:\n  - {name: a}\n  - {name: a}\n")
    with pytest.raises(ValueError, match="unique"):
        load_classes(path)
    path.write_text("nothing: here\n")
    with pytest.raises(ValueError, match="classes:"):
        load_classes(path)


def test_bands_to_rgb_uint8_known_answers():
    """One converter for every raster source: grey expanded, extra bands dropped, 16-bit and float scaled."""
    from roadparse.io.images import bands_to_rgb_uint8

    grey16 = np.array([[0, 65535]], dtype=np.uint16)
    assert bands_to_rgb_uint8(grey16).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    four = np.zeros((1, 1, 4), dtype=np.uint8)
    four[..., :] = [1, 2, 3, 4]
    assert bands_to_rgb_uint8(four).tolist() == [[[1, 2, 3]]]
    floats = np.array([[[0.0], [np.nan], [2.0]]], dtype=np.float32)  # (1, 3, 1): scaled by the maximum
    assert bands_to_rgb_uint8(floats)[0, :, 0].tolist() == [0, 0, 255]
    two = np.stack([np.full((2, 2), 7), np.full((2, 2), 9)], axis=-1).astype(np.uint8)
    assert (bands_to_rgb_uint8(two) == 7).all()
