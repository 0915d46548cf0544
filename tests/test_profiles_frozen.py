"""The shipped profiles' effective settings are frozen: what decides each stage's outputs hashes as it did
before the experiment settings were removed (``config.REMOVED_KEYS``), so the demo's numbers stay the same
and the finished stages of existing work directories keep their fingerprints (they are not redone)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from pydantic import BaseModel

from roadparse.config import Settings, load_settings
from roadparse.workspace import stage_fingerprint

FROZEN = {
    "paper": {
        "run": "70ac5a4d0038a479", "roi": "c35c819493ae547b", "masks": "32cf6b40cb3730e2",
        "embed": "22bdcff69401bdb3", "cluster": "567efe8282fe88ca", "pseudolabel": "ea7a0e12cb95bb10",
        "selftrain": "485c0aa2f5332fd7", "predict": "7f9f487edea3d599", "evaluate": "ead4e8a28cf37718",
    },
    "demo": {
        "run": "70ac5a4d0038a479", "roi": "1372db81b847d9e9", "masks": "7446c020056a97d0",
        "embed": "eeca7ba9f01c6a3a", "cluster": "8169093587c1b1d8", "pseudolabel": "ea7a0e12cb95bb10",
        "selftrain": "5b9512a179d04ccf", "predict": "9d728d2fae2a380a", "evaluate": "ead4e8a28cf37718",
    },
}
"""Per profile and section, ``stage_fingerprint(section, identity, {})`` as computed by commit 3498a7c, before the
removal: the paper profile is the defaults, the demo profile ``roadparse/data/demo.yaml``. A change here changes
the demo's results and redoes the stages of existing work directories: only with a measured reason.

The masks sections differ from 3498a7c (paper 19b7d50c7ea495a4, demo 1bb972aa190a6c8d) for one: the offline
generator's Felzenszwalb scale and smoothing are pixels at every GSD (``offline_scale_cm2`` / ``offline_sigma_cm``
removed, docs/experiments.md), which changes its masks at every GSD but the demo's 0.25 cm/px (byte-identical
there), so a work directory's masks stage is redone once."""


def _profile(name: str) -> Settings:
    if name == "paper":
        return load_settings()
    with resources.as_file(resources.files("roadparse.data").joinpath("demo.yaml")) as path:
        return load_settings(path)


def _section_fingerprints(settings: Settings) -> dict[str, str]:
    return {name: stage_fingerprint(name, value, {}) for name, value in settings if isinstance(value, BaseModel)}


@pytest.mark.parametrize("profile", sorted(FROZEN))
def test_profiles_decide_every_stage_as_before(profile: str) -> None:
    settings = _profile(profile)
    found = _section_fingerprints(settings)
    changed = {name: getattr(settings, name).identity() for name in found if found[name] != FROZEN[profile].get(name)}
    assert not changed, f"the {profile} profile's effective settings changed in: {changed}"


def test_an_old_settings_file_keeps_the_fingerprints(tmp_path: Path) -> None:
    """A work directory's settings.yaml from before the removal (every removed key at the value all profiles
    used) resumes with the same fingerprints; one that had turned a removed option on redoes that stage."""
    old = tmp_path / "settings.yaml"
    old.write_text(
        "masks:\n  offline_lines: false\n  offline_line_width_cm: 6.0\n  merge_across_tiles: false\n"
        "  merge_border_iou: 0.5\n  offline_segments: 400\n  offline_merge: 20.0\n"
        "embed:\n  final_norm: false\ncluster:\n  pca_dim: null\n  suggest_split_purity: null\n"
        "selftrain:\n  crop_sampling: uniform\n  class_weights: none\n  ohem_fraction: null\n"
        "  scale_factor_range: null\n  schedule: poly\n  rare_class_temperature: 0.01\n  rare_class_share: 0.5\n"
    )
    assert _section_fingerprints(load_settings(old)) == FROZEN["paper"]  # masks: redone once, see FROZEN
    # masks recorded with merge_across_tiles on (3498a7c: 26ebea65a9754d5e) now fingerprint as without it: redone
    old.write_text("masks:\n  merge_across_tiles: true\n")
    assert _section_fingerprints(load_settings(old))["masks"] == FROZEN["paper"]["masks"] != "26ebea65a9754d5e"
