"""Typed settings for every stage, with the COMRP paper's values as defaults.

Settings are resolved as: defaults ⊕ a profile ⊕ one YAML file ⊕ ``--set key=value`` overrides.
A profile is a package file (``roadparse/data/{paper,offline,demo}.yaml``, :data:`PROFILES`)
named by the file's top-level key ``profile:`` (or ``--set profile=NAME``); the file's own
values win over it. Unknown or mistyped keys are errors that name the key and the file.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from roadparse import yamlstrict
from roadparse.units import length_px

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration file or override that cannot be used."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    execution_only: ClassVar[frozenset[str]] = frozenset()
    """Fields that change how a stage runs (device, batching), never what it writes: left out of
    the stage's fingerprint, so changing them resumes a run instead of redoing it."""

    introduced: ClassVar[dict[str, Any]] = {}
    """Settings added after stages were first fingerprinted, with the value that gives the earlier outputs: left out
    of :meth:`identity` while they have it, so that an upgrade does not redo finished stages."""

    retired: ClassVar[dict[str, Any]] = {}
    """Settings removed from this section (:data:`REMOVED_KEYS`) with the one value every profile gave them
    (JSON form): put back into :meth:`identity`, so that stages finished before a removal keep their fingerprint."""

    def identity(self) -> dict[str, Any]:
        """Returns the settings that decide a stage's outputs (JSON-ready), for fingerprints and manifests."""
        return {**self.retired, **self.model_dump(mode="json", exclude=self._not_identity())}

    def _not_identity(self) -> set[str]:
        """Returns the fields left out of :meth:`identity`: execution-only ones, and :attr:`introduced` ones at the
        value that gives the earlier outputs."""
        return set(self.execution_only) | {name for name, value in self.introduced.items() if getattr(self, name) == value}


REFERENCE_GSD_CM = 0.25
"""The paper's ground sampling distance (cm/px): physical defaults equal its pixel values at this GSD."""


class RoiSettings(_Section):
    """Stage 1: road region of interest (paper §3.1, §4.1.2)."""

    execution_only: ClassVar[frozenset[str]] = frozenset({"device"})

    mode: Literal["detector", "offline", "none"] = Field(
        "detector",
        description="detector: Grounding DINO + CLIP filter (paper); offline: asphalt colour/texture "
        "finder needing no weights; none: tile the whole frame",
    )
    long_side: int = Field(1024, gt=0, description="long side of the downscaled frame fed to the detector (paper: 1024)")
    detector: str = Field("IDEA-Research/grounding-dino-tiny", description="open-vocabulary detector: Hugging Face id or local path")
    prompt: str = Field("road. highway.", description="detector text prompt (paper: 'road, highway')")
    box_threshold: float = Field(0.35, ge=0, le=1, description="detector box threshold (paper: 0.35)")
    text_threshold: float = Field(0.25, ge=0, le=1, description="detector text threshold (paper: 0.25)")
    filter: str | None = Field("openai/clip-vit-base-patch32", description="zero-shot filter model (CLIP/SigLIP id or path); null disables the filter")
    filter_labels: list[str] = Field(default_factory=lambda: ["road", "highway", "other"], description="zero-shot labels for the filter (paper: road, highway, other)")
    reject_labels: list[str] = Field(default_factory=lambda: ["other"], description="boxes whose best filter label is one of these are dropped")
    merge_iou: float = Field(0.0, ge=0, le=1, description="kept boxes overlapping more than this IoU (0: any overlap) are merged into one")
    gsd_cm: float | None = Field(
        None, gt=0,
        description="ground sampling distance (cm/px) of frames that carry none: used when a frame has no GeoTIFF "
        "transform and no drone EXIF/XMP; null: the paper's 0.25 with a warning per frame",
    )
    target_gsd_cm: float | None = Field(
        None, gt=0,
        description="resample every frame to this GSD (cm/px) when tiling, so models see objects at the size they were "
        "tuned for; null: tiles at the frame's own resolution (paper)",
    )
    tile_size_m: float = Field(2.0, gt=0, description="tile side in metres (paper: 800 px at 0.25 cm/px = 2 m)")
    tile_size: int | None = Field(
        None, gt=0, description="tile side in working pixels; overrides tile_size_m (null: tile_size_m at the working GSD, 800 px at 0.25 cm/px)"
    )
    tile_overlap_m: float = Field(0.0, ge=0, description="overlap between neighbouring tiles in metres")
    tile_overlap: int | None = Field(None, ge=0, description="overlap between neighbouring tiles in pixels; overrides tile_overlap_m")
    edge_rule: Literal["grow", "shift", "pad", "drop"] = Field(
        "grow",
        description="partial edge tiles: grow (whole tiles edge to edge, centred on the box inside the frame, padded only "
        "where the frame is smaller: no pixel tiled twice), shift inward (tiles overlap), pad past the box, or drop",
    )
    device: str = Field("auto", description="torch device: auto, cpu, cuda, cuda:1 ...")


class MasksSettings(_Section):
    """Stage 2: automatic mask generation (paper §3.2.1, §4.2)."""

    execution_only: ClassVar[frozenset[str]] = frozenset({"points_per_batch", "image_batch", "device"})
    introduced: ClassVar[dict[str, Any]] = {"encoder_dtype": "float32"}
    retired: ClassVar[dict[str, Any]] = {
        "offline_lines": False, "offline_line_width_cm": 6.0, "offline_line_width": None, "offline_line_min_length_cm": 20.0,
        "offline_line_min_length": None, "offline_line_threshold": 4.0, "merge_across_tiles": False,
        "merge_border_iou": 0.5, "merge_duplicate_iou": 0.5, "offline_segments": 400, "offline_merge": 20.0,
    }

    generator: str = Field(
        "facebook/sam-vit-large",
        description="SAM / SAM-HQ / SAM 2 id or local folder, official SAM .pth (paper: SAM ViT-L), or 'felzenszwalb' for the offline generator",
    )
    points_per_side: int = Field(16, gt=0, description="point grid per side (paper: 16x16)")
    points_per_batch: int = Field(256, gt=0, description="points decoded per batch")
    pred_iou_thresh: float = Field(0.88, description="SAM AMG predicted-IoU threshold (SAM default)")
    stability_score_thresh: float = Field(0.95, description="SAM AMG stability-score threshold (SAM default)")
    stability_score_offset: float = Field(1.0, description="SAM AMG stability-score offset (SAM default)")
    mask_threshold: float = Field(0.0, description="logit threshold for binarising masks (SAM default)")
    box_nms_thresh: float = Field(0.7, ge=0, le=1, description="box NMS IoU threshold within a crop (SAM default)")
    crop_n_layers: int = Field(0, ge=0, description="extra crop layers (SAM default 0)")
    crop_nms_thresh: float = Field(0.7, ge=0, le=1, description="box NMS between crops (SAM default)")
    crop_overlap_ratio: float = Field(512 / 1500, ge=0, lt=1, description="overlap of crop layers (SAM default)")
    crop_n_points_downscale_factor: int = Field(1, ge=1, description="point grid downscale per crop layer (SAM default)")
    min_mask_area_cm2: float = Field(
        187.5, ge=0, description="drop masks under this ground area in cm² (paper: 3000 px at 0.25 cm/px = 187.5 cm²)"
    )
    min_mask_area: int | None = Field(
        None, ge=0, description="drop masks under this many pixels; overrides min_mask_area_cm2 (null: from cm², 3000 px at 0.25 cm/px)"
    )
    offline_scale: float = Field(
        200.0, gt=0,
        description="offline generator: Felzenszwalb scale in pixels, the same at every GSD (larger: fewer, bigger segments). "
        "Held in pixels, not converted by GSD²: masks per m² then stay within 2x from 0.25 to 3 cm/px (docs/benchmarks.md)",
    )
    offline_sigma: float = Field(0.5, ge=0, description="offline generator: Gaussian smoothing before segmentation in pixels, the same at every GSD")
    offline_min_size_cm2: float | None = Field(
        None, gt=0, description="offline 'felzenszwalb': smaller components (cm²) are merged into a neighbour (null: the mask area filter)"
    )
    offline_min_size: int | None = Field(
        None, ge=1, description="offline 'felzenszwalb': the same in pixels; overrides offline_min_size_cm2"
    )
    encoder_dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="SAM's image encoder: float32, or bfloat16 autocast (SAM ViT-L's encoder 1.56x faster on a 2-core CPU "
        "with AVX512-BF16, embedding cosine 0.9999 with float32's; slower on CPUs without AVX512-BF16/AMX)",
    )
    upscale_dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="SAM decoder's mask upscaling after its first convolution: float32 (equal to SAM) or bfloat16 "
        "(its matmuls ~2x faster on CPUs with AVX512-BF16/AMX and on GPUs, decoding ~10 % faster here; logits differ "
        "by ~1 %, masks by a few boundary pixels)",
    )
    image_batch: int = Field(1, gt=0, description="tiles given to the generator at once (SAM: image embeddings in one batch; worth 4-8 on a GPU)")
    device: str = Field("auto", description="torch device: auto, cpu, cuda ...")


class EmbedSettings(_Section):
    """Stage 3: mask crop embeddings (paper §3.2.2, §4.3)."""

    execution_only: ClassVar[frozenset[str]] = frozenset({"batch_size", "device"})
    statistics_only: ClassVar[frozenset[str]] = frozenset({"surround_cm"})
    """Settings of the per-mask statistics alone (no encoder involved): left out of the embed fingerprint, so
    changing them (or upgrading from a version without them) recomputes `embed/surround.npy` and `embed/texture.npy`
    without re-encoding."""

    retired: ClassVar[dict[str, Any]] = {"final_norm": False}

    def _not_identity(self) -> set[str]:
        """Returns the fields left out of :meth:`identity`: the base ones and the statistics-only ones."""
        return super()._not_identity() | set(self.statistics_only)

    encoder: str = Field("facebook/dinov2-base", description="DINOv2/DINOv3/ResNet id or local path, or 'efficientnet-lite0' (offline, real ImageNet weights)")
    layers: list[int] = Field(
        default_factory=lambda: [12],
        description="hidden layers (ViT: CLS of layer 1..12) or stages (ResNet: 1 stem + 2..5 residual stages; "
        "efficientnet-lite0: 1..7 MBConv stages, 8 = 1280-d head, suggested 7) to keep; several in one pass",
    )
    crop_size: int = Field(224, gt=0, description="crop resize side (paper: 224)")
    mask_background: bool = Field(False, description="grey out crop pixels outside the mask")
    colour_normalise: Literal["none", "frame"] = Field(
        "none",
        description="frame: before crops and colour statistics, scale each frame's channels so that their medians "
        "(mostly road surface) equal the run's mean median grey, removing per-frame white balance and exposure; "
        "none: pixels as they are (paper)",
    )
    surround_cm: float = Field(
        25.0, gt=0,
        description="width in cm of the ring around each mask whose CIELab colour statistics are recorded as its surround "
        "(`cluster.contrast_weight`)",
    )
    batch_size: int = Field(32, gt=0, description="crops per forward pass")
    device: str = Field("auto", description="torch device")


class ClusterSettings(_Section):
    """Stage 4: over-clustering of mask embeddings (paper §3.2.3, §4.4)."""

    execution_only: ClassVar[frozenset[str]] = frozenset({"suggest_unseen"})
    """``suggest_unseen`` shapes only the suggested merge map, rewritten after every run: left out of the
    fingerprint so that setting it never re-clusters (nor repaints or retrains downstream)."""
    retired: ClassVar[dict[str, Any]] = {"pca_dim": None}

    method: Literal["spectral", "kmeans", "kmedoids", "agglomerative"] = Field("spectral", description="clustering method (paper: spectral)")
    n_clusters: int = Field(20, ge=2, description="over-clustering k (paper: 20)")
    layer: int = Field(12, description="which embedded layer to cluster (must be among embed.layers)")
    normalize: bool = Field(True, description="L2-normalise features before clustering")
    colour_weight: float = Field(0.0, ge=0, description="append the masks' CIELab colour statistics (mean, std) with this weight to the L2-normalised features; 0: off (paper). Helps ImageNet encoders, which embed white and yellow paint alike")
    shape_weight: float = Field(
        0.0, ge=0,
        description="append the masks' physical shape (log area in cm², log width in cm, elongation; standardised) with this "
        "weight; 0: off (paper). Sizes in cm do not change with the GSD, crops' pixels do",
    )
    contrast_weight: float = Field(
        0.0, ge=0,
        description="append each mask's colour contrast with its surround (CIELab mean and std of the mask minus those of a "
        "ring `embed.surround_cm` wide around it) with this weight; 0: off (paper). Tells apart things of one colour on "
        "different ground (white paint on asphalt, a bright rail beside a kerb)",
    )
    texture_weight: float = Field(
        0.0, ge=0,
        description="append each mask's texture at physical scales (lightness band-pass energy between 0.5, 1, 2, 4 and 8 cm, "
        "relative to its mean lightness, and orientation coherence; standardised) with this weight; 0: off (paper). Tells "
        "apart surfaces of one colour (asphalt, concrete pavers, lawn) at any GSD",
    )
    n_neighbors: int = Field(15, ge=2, description="spectral: neighbours in the kNN affinity graph")
    sample_size: int = Field(20000, ge=100, description="spectral/agglomerative/kmedoids: fit on at most this many points, extend to the rest")
    gallery_size: int = Field(24, ge=1, description="crops per cluster in the gallery")
    min_purity: float = Field(0.5, ge=0, le=1, description="merge-map suggestion: clusters whose majority ground-truth class covers less than this share of their pixels are 'discard' (mixed)")
    suggest_unseen: Literal["discard", "nearest"] = Field(
        "discard",
        description="merge-map suggestion by majority vote, for a cluster with no labelled pixel: 'discard' it, or name it after "
        "its 'nearest' named cluster (cosine of the clusters' mean feature rows; noted in the suggested map)",
    )
    seed: int = Field(0, description="random seed")


class PseudolabelSettings(_Section):
    """Stage 4b: masks painted with class ids."""

    merge_map: str = Field("merge_map.yaml", description="merge map file (cluster -> class or discard), relative to the work dir")


class SelftrainSettings(_Section):
    """Stage 5: teacher-student self-training (paper §3.3, §4.5, Table 6)."""

    execution_only: ClassVar[frozenset[str]] = frozenset({"device", "num_workers", "checkpoint_every", "cache_mb"})
    retired: ClassVar[dict[str, Any]] = {
        "crop_sampling": "uniform", "rare_class_temperature": 0.01, "rare_class_share": 0.5, "class_weights": "none",
        "ohem_fraction": None, "scale_factor_range": None, "schedule": "poly",
    }

    architecture: Literal["segformer", "deeplabv3plus"] = Field("segformer", description="segmentation network")
    backbone: str = Field("nvidia/mit-b0", description="SegFormer id/path, or a DeepLabV3+ encoder name (e.g. resnet50)")
    pretrained: bool = Field(True, description="load backbone weights (false: build from config, random init)")
    encoder_weights: str | None = Field(None, description="DeepLabV3+ with pretrained: local file of the encoder's ImageNet state dict (no download here)")
    scale_range: tuple[int, int] = Field(
        (512, 1024),
        description="random resize: the short side an 800-px tile is resized to, sampled in this range (paper: 512-1024); "
        "tiles of other sizes by the same factors (a 200-px tile to 128-256), so objects train at the pixel size they "
        "are predicted at",
    )
    crop_size: int = Field(512, gt=0, description="random crop side (paper: 512)")
    flip: bool = Field(True, description="random horizontal flip (paper: yes)")
    optimizer: Literal["auto", "sgd", "adamw"] = Field("auto", description="auto: SGD for DeepLabV3+, AdamW for SegFormer (paper Table 6)")
    lr: float | None = Field(None, description="learning rate; null: 0.001 (SGD) / 6e-5 (AdamW) as in the paper")
    weight_decay: float | None = Field(None, description="null: 5e-4 (SGD) / 0.01 (AdamW) as in the paper")
    momentum: float = Field(0.9, description="SGD momentum (paper: 0.9)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas (paper: 0.9, 0.999)")
    batch_size: int = Field(8, gt=0, description="batch size (paper: 8)")
    iterations: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        80000,
        description="iterations per round (paper: 80000); 'auto': from the data, see budget_crops_per_tile, "
        "budget_crops_per_class, budget_min_iterations, budget_max_iterations",
    )
    budget_crops_per_tile: float = Field(
        24.0, gt=0, description="iterations 'auto': training crops per 800x800-px tile and round, smaller tiles counted "
        "by their area (the demo's 300 iterations x 4 on 51 tiles)"
    )
    budget_crops_per_class: float = Field(
        150.0, ge=0, description="iterations 'auto': at least this many crops per class and round (small sets with many classes)"
    )
    budget_min_iterations: int = Field(100, gt=0, description="iterations 'auto': lower bound")
    budget_max_iterations: int = Field(80000, gt=0, description="iterations 'auto': upper bound (paper: 80000)")
    checkpoint_every: int = Field(1000, gt=0, description="save a checkpoint every N iterations")
    rounds: int = Field(2, ge=1, description="teacher + students: 1 = teacher only; paper: 2")
    relabel_confidence: float = Field(
        0.0, ge=0, lt=1,
        description="the next round trains only on relabelled pixels whose class probability reaches this (others "
        "unlabelled); 0: every pixel (paper). The round's own labels and scores keep every pixel",
    )
    relabel_class_quantile: float | None = Field(
        None, gt=0, lt=1,
        description="with relabel_confidence: each class's threshold is at most this quantile of the confidence of the "
        "pixels predicted as that class, so relabelling keeps at least (1 - q) of every class; null: one global threshold",
    )
    student_init: Literal["pretrained", "teacher"] = Field(
        "pretrained",
        description="students start from the pretrained backbone (paper) or from the previous round's weights "
        "(teacher: fine-tunes on the cleaner labels; for short CPU rounds)",
    )
    min_improvement: float = Field(
        0.001, ge=0,
        description="stop when a round's dev mIoU beats the best so far (the pseudo-labels are round 0) by less than this "
        "(fraction: 0.001 = 0.1 point); without dev labels, when successive rounds' labels agree on >= 1 - this",
    )
    amp: bool = Field(True, description="mixed precision on GPU")
    num_workers: int = Field(0, ge=0, description="data loader workers")
    cache_mb: float = Field(
        1024, ge=0,
        description="decoded training tiles and labels kept in memory, per loader process (MB; 0: decode every crop's "
        "tile again); changes speed only",
    )
    device: str = Field("auto", description="torch device")
    seed: int = Field(0, description="random seed")


class PredictSettings(_Section):
    """Prediction on tiles or whole frames with a sliding window."""

    execution_only: ClassVar[frozenset[str]] = frozenset({"batch_size", "device"})

    window_m: float = Field(
        1.28, gt=0,
        description="sliding-window side in metres on the ground, converted at the GSD of the pixels the model sees "
        "(the model's working GSD when the input is resampled, else the input's) and rounded to a multiple of 32 px "
        "(512 px at 0.25 cm/px)",
    )
    window: int | None = Field(
        None, gt=0, description="sliding-window side in pixels; overrides window_m (null: window_m converted, 512 px at 0.25 cm/px)"
    )
    overlap: float = Field(0.25, ge=0, lt=1, description="window overlap fraction")
    batch_size: int = Field(4, gt=0, description="windows per forward pass")
    gsd_cm: float | None = Field(
        None, gt=0,
        description="ground sampling distance (cm/px) of inputs that carry none (no GeoTIFF transform, no drone EXIF); "
        "null: unknown (areas at the paper's 0.25 cm/px with a note, never resampled)",
    )
    resample: Literal["auto", "never"] = Field(
        "auto",
        description="auto: an input whose GSD is known and differs from the model's working GSD by more than 10 % is "
        "resampled to it for the model and the probabilities back to the input size (at most 4x upsampling); never: "
        "inputs are predicted at their own resolution",
    )
    device: str = Field("auto", description="torch device")

    def window_pixels(self, gsd_cm: float | None) -> int:
        """Returns the window side in pixels: ``window`` when set, else ``window_m`` at ``gsd_cm`` (None: 0.25)
        rounded to a multiple of 32 px (at least 32), the stride segmentation backbones need."""
        if self.window is not None:
            return self.window
        pixels = length_px(self.window_m * 100, gsd_cm or REFERENCE_GSD_CM)
        return max(32, 32 * round(pixels / 32))


class EvaluateSettings(_Section):
    """Evaluation against ground truth (paper equations 1-2)."""

    ignore_index: int = Field(255, ge=0, le=255, description="ground-truth label ignored in all metrics")
    matching: Literal["none", "hungarian", "majority"] = Field("none", description="none: ids are classes; hungarian / majority: ids are clusters")


class RunSettings(_Section):
    """Inputs of ``roadparse run``: where the frames are and where the run lives; how data-parallel stages run."""

    execution_only: ClassVar[frozenset[str]] = frozenset(
        {"executor", "ray_address", "ray_workers", "ray_cpus_per_worker", "ray_gpus_per_worker"}
    )

    frames: str | None = Field(None, description="folder (or file) of raw frames: JPEG/PNG/TIFF/GeoTIFF")
    workdir: str = Field("roadparse-run", description="work directory of the run (one folder per stage)")
    dev_labels: str | None = Field(None, description="optional folder of ground-truth frame label PNGs (same stems as the frames): used to suggest the merge map by majority vote and to evaluate; never for training")
    dev_frames: list[str] | None = Field(None, description="frame stems of the labelled dev split (null: every frame with a label in dev_labels)")
    naming_frames: list[str] | None = Field(
        None,
        description="frame stems whose labels (in dev_labels) name the clusters in the majority-vote merge-map suggestion, "
        "standing in for the person who names them; give frames outside dev_frames so that the dev scores are measured "
        "on frames that named nothing (null: the dev frames name the clusters, and their scores flatter the pseudo-labels)",
    )
    naming_share: float | None = Field(
        None, gt=0, le=1,
        description="instead of naming_frames: this share of the labelled tiles outside dev_frames, drawn at random "
        "(seed 0, the same tiles for the same tile set) across all their frames, names the clusters; a person who "
        "labels tiles here and there rather than whole frames (null: naming_frames decides)",
    )
    executor: Literal["local", "ray"] = Field(
        "local", description="where roi, masks, embed and predict run their items: local (this process) or ray (Ray actors; extra 'distributed')"
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join ('auto', 'ray://head:10001'); null: start a local Ray on this machine"
    )
    ray_workers: int | None = Field(None, ge=1, description="Ray actors (each loads the model once); null: cluster GPUs / ray_gpus_per_worker, else CPUs / ray_cpus_per_worker")
    ray_cpus_per_worker: float = Field(1.0, gt=0, description="CPUs per Ray actor (also its torch threads)")
    ray_gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per Ray actor (0: CPU actors; 1: one actor per GPU; 0.5: two per GPU)")

    @model_validator(mode="after")
    def _one_naming(self) -> RunSettings:
        if self.naming_frames is not None and self.naming_share is not None:
            raise ValueError("give run.naming_frames or run.naming_share, not both")
        return self


class Settings(_Section):
    """All settings of a roadparse run."""

    classes: str | None = Field(None, description="classes file (names, colours); null: the built-in road classes")
    run: RunSettings = RunSettings()
    roi: RoiSettings = RoiSettings()
    masks: MasksSettings = MasksSettings()
    embed: EmbedSettings = EmbedSettings()
    cluster: ClusterSettings = ClusterSettings()
    pseudolabel: PseudolabelSettings = PseudolabelSettings()
    selftrain: SelftrainSettings = SelftrainSettings()
    predict: PredictSettings = PredictSettings()
    evaluate: EvaluateSettings = EvaluateSettings()


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"invalid settings in {source}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Returns a nested dict from ``section.key=value`` strings; values are parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        dotted, raw = item.split("=", 1)
        node = nested
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return nested


_EXPERIMENT = "an experiment that no profile used, removed with its code (docs/experiments.md)"

REMOVED_KEYS: dict[tuple[str, ...], str] = {
    ("seed",): "every stage that draws random numbers has its own seed (cluster.seed, selftrain.seed)",
    ("pseudolabel", "ignore_index"): "unlabelled pixels are always 255 (the label PNGs' ignore value)",
    **{("masks", name): _EXPERIMENT for name in MasksSettings.retired},
    **{("embed", name): _EXPERIMENT for name in EmbedSettings.retired},
    **{("cluster", name): _EXPERIMENT for name in ("pca_dim", "suggest_split_purity", "suggest_split_max_parts")},
    **{("selftrain", name): _EXPERIMENT for name in SelftrainSettings.retired},
    ("masks", "offline_scale_cm2"): "the Felzenszwalb scale is masks.offline_scale pixels at every GSD (converted by GSD² it "
    "over-segmented coarse frames)",
    ("masks", "offline_sigma_cm"): "the Felzenszwalb smoothing is masks.offline_sigma pixels at every GSD",
}
"""Keys earlier versions wrote into ``settings.yaml`` that no longer do anything: dropped from a config file with
one warning naming them; given as ``--set`` overrides they are errors."""


def _removed_keys_in(data: dict[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    """Returns the removed keys (:data:`REMOVED_KEYS`) present in ``data`` with their values, deleting them."""
    found = []
    for path in REMOVED_KEYS:
        node: Any = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            found.append((path, node.pop(path[-1])))
    return found


def _drop_removed_keys(data: dict[str, Any], source: str) -> None:
    """Deletes the removed keys from ``data`` (a config file's sections), with one warning naming them."""
    found = _removed_keys_in(data)
    if not found:
        return
    lines = []
    for path, value in found:
        retired = getattr(Settings.model_fields[path[0]].annotation, "retired", {}) if len(path) == 2 else {}
        changed = path[-1] in retired and _yaml_scalar(value) != _yaml_scalar(retired[path[-1]])
        note = f" (set to {_yaml_scalar(value)} here: that behaviour is gone, and stages that used it run again)" if changed else ""
        lines.append(f"  {'.'.join(path)}: {REMOVED_KEYS[path]}{note}")
    log.warning("%s: ignored %d setting(s) that no longer exist:\n%s", source, len(found), "\n".join(lines))


RENAMED_SECTIONS: dict[str, str] = {"train": "selftrain"}
"""Sections renamed since earlier versions (old name -> new name): still read, with a warning."""


def _rename_sections(data: dict[str, Any], source: str) -> dict[str, Any]:
    for old, new in RENAMED_SECTIONS.items():
        if old in data:
            log.warning("%s: section '%s' is now called '%s'; please rename it", source, old, new)
            data = dict(data)
            data[new] = _deep_merge(data.pop(old) or {}, data.get(new) or {})
    return data


PROFILES: tuple[str, ...] = ("paper", "offline", "demo")
"""Named profiles, package files ``roadparse/data/NAME.yaml``: ``paper`` (the paper's models, = the defaults),
``offline`` (no downloads: offline backends for a CPU), ``demo`` (the offline profile on the synthetic frames)."""

PROFILE_KEY = "profile"
"""Top-level key of a settings file naming the profile it starts from."""


def profile_text(name: str) -> str:
    """Returns the commented YAML of the profile ``name`` (one of :data:`PROFILES`).

    Raises:
        ConfigError: ``name`` is not a profile.
    """
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return resources.files("roadparse.data").joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def _apply_profile(data: dict[str, Any], source: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Returns ``data`` merged over the profile it names (``profile:``, resolved recursively), without that key."""
    if PROFILE_KEY not in data:
        return data
    data = dict(data)
    name = data.pop(PROFILE_KEY)
    if not isinstance(name, str) or name not in PROFILES:
        raise ConfigError(f"{source}: profile: {name!r} is not a profile; choose one of {', '.join(PROFILES)}")
    if name in seen:
        raise ConfigError(f"{source}: profiles name each other in a loop: {' -> '.join((*seen, name))}")
    profile = yaml.safe_load(profile_text(name)) or {}
    base = _apply_profile(_rename_sections(profile, f"profile {name}"), f"profile {name}", (*seen, name))
    return _deep_merge(base, data)


def load_profile(name: str, overrides: list[str] | None = None) -> Settings:
    """Returns the settings of the profile ``name`` (defaults ⊕ its file ⊕ overrides)."""
    return load_settings(None, [f"{PROFILE_KEY}={name}", *(overrides or [])])


def load_settings(path: str | Path | None = None, overrides: list[str] | None = None) -> Settings:
    """Returns settings from defaults ⊕ the profile it names ⊕ the YAML file at ``path`` ⊕ ``key=value`` overrides.

    Raises:
        ConfigError: the file is missing or not YAML, a key is unknown or mistyped, or the profile is unknown.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = yamlstrict.load(path.read_text(encoding="utf-8"))  # duplicate keys, aliases: refused by line
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: a folder, not a config file; give the YAML file (`roadparse config --defaults` prints one)") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file (not UTF-8); a config file is YAML (`roadparse config --defaults` prints one)") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(loaded).__name__}")
        data = _rename_sections(loaded, source)
        _drop_removed_keys(data, source)
    if overrides:
        nested = _rename_sections(parse_overrides(overrides), "--set")
        removed = _removed_keys_in(nested)
        if removed:
            names = ", ".join(".".join(path) for path, _ in removed)
            raise ConfigError(f"--set {names}: no longer a setting ({REMOVED_KEYS[removed[0][0]]})")
        data = _deep_merge(data, nested)
        source += " + --set overrides"
    data = _apply_profile(data, source)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def defaults_yaml() -> str:
    """Returns a complete, commented YAML of the default settings."""
    lines = [
        "# roadparse settings: defaults are the COMRP paper's values.",
        f"# A file may start from a profile ({', '.join(PROFILES)}) with a top-level `{PROFILE_KEY}: NAME`;",
        "# its own values win over the profile's.",
        "",
    ]
    for name, field in Settings.model_fields.items():
        value = getattr(Settings(), name)
        if isinstance(value, BaseModel):
            doc = (type(value).__doc__ or "").strip().splitlines()[0]
            lines.append(f"{name}:  # {doc}")
            for sub_name, sub_field in type(value).model_fields.items():
                sub_value = getattr(value, sub_name)
                if isinstance(sub_value, tuple):
                    sub_value = list(sub_value)
                lines.append(f"  {sub_name}: {_yaml_scalar(sub_value)}  # {sub_field.description}")
            lines.append("")
        else:
            lines.append(f"{name}: {_yaml_scalar(value)}  # {field.description}")
    return "\n".join(lines) + "\n"


def dump_settings(settings: Settings) -> str:
    """Returns the resolved settings as YAML."""
    return yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)
