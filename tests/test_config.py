import pytest
import yaml

from roadparse.config import ConfigError, Settings, defaults_yaml, load_settings
from roadparse.models.mask_generators import masks_at_gsd
from roadparse.stages.roi import tile_pixels
from roadparse.units import area_cm2, area_px


def test_defaults_are_the_paper_values():
    s = Settings()
    assert s.roi.long_side == 1024 and s.roi.box_threshold == 0.35 and s.roi.text_threshold == 0.25
    assert s.roi.tile_size is None and tile_pixels(s.roi, 0.25) == (800, 0)  # 2 m at the paper's 0.25 cm/px
    assert s.masks.generator == "facebook/sam-vit-large" and s.masks.points_per_side == 16
    assert s.masks.min_mask_area is None and masks_at_gsd(s.masks, 0.25).min_mask_area == 3000
    assert s.embed.crop_size == 224 and s.embed.encoder == "facebook/dinov2-base" and s.embed.layers == [12]
    assert s.cluster.method == "spectral" and s.cluster.n_clusters == 20
    assert s.selftrain.scale_range == (512, 1024) and s.selftrain.crop_size == 512 and s.selftrain.flip
    assert s.selftrain.batch_size == 8 and s.selftrain.iterations == 80000


def test_yaml_overlay_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("masks:\n  min_mask_area: 2000\ncluster:\n  method: kmeans\n")
    s = load_settings(path, ["cluster.n_clusters=12", "embed.layers=[6, 12]"])
    assert s.masks.min_mask_area == 2000
    assert s.cluster.method == "kmeans" and s.cluster.n_clusters == 12
    assert s.embed.layers == [6, 12]
    assert s.masks.points_per_side == 16  # untouched defaults stay


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("masks:\n  min_mask_aera: 2000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "masks.min_mask_aera" in str(info.value) and "bad.yaml" in str(info.value)


def test_wrong_type_and_bad_literal(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cluster:\n  n_clusters: many\n  method: dbscan\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert "cluster.n_clusters" in text and "cluster.method" in text


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(path)
    with pytest.raises(ConfigError, match="section.key=value"):
        load_settings(None, ["novalue"])


def test_defaults_yaml_round_trips_and_is_commented():
    text = defaults_yaml()
    assert "# " in text and "min_mask_area_cm2: 187.5" in text and "min_mask_area: null" in text
    data = yaml.safe_load(text)
    assert Settings.model_validate(data) == Settings()


@pytest.mark.parametrize(
    ("gsd", "pixels", "tile_px", "scale", "sigma"),
    [(0.25, 3000, 800, 200.0, 0.5), (0.5, 750, 400, 200.0, 0.5), (1.0, 188, 200, 200.0, 0.5), (2.0, 47, 100, 200.0, 0.5)],
)
def test_physical_sizes_become_pixels_at_each_gsd(gsd, pixels, tile_px, scale, sigma):
    s = Settings()
    masks = masks_at_gsd(s.masks, gsd)
    assert masks.min_mask_area == pixels  # 187.5 cm² / gsd²
    # the Felzenszwalb scale and smoothing stay in pixels (measured: masks per m² within 2x, docs/benchmarks.md)
    assert masks.offline_scale == pytest.approx(scale) and masks.offline_sigma == pytest.approx(sigma)
    assert tile_pixels(s.roi, gsd) == (tile_px, 0)
    assert area_cm2(area_px(187.5, gsd), gsd) == pytest.approx(187.5)  # 2 m / gsd


def test_pixel_settings_win_over_physical_ones():
    s = load_settings(None, ["masks.min_mask_area=500", "masks.offline_scale=300", "roi.tile_size=256",
                             "roi.tile_overlap_m=0.5"])
    assert masks_at_gsd(s.masks, 2.0).min_mask_area == 500 and masks_at_gsd(s.masks, 2.0).offline_scale == 300
    assert tile_pixels(s.roi, 2.0) == (256, 25)
    cm2 = load_settings(None, ["masks.offline_min_size_cm2=25"]).masks
    assert masks_at_gsd(cm2, 0.5).offline_min_size == 100 and masks_at_gsd(cm2, 0.25).offline_min_size == 400
