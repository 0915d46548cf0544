"""Profiles: package files named by `profile:`, resolved under the file's own values; the demo's settings frozen."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from roadparse.config import (
    PROFILES,
    ConfigError,
    Settings,
    load_profile,
    load_settings,
    profile_text,
)

FROZEN = Path(__file__).parent / "data" / "demo_settings.json"
"""The demo profile's resolved settings when the profiles were split (demo.yaml = offline.yaml + synthetic GSD)."""


def _flat(data: dict, prefix: str = "") -> dict:
    flat: dict = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def test_demo_settings_are_the_frozen_ones():
    """The demo's numbers depend on its resolved settings: each must stay what it was, or be removed at its default."""
    frozen = json.loads(FROZEN.read_text())
    now = _flat(load_profile("demo").model_dump(mode="json"))
    defaults = _flat(Settings().model_dump(mode="json"))
    for key, value in frozen["settings"].items():
        if key in now:
            assert now[key] == value, f"demo setting {key} changed: {value!r} -> {now[key]!r}"
        else:  # a removed setting: the demo must not have changed it, or removing it changes what the demo does
            assert key not in frozen["set_by_the_profile"], f"demo setting {key} was removed but the demo set it to {value!r}"
    for key in now.keys() - frozen["settings"].keys():
        assert now[key] == defaults[key], f"new setting {key}: the demo sets it to {now[key]!r}, not its default"


def test_demo_file_names_the_offline_profile_and_the_package_demo_loads_the_same():
    demo = yaml.safe_load(profile_text("demo"))
    assert demo["profile"] == "offline"
    with resources.as_file(resources.files("roadparse.data").joinpath("demo.yaml")) as path:
        assert load_settings(path) == load_profile("demo")


def test_paper_profile_is_the_defaults():
    assert load_profile("paper") == Settings()


def test_offline_profile_needs_no_download():
    offline = load_profile("offline")
    assert offline.roi.mode == "offline" and offline.masks.generator == "felzenszwalb"
    assert offline.embed.encoder == "efficientnet-lite0" and offline.selftrain.encoder_weights == "efficientnet-lite0"
    assert offline.roi.gsd_cm is None and offline.predict.gsd_cm is None  # nothing of the synthetic data
    assert offline.roi.edge_rule == Settings().roi.edge_rule


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_are_commented_and_hold_no_history(name):
    text = profile_text(name)
    assert text.lstrip().startswith("#")
    for history in (r"\b(first|second|\w+th) round", r"README", r"\d %", r"->", r"\bvs\b"):
        assert not re.search(history, text), f"{name}.yaml matches {history!r}: profiles say what a setting does, not its history"


def test_file_values_win_over_the_profile_and_overrides_over_both(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("profile: offline\ncluster:\n  n_clusters: 12\n  colour_weight: 0.5\n")
    settings = load_settings(path, ["cluster.colour_weight=2"])
    assert settings.masks.generator == "felzenszwalb"  # from the profile
    assert settings.cluster.n_clusters == 12 and settings.cluster.colour_weight == 2.0
    assert load_settings(None, ["profile=offline"]).roi.mode == "offline"  # --set profile=...


def test_unknown_profile_is_an_error_naming_the_file_and_the_profiles(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("profile: fast\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'fast'.*paper, offline, demo"):
        load_settings(path)
