"""``roadparse init``: read a folder of frames, pick a profile, write a short commented config.

:func:`init` looks at every frame (size, GSD and where it comes from, whether it was cropped
or resized after the camera wrote its EXIF), checks whether the paper's models are in the
local Hugging Face cache, and writes a YAML holding only what differs from the chosen profile:
the profile, the frames and work folders, and what the GSD requires. Its rules:

- **profile** (``auto``): ``paper`` when every model the paper profile names is in the local
  cache (:mod:`roadparse.models.hub_cache`), else ``offline``.
- **GSD**: frames with a GeoTIFF transform or drone EXIF carry their own. When none does,
  ``roi.gsd_cm`` is set to the paper's 0.25 cm/px (:data:`ASSUMED_GSD_CM`) and the report and
  the file say so loudly: tile sizes and mask areas depend on it. When only some do, the others
  get the median of theirs. A GSD from EXIF that rests on an estimated height, focal length or
  sensor is written out too, marked as an estimate to check.
- **working GSD**: frames more than 10 % apart are resampled to the coarsest of them
  (``roi.target_gsd_cm``), so every tile has one scale and nothing is upsampled (upsampling
  coarse frames gave worse pseudo-labels, see the docs' Experiments).
- **tiles**: the profile's 2 m tiles while they are at least :data:`MIN_TILE_PX` px (2 m at
  2 cm/px, the coarsest GSD the physical tiles were measured at); coarser, ``roi.tile_size``
  :data:`COARSE_TILE_PX` px, since SAM and self-training resize tiles to 1024 px and a
  512–1024 px short side, and smaller tiles would be mostly enlarged.
"""

from __future__ import annotations

import logging
import statistics
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from roadparse.config import PROFILE_KEY, Settings, load_profile, load_settings
from roadparse.io import geo
from roadparse.io.gsd import DEFAULT_GSD_CM, frame_gsd
from roadparse.io.images import ImageReadError, image_size, scan_images
from roadparse.models.hub_cache import CachedModel, find_model, hub_cache_dir
from roadparse.units import length_px
from roadparse.workspace import atomic_write_text

log = logging.getLogger(__name__)

ProfileChoice = Literal["auto", "paper", "offline"]
ASSUMED_GSD_CM = DEFAULT_GSD_CM
"""GSD written for frames that carry none: the paper's 0.25 cm/px, at which the physical defaults equal its pixel values."""
MIN_TILE_PX = 100
"""Physical tiles (``roi.tile_size_m``) are kept down to this many pixels: 2 m at 2 cm/px."""
COARSE_TILE_PX = 512
"""Tile side in pixels set for frames coarser than that."""
SAME_GSD = 1.10
"""Frames whose GSDs differ by less than this ratio share one working GSD without resampling."""
_UNSURE = ("relative_altitude_m", "focal_mm", "sensor_width_mm")
MAX_NOTES = 10


@dataclass(frozen=True)
class FrameInfo:
    """What :func:`init` found in one frame."""

    path: Path
    size: tuple[int, int]
    """(width, height) in pixels, upright"""
    gsd_cm: float | None
    """cm per pixel from the file (None: it carries none)"""
    gsd_source: str
    """``geotiff``, ``exif`` or ``none``"""
    estimated: tuple[str, ...] = ()
    """EXIF values the GSD rests on that were estimated (e.g. ``relative_altitude_m``)"""
    size_change: str = "unchanged"
    """against the image the camera wrote (EXIF): unchanged, cropped, resized or unknown"""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Choice:
    """One setting :func:`init` writes, and why."""

    key: str
    """dotted setting name, e.g. ``roi.tile_size``"""
    value: Any
    why: str
    loud: bool = False
    """an assumption the user should check (said first in the report and marked in the file)"""


@dataclass(frozen=True)
class InitReport:
    """What :func:`init` found and chose; ``str()`` is the summary the command prints."""

    frames: tuple[FrameInfo, ...]
    gsd_cm: float
    """the working GSD the run tiles at (cm/px)"""
    gsd_source: str
    """where the frames' GSD came from: ``geotiff``, ``exif``, ``none`` (assumed), or ``mixed (...)``"""
    profile: str
    why: str
    """why this profile"""
    models: tuple[CachedModel, ...]
    """the paper profile's models and whether each is in the local cache"""
    choices: tuple[Choice, ...]
    """the settings written besides the profile and the folders"""
    out: Path | None
    workdir: Path
    notes: tuple[str, ...] = field(default=())

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """Returns each frame's (width, height)."""
        return [frame.size for frame in self.frames]

    @property
    def cropped(self) -> list[str]:
        """Returns the names of the frames cropped or resized after the camera wrote their EXIF."""
        return [f.path.name for f in self.frames if f.size_change != "unchanged"]

    def __str__(self) -> str:
        folder = self.frames[0].path.parent if self.frames else ""
        lines = [f"{len(self.frames)} frame(s) in {folder}, {_size_range(self.sizes)}"]
        source = "no frame: assumed" if self.gsd_source == "none" else self.gsd_source
        lines.append(f"GSD: {self.gsd_cm:.3g} cm/px working, from {source}")
        changed = [f for f in self.frames if f.size_change != "unchanged"]
        for kind in ("cropped", "resized", "unknown"):
            names = [f.path.name for f in changed if f.size_change == kind]
            if names:
                what = {"cropped": "cropped after capture (GSD of the capture)",
                        "resized": "resized after capture (GSD scaled)",
                        "unknown": "neither cropped nor resized from their EXIF size (own width used)"}[kind]
                lines.append(f"  {len(names)} {what}: {_names(names)}")
        lines.append(f"profile: {self.profile} — {self.why}")
        for choice in sorted(self.choices, key=lambda c: not c.loud):
            mark = "CHECK: " if choice.loud else ""
            lines.append(f"  {mark}{choice.key} = {_scalar(choice.value)}: {choice.why}")
        lines += [f"  note: {note}" for note in self.notes]
        if self.out is not None:
            lines.append(f"wrote {self.out}; next: roadparse run {self.out}")
        return "\n".join(lines)


def _size_range(sizes: list[tuple[int, int]]) -> str:
    if not sizes:
        return "no sizes"
    low, high = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
    return f"{low[0]}x{low[1]} px" if low == high else f"{low[0]}x{low[1]} to {high[0]}x{high[1]} px"


def _names(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def read_frame(path: Path) -> FrameInfo:
    """Returns a frame's size and its own GSD (GeoTIFF transform, drone EXIF, or none).

    Raises:
        ImageReadError: the file is not a readable image.
    """
    info = geo.read_geo_info(path) if path.suffix.lower() in geo.GEO_SUFFIXES and geo.rasterio_available() else None
    size = (info.width, info.height) if info is not None else image_size(path)
    gsd = frame_gsd(path, info, None, log_notes=False)
    if gsd.source == "default":  # nothing in the file: frame_gsd's note says to set roi.gsd_cm, which init does
        return FrameInfo(path, size, None, "none")
    return FrameInfo(path, size, gsd.cm, gsd.source, gsd.estimated, gsd.size_change, gsd.notes)


def paper_models(settings: Settings) -> list[tuple[str, str, bool]]:
    """Returns (setting, model id, loaded with a processor) for every hub model ``settings`` would load."""
    from roadparse.models.encoders import EFFICIENTNET_LITE0
    from roadparse.models.mask_generators import OFFLINE_METHODS

    models: list[tuple[str, str, bool]] = []
    if settings.roi.mode == "detector":
        models.append(("roi.detector", settings.roi.detector, True))
        if settings.roi.filter:
            models.append(("roi.filter", settings.roi.filter, True))
    if settings.masks.generator not in OFFLINE_METHODS and not settings.masks.generator.endswith((".pth", ".pt")):
        models.append(("masks.generator", settings.masks.generator, False))
    if settings.embed.encoder.lower() != EFFICIENTNET_LITE0:
        models.append(("embed.encoder", settings.embed.encoder, False))
    if settings.selftrain.architecture == "segformer" and settings.selftrain.pretrained:
        models.append(("selftrain.backbone", settings.selftrain.backbone, False))
    return models


def choose_profile(requested: ProfileChoice) -> tuple[str, str, tuple[CachedModel, ...]]:
    """Returns (profile, why, the paper models' cache status) for ``requested`` (auto: paper when all are cached)."""
    if requested not in ("auto", "paper", "offline"):
        raise ValueError(f"unknown profile {requested!r}; choose auto, paper or offline")
    cache = hub_cache_dir()
    models = tuple(find_model(model, processor=processor, cache_dir=cache) for _, model, processor in paper_models(load_profile("paper")))
    missing = [m.model for m in models if not m.cached]
    if requested == "offline":
        return "offline", "asked for (--profile offline): offline backends, no downloaded weights", models
    if not missing:
        return "paper", f"the paper's {len(models)} models are in the local Hugging Face cache ({cache})", models
    absent = "none of the paper's models is" if len(missing) == len(models) else f"{', '.join(missing)} not"
    fetch = f"fetch {', '.join(missing)} where there is internet (`hf download ID`) into {cache}"
    if requested == "paper":
        return "paper", (f"asked for (--profile paper), BUT {absent} in the local Hugging Face cache: the run stops "
                         f"where it loads them; {fetch}"), models
    return "offline", (f"{absent} in the local Hugging Face cache ({cache}): offline backends need no download. "
                       f"For the paper profile, {fetch} and run `roadparse init` again"), models


def _is_sure(frame: FrameInfo) -> bool:
    return frame.gsd_cm is not None and not set(frame.estimated) & set(_UNSURE)


def _gsd_for_the_rest(frames: Sequence[FrameInfo]) -> Choice | None:
    """Returns the ``roi.gsd_cm`` for frames without a GSD of their own (or one resting on estimates), None if all have one."""
    sure = [f.gsd_cm for f in frames if f.gsd_cm is not None and _is_sure(f)]
    rest = [f for f in frames if not _is_sure(f)]
    if not rest:
        return None
    unsure = [f for f in rest if f.gsd_cm is not None]
    guessed = sorted({name for f in unsure for name in f.estimated if name in _UNSURE})
    parts = [f"{len(rest) - len(unsure)} frame(s) carry no GSD"] if len(unsure) < len(rest) else []
    if unsure:
        parts.append(f"the EXIF GSD of {len(unsure)} frame(s) rests on an assumed {', '.join(guessed)}")
    which = " and ".join(parts)
    if sure:
        return Choice("roi.gsd_cm", round(statistics.median(sure), 4), loud=True, why=(
            f"ASSUMED: {which} ({_names([f.path.name for f in rest])}): they get the median GSD of the {len(sure)} frame(s) "
            "that carry one; set their real GSD here"))
    if unsure:
        return Choice("roi.gsd_cm", round(statistics.median(f.gsd_cm for f in unsure if f.gsd_cm is not None), 4), loud=True, why=(
            f"ESTIMATED: {which}; set the real GSD here"))
    return Choice("roi.gsd_cm", ASSUMED_GSD_CM, loud=True, why=(
        f"ASSUMED: no frame carries a GSD (no GeoTIFF transform, no drone EXIF), so the paper's {ASSUMED_GSD_CM} cm/px "
        "is used; tile sizes and mask areas follow it: set your frames' real GSD here (flight height x sensor "
        "width / (focal length x image width))"))


def choose_gsd_settings(frames: Sequence[FrameInfo], profile: Settings) -> tuple[float, str, list[Choice], list[str]]:
    """Returns (working GSD, its source, the settings the GSD requires, notes) for ``frames`` under ``profile``."""
    notes: list[str] = []
    counts = Counter(f.gsd_source for f in frames)
    source = next(iter(counts)) if len(counts) == 1 else "mixed (" + ", ".join(f"{k} {n}" for k, n in counts.items()) + ")"
    rest = _gsd_for_the_rest(frames)
    choices = [rest] if rest is not None else []
    values = [f.gsd_cm if f.gsd_cm is not None and _is_sure(f) else float(rest.value if rest else ASSUMED_GSD_CM) for f in frames]
    working = statistics.median(values)
    if max(values) / min(values) >= SAME_GSD:
        working = max(values)
        choices.append(Choice("roi.target_gsd_cm", round(working, 4), why=(
            f"the frames range from {min(values):.3g} to {max(values):.3g} cm/px: every frame is resampled to the "
            "coarsest, so that all tiles share one scale and nothing is upsampled")))
    tile_px = profile.roi.tile_size or round(length_px(profile.roi.tile_size_m * 100, working))
    if profile.roi.tile_size is None and tile_px < MIN_TILE_PX:
        choices.append(Choice("roi.tile_size", COARSE_TILE_PX, why=(
            f"a {profile.roi.tile_size_m:g} m tile would be {tile_px} px at {working:.3g} cm/px; {COARSE_TILE_PX} px tiles "
            f"({COARSE_TILE_PX * working / 100:.3g} m) instead, as the models resize tiles to 512-1024 px")))
        if profile.masks.generator == "felzenszwalb":
            notes.append(
                f"the offline mask generator's physical sizes were measured down to 2 cm/px; at {working:.3g} cm/px it can "
                "propose thousands of small masks per tile: if the masks stage reports that many, set masks.min_mask_area, "
                "masks.offline_scale and masks.offline_min_size in pixels (see Your own frames in the docs)")
    return working, source, choices, notes


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width=100 - len(indent))]


def _render(frames: Path, workdir: Path, profile: str, why: str, choices: Sequence[Choice], count: int) -> str:
    """Returns the commented YAML: the profile, the run folders and the choices, grouped by section."""
    lines = [
        f"# roadparse settings for the {count} frame(s) in {frames}, written by `roadparse init`.",
        f"# Only what differs from the {profile!r} profile: `roadparse config --config FILE` prints every setting.",
        "",
        *_comment(f"{profile}: {why}", ""),
        f"{PROFILE_KEY}: {profile}",
        "run:",
        f"  frames: {_scalar(str(frames))}",
        f"  workdir: {_scalar(str(workdir))}  # every stage writes here; `roadparse run` resumes from it",
    ]
    sections: dict[str, list[Choice]] = {}
    for choice in choices:
        sections.setdefault(choice.key.split(".")[0], []).append(choice)
    for section, items in sections.items():
        lines.append(f"{section}:")
        for choice in items:
            lines += _comment(("CHECK: " if choice.loud else "") + choice.why, "  ")
            lines.append(f"  {choice.key.split('.', 1)[1]}: {_scalar(choice.value)}")
    return "\n".join(lines) + "\n"


def init(
    frames: str | Path, out: str | Path | None = "roadparse.yaml", profile: ProfileChoice = "auto", *, overwrite: bool = False,
) -> InitReport:
    """Returns what the frames hold and the settings chosen for them, and writes those settings to ``out``.

    Args:
        frames: a folder of frames (JPEG, PNG, TIFF/GeoTIFF) or one frame.
        out: the YAML to write (None: write nothing); the run's work folder is ``<out stem>-run`` beside it.
        profile: ``auto`` (paper when its models are in the local Hugging Face cache, else offline),
            ``paper`` or ``offline``.
        overwrite: replace an existing ``out``.

    Raises:
        ValueError: no readable frame, an unknown profile, or ``out`` exists and ``overwrite`` is False.
    """
    frames_dir = Path(frames).expanduser().resolve()
    out_path = Path(out).expanduser().resolve() if out is not None else None
    if out_path is not None and out_path.exists() and not overwrite:
        raise ValueError(f"{out_path} exists; give another --out or --force to replace it")
    listing = scan_images(frames_dir)
    infos: list[FrameInfo] = []
    notes: list[str] = [f"{path.name}: skipped: {why}" for path, why in listing.skipped.items()]
    for path in listing.images:
        try:
            infos.append(read_frame(path))
        except ImageReadError as exc:
            notes.append(f"skipped: {exc}")
    if not infos:
        raise ValueError(f"{frames_dir}: no readable frames (.jpg, .png, .tif)")
    chosen, why, models = choose_profile(profile)
    working, source, choices, gsd_notes = choose_gsd_settings(infos, load_profile(chosen))
    frame_notes = [note for info in infos for note in info.notes if "with estimated" not in note]  # those are a Choice
    notes += frame_notes[:MAX_NOTES] + ([f"and {len(frame_notes) - MAX_NOTES} more notes"] if len(frame_notes) > MAX_NOTES else [])
    notes += gsd_notes
    base = out_path or Path.cwd() / "roadparse.yaml"
    workdir = base.with_name(f"{base.stem}-run")
    report = InitReport(tuple(infos), working, source, chosen, why, models, tuple(choices), out_path, workdir, tuple(notes))
    if out_path is not None:
        text = _render(frames_dir, workdir, chosen, why, choices, len(infos))
        atomic_write_text(out_path, text)
        load_settings(out_path)  # what was written loads
    return report
