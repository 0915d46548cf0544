"""A trained segmenter as an object: :func:`load_model` → :class:`Model` → :class:`Prediction`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from roadparse.api.run import PathLike, merged_settings
from roadparse.artifacts import best_model_dir
from roadparse.config import PredictSettings, Settings
from roadparse.workspace import Workspace

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One image labelled by a :class:`Model`."""

    labels: np.ndarray
    """(H, W) uint8 class ids, indices into ``class_names``; 255 where a file has no data (a
    GeoTIFF's nodata value or mask, NaN, alpha 0), as the label PNG of ``roadparse predict``."""
    confidence: np.ndarray
    """(H, W) float32 in [0, 1]: the winning class's probability (in steps of 1/255, as the
    confidence PNG of ``roadparse predict``); 0 where there is no data."""
    class_names: list[str]
    """The classes the model predicts, by id."""


class Model:
    """A trained segmenter loaded by :func:`load_model`.

    Args:
        path: the model folder (``segmenter.json`` and ``weights.pt``) or training checkpoint (``.pt``).
        settings: how to predict: window, overlap, batch size, GSD, resampling, device.
    """

    def __init__(self, path: PathLike, settings: PredictSettings) -> None:
        from roadparse.models import resolve_device
        from roadparse.models.segmenters import load_segmenter, working_gsd_of
        from roadparse.stages.predict import class_set_for

        self.path = Path(path)
        """The model folder or checkpoint loaded."""
        self.settings = settings
        """The prediction settings (``predict`` section): by default those of the run that trained the model."""
        self._device: torch.device = resolve_device(settings.device)
        self._net, record = load_segmenter(self.path, self._device)
        self.classes = class_set_for(record, None)
        self.working_gsd_cm: float | None = working_gsd_of(record)
        """The GSD (cm/px) the model was trained at; inputs of another known GSD are resampled to it."""

    @property
    def class_names(self) -> list[str]:
        """The classes the model predicts, by id."""
        return list(self.classes.names)

    def predict(self, image: np.ndarray | PathLike, *, gsd_cm: float | None = None) -> Prediction:
        """Returns the labels and confidence of one image, at the image's size.

        Args:
            image: an image file (its GSD read from a GeoTIFF transform or drone EXIF) or an
                (H, W, 3) uint8 RGB array.
            gsd_cm: the image's GSD in cm/px, for arrays and for files that carry none
                (default: ``predict.gsd_cm``); when known and more than 10 % from the model's,
                the image is resampled to the model's GSD and the labels come back at its size.

        Raises:
            ValueError: the array is not (H, W, 3) uint8, or the file cannot be read.
        """
        from roadparse.io.gsd import FrameGsd
        from roadparse.stages.predict import (
            input_gsd,
            plan_resampling,
            predict_valid_labels,
            read_input,
        )

        settings = self.settings if gsd_cm is None else self.settings.model_copy(update={"gsd_cm": gsd_cm})
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image: expected an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}")
            pixels, name = image, Path("array")
            gsd = FrameGsd(settings.gsd_cm, "setting") if settings.gsd_cm else FrameGsd(0.0, "default")
        else:
            path = Path(image)
            pixels, _ = read_input(path, keep_nodata=True)
            name, gsd = path, input_gsd(path, settings)
        plan = plan_resampling(name, gsd, self.working_gsd_cm, settings)
        labels, confidence, _ = predict_valid_labels(self._net, pixels, plan, settings, self._device)
        return Prediction(labels, confidence.astype(np.float32) / np.float32(255.0), self.class_names)

    def predict_files(self, inputs: Sequence[PathLike], out: PathLike) -> dict[str, Any]:
        """Labels image files and folders into ``out`` as ``roadparse predict`` does; returns its summary.

        Per input: ``<stem>_label.png``, ``<stem>_confidence.png``, ``<stem>_overlay.jpg`` (and a
        GeoTIFF when georeferenced); ``areas.csv`` and ``summary.json`` for all. The folder is
        what :func:`export` reads. Inputs already predicted with the same model and settings are skipped.
        """
        from roadparse.stages.predict import predict_files

        return predict_files(self.path, [Path(p) for p in inputs], Path(out), Settings(predict=self.settings))

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, classes={self.class_names})"


def resolve_model_path(path: PathLike) -> Path:
    """Returns the model folder or checkpoint that ``path`` names.

    ``path`` may be a model folder (``segmenter.json``), a training checkpoint, a self-training round
    folder (its ``model/``), the ``selftrain`` folder or a work directory (the model its
    self-training hands on).

    Raises:
        ValueError: a work directory whose self-training handed on no model (the pseudo-labels were best).
    """
    from roadparse.models.segmenters import MODEL_RECORD

    path = Path(path).expanduser()
    if not path.is_dir() or (path / MODEL_RECORD).is_file():
        return path
    if (path / "model" / MODEL_RECORD).is_file():
        return path / "model"
    root = path.parent if path.name == "selftrain" and (path / "manifest.json").is_file() else path
    if (root / "selftrain" / "manifest.json").is_file():
        model = best_model_dir(Workspace(root))
        if model is None:
            raise ValueError(
                f"{root}: the run hands on no model: its pseudo-labels scored better than every round; "
                "use the pseudo-labels, or load a round's folder (selftrain/round_<r>) explicitly"
            )
        return model
    return path


def _run_predict_settings(path: Path) -> PredictSettings:
    """Returns the ``predict`` settings recorded with a saved model (defaults when there are none)."""
    from roadparse.models.segmenters import read_segmenter_record

    text = read_segmenter_record(path).get("settings")
    try:
        section = (yaml.safe_load(text) or {}).get("predict") if isinstance(text, str) else None
        return PredictSettings.model_validate(section or {})
    except (yaml.YAMLError, ValueError, AttributeError) as exc:
        log.warning("%s: the model's recorded predict settings are not usable (%s); using the defaults", path, exc)
        return PredictSettings()


def load_model(
    path: PathLike | None, *, device: str | None = None, settings: PredictSettings | Mapping[str, Any] | None = None
) -> Model:
    """Returns the trained segmenter at ``path``, ready to :meth:`~Model.predict`.

    Args:
        path: a model folder, a ``.pt`` training checkpoint, a self-training round folder
            (``selftrain/round_<r>``) or a run's work directory (the model its self-training hands on).
            None (a ``RunResult.model_dir`` of a run that handed on no model) is refused with the reason.
        device: ``cpu``, ``cuda``, ``cuda:1``, ... (default: the run's ``predict.device``, ``auto``).
        settings: prediction settings (a ``PredictSettings`` or a mapping of its fields, e.g.
            ``{"window_m": 1.5}``) over those recorded with the model.

    Raises:
        roadparse.models.ModelLoadError: ``path`` is not a saved model or checkpoint.
        ValueError: a work directory that hands on no model, or None.
    """
    if path is None:
        raise ValueError(
            "no model to load: the run handed on none (its pseudo-labels scored better than every self-training "
            "round, see the selftrain summary's verdict); load a round's folder, WORKDIR/selftrain/round_<r>, explicitly"
        )
    resolved = resolve_model_path(path)
    base = _run_predict_settings(resolved)
    if isinstance(settings, PredictSettings):
        base = settings
    elif settings is not None:
        base = PredictSettings.model_validate(merged_settings(base.model_dump(mode="json"), settings))
    if device is not None:
        base = base.model_copy(update={"device": device})
    return Model(resolved, base)
