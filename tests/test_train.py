"""Self-training: segmenter factory, augmentation, loss with ignore, resume, the selftrain stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from roadparse.config import load_settings
from roadparse.io.images import write_image
from roadparse.io.labels import IGNORE_INDEX, load_classes, read_label_png, write_label_png
from roadparse.models import ModelLoadError
from roadparse.models.segmenters import build_segmenter, load_segmenter, save_segmenter
from roadparse.stages.selftrain.augment import augment_pair
from roadparse.stages.selftrain.dataset import IterationBatchSampler, TileLabelDataset
from roadparse.stages.selftrain.loop import masked_cross_entropy, resolve_optimizer, train_segmenter
from roadparse.workspace import Workspace

torch.set_num_threads(1)


def tiny_segformer_dir(root: Path, num_classes: int = 3) -> Path:
    """Returns a folder holding a tiny random SegFormer saved with save_pretrained."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(
        hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=16, num_labels=num_classes, drop_path_rate=0.1,
    )
    torch.manual_seed(0)
    path = root / "tiny-segformer"
    SegformerForSemanticSegmentation(config).save_pretrained(path)
    return path


def scene(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Returns ((size, size, 3) uint8 image, (size, size) uint8 label): grey road, white stripe, yellow box."""
    image = np.full((size, size, 3), 90, dtype=np.uint8) + rng.integers(0, 12, (size, size, 3), dtype=np.uint8)
    label = np.zeros((size, size), dtype=np.uint8)
    x = int(rng.integers(4, size - 12))
    image[:, x : x + 6] = 235
    label[:, x : x + 6] = 1
    y = int(rng.integers(4, size - 16))
    image[y : y + 10, 4:20] = (230, 190, 30)
    label[y : y + 10, 4:20] = 2
    label[: size // 8] = IGNORE_INDEX  # unlabelled rows, as pseudo-labels have
    return image, label


def make_workspace(root: Path, n_tiles: int = 4, size: int = 64, gsd_cm: float | None = None) -> tuple[Workspace, Path]:
    """Returns (a workspace with finished roi + pseudolabel stages, a folder of frame ground truth);
    ``gsd_cm``: the tiles' recorded GSD (None: a run from before GSDs were recorded)."""
    workspace = Workspace(root / "work")
    classes = load_classes(None)
    rng = np.random.default_rng(0)
    roi = workspace.begin("roi", {"fake": True})
    gt_dir = root / "gt"
    for i in range(n_tiles):
        image, label = scene(rng, size)
        write_image(workspace.root / "roi" / "tiles" / f"f{i}_t0.png", image)
        truth = label.copy()
        truth[truth == IGNORE_INDEX] = 0
        write_label_png(gt_dir / f"f{i}.png", truth, classes)
        tile = {"id": f"f{i}_t0", "path": f"tiles/f{i}_t0.png", "offset": [0, 0], "size": [size, size], "valid": [size, size],
                **({"gsd_cm": gsd_cm} if gsd_cm is not None else {})}
        roi.record_item(f"f{i}", {"frame": f"/frames/f{i}.jpg", "tiles": [tile]})
        write_label_png(workspace.root / "pseudolabel" / "labels" / f"f{i}_t0.png", label, classes)
    roi.finish()
    workspace.begin("pseudolabel", {"fake": True}).finish()
    return workspace, gt_dir


def small_settings(backbone: Path, **train: object) -> object:
    overrides = {
        "backbone": str(backbone), "pretrained": False, "scale_range": [600, 800], "crop_size": 32,  # 64-px tiles: 48-64 px
        "batch_size": 4, "iterations": 6, "checkpoint_every": 2, "lr": 0.01, "device": "cpu", "rounds": 2,
        **train,
    }
    sets = [f"train.{key}={json.dumps(value)}" for key, value in overrides.items()]
    return load_settings(None, [*sets, "predict.window=32", "predict.overlap=0.25", "predict.device=cpu"])


def test_both_architectures_build_and_run(tmp_path: Path) -> None:
    x = torch.rand(2, 3, 64, 64)
    segformer = build_segmenter("segformer", "nvidia/mit-b0", 7, pretrained=False)
    assert segformer(x).shape == (2, 7, 64, 64)
    deeplab = build_segmenter("deeplabv3plus", "resnet18", 7, pretrained=False)
    assert deeplab(x).shape == (2, 7, 64, 64)
    # a local SegFormer loaded as "pretrained": the user's code path, head re-initialised for 5 classes
    tuned = build_segmenter("segformer", str(tiny_segformer_dir(tmp_path)), 5, pretrained=True)
    assert tuned(x).shape == (2, 5, 64, 64)
    save_segmenter(tuned, tmp_path / "model", {"class_names": list("abcde")})
    loaded, record = load_segmenter(tmp_path / "model")
    assert record["class_names"] == list("abcde")
    torch.testing.assert_close(loaded(x), tuned.eval()(x))


def test_factory_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="available: segformer, deeplabv3plus"):
        build_segmenter("unet", "resnet18", 3, pretrained=False)
    with pytest.raises(ModelLoadError, match="selftrain.encoder_weights"):
        build_segmenter("deeplabv3plus", "resnet18", 3, pretrained=True)
    with pytest.raises(ModelLoadError, match="does not exist"):
        build_segmenter("segformer", "/no/such/segformer", 3, pretrained=True)


def test_paper_optimizers_and_lr_override() -> None:
    settings = load_settings(None, ["selftrain.architecture=deeplabv3plus"]).selftrain
    assert resolve_optimizer(settings) == ("sgd", 1e-3, 5e-4)
    assert resolve_optimizer(load_settings().selftrain) == ("adamw", 6e-5, 0.01)
    assert resolve_optimizer(load_settings(None, ["selftrain.lr=0.002"]).selftrain)[1] == 0.002


def test_augment_pads_with_ignore_and_is_seeded() -> None:
    image = torch.randint(0, 255, (3, 20, 30), dtype=torch.uint8)
    label = torch.ones((20, 30), dtype=torch.uint8)
    # (400, 400) for an 800-px tile: a factor 0.5, so this 20-px side becomes 10
    out_image, out_label = augment_pair(image, label, (400, 400), 16, True, torch.Generator().manual_seed(3))
    assert out_image.shape == (3, 16, 16) and out_label.shape == (16, 16)
    assert (out_label == IGNORE_INDEX).sum() == 16 * 16 - 10 * 15  # resized to 10x15, padded to 16x16 with ignore
    assert set(out_label.unique().tolist()) == {1, IGNORE_INDEX}
    again = augment_pair(image, label, (400, 400), 16, True, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], out_image)


def test_random_resize_is_a_factor_of_the_paper_tile() -> None:
    """scale_range is the short side of an 800-px tile; a 200-px tile (2 m at 1 cm/px) is resized by the same factors,
    so objects keep in training the pixel size they have when relabelled and predicted at the tile's scale."""
    for side, low, high in [(800, 512, 1024), (200, 128, 256)]:
        image = torch.full((3, side, side), 200, dtype=torch.uint8)
        label = torch.zeros((side, side), dtype=torch.uint8)
        seen = set()
        for seed in range(40):
            generator = torch.Generator().manual_seed(seed)
            out, _ = augment_pair(image, label, (512, 1024), 1100, False, generator)
            valid = int((out[0] > 0).any(dim=0).sum())  # columns of the resized tile (the padding is 0)
            seen.add(valid)
            assert low <= valid <= high
        assert max(seen) - min(seen) > (high - low) // 2


def test_sampler_shards_ranks_and_resumes() -> None:
    full = list(IterationBatchSampler(10, 3, 8, seed=1))
    assert list(IterationBatchSampler(10, 3, 8, seed=1, start=5)) == full[5:]
    rank0 = list(IterationBatchSampler(10, 2, 5, seed=1, rank=0, world_size=2))
    rank1 = list(IterationBatchSampler(10, 2, 5, seed=1, rank=1, world_size=2))
    seen = [key[0] for batch in rank0 + rank1 for key in batch]
    assert sorted(seen) == sorted(list(range(10)) * 2)  # two epochs, each sample once per epoch


def test_ignored_pixels_contribute_nothing() -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 3, 1)  # per-pixel model: image content only reaches its own pixel
    label = torch.zeros((1, 8, 8), dtype=torch.long)
    label[:, :4] = IGNORE_INDEX
    image = torch.rand(1, 3, 8, 8)
    changed = image.clone()
    changed[:, :, :4] = torch.rand(1, 3, 4, 8)  # only where the label is ignore

    def loss_and_grad(x: torch.Tensor) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        loss = masked_cross_entropy(model(x), label)
        loss.backward()
        return float(loss.detach()), model.weight.grad.clone()

    loss_a, grad_a = loss_and_grad(image)
    loss_b, grad_b = loss_and_grad(changed)
    assert loss_a == pytest.approx(loss_b)
    torch.testing.assert_close(grad_a, grad_b)
    everything_ignored = torch.full((1, 8, 8), IGNORE_INDEX)
    assert float(masked_cross_entropy(model(image), everything_ignored)) == 0.0


def _dataset(workspace: Workspace) -> TileLabelDataset:
    root = workspace.root
    samples = [(root / "roi" / "tiles" / f"f{i}_t0.png", root / "pseudolabel" / "labels" / f"f{i}_t0.png") for i in range(4)]
    return TileLabelDataset(samples, (48, 64), 32, True)


def test_the_decoded_tile_cache_changes_no_item_and_stays_within_its_budget(tmp_path: Path) -> None:
    workspace, _ = make_workspace(tmp_path)
    plain = _dataset(workspace)
    pair_bytes = sum(array.nbytes for array in plain._pair(0))
    cached = TileLabelDataset(plain.samples, (48, 64), 32, True, cache_mb=2.5 * pair_bytes / 2**20)
    keys = [(i % 4, 1000 + i) for i in range(12)]
    for key in keys:  # every tile three times, with other augmentations: the same tensors
        for a, b in zip(plain[key], cached[key], strict=True):
            assert torch.equal(a, b)
    assert sorted(cached._cache) == [0, 1]  # room for two decoded tiles, kept; the others decoded each time
    image, _ = cached._pair(0)
    assert image is cached._pair(0)[0] and not image.flags.writeable  # the kept pixels cannot be changed
    assert plain._cache == {}  # cache_mb 0: nothing kept


def _fresh_model(backbone: Path) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_segmenter("segformer", str(backbone), 3, pretrained=False)


def test_loss_decreases(tmp_path: Path) -> None:
    workspace, _ = make_workspace(tmp_path)
    backbone = tiny_segformer_dir(tmp_path)
    settings = small_settings(backbone, iterations=40, checkpoint_every=40, lr=0.01).selftrain
    summary = train_segmenter(_fresh_model(backbone), _dataset(workspace), settings, tmp_path / "ck.pt", {}, torch.device("cpu"))
    assert summary["final_loss"] < 0.7 * summary["first_loss"]
    assert (tmp_path / "ck.pt").is_file()


def test_resume_continues_like_an_uninterrupted_run(tmp_path: Path) -> None:
    workspace, _ = make_workspace(tmp_path)
    backbone = tiny_segformer_dir(tmp_path)
    settings = small_settings(backbone, iterations=6, checkpoint_every=2).selftrain
    cpu = torch.device("cpu")
    whole = _fresh_model(backbone)
    train_segmenter(whole, _dataset(workspace), settings, tmp_path / "a.pt", {"fingerprint": "x"}, cpu)

    def interrupt(iteration: int, loss: float) -> None:
        if iteration == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_segmenter(_fresh_model(backbone), _dataset(workspace), settings, tmp_path / "b.pt", {"fingerprint": "x"}, cpu, callback=interrupt)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["iteration"] == 2
    resumed = _fresh_model(backbone)
    summary = train_segmenter(resumed, _dataset(workspace), settings, tmp_path / "b.pt", {"fingerprint": "x"}, cpu)
    assert summary["resumed_from"] == 2 and summary["iterations_this_session"] == 4
    a, b = torch.load(tmp_path / "a.pt", weights_only=False), torch.load(tmp_path / "b.pt", weights_only=False)
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-5)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, msg=key)
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    for key in state_a:
        torch.testing.assert_close(state_b[key]["exp_avg_sq"], state_a[key]["exp_avg_sq"])


def test_loader_workers_change_no_batch_and_no_weight(tmp_path: Path) -> None:
    """Results do not depend on how the work was split: each crop's augmentation is seeded by its
    place in the stream, not by the process that draws it, so 2 loader workers train the same model."""
    workspace, _ = make_workspace(tmp_path)
    backbone = tiny_segformer_dir(tmp_path)
    cpu = torch.device("cpu")
    runs = {}
    for workers in (0, 2):
        settings = small_settings(backbone, iterations=5, checkpoint_every=5, num_workers=workers).selftrain
        path = tmp_path / f"w{workers}.pt"
        train_segmenter(_fresh_model(backbone), _dataset(workspace), settings, path, {"fingerprint": "x"}, cpu)
        runs[workers] = torch.load(path, weights_only=False)
    assert runs[0]["losses"] == runs[2]["losses"]
    for key, value in runs[0]["model"].items():
        torch.testing.assert_close(runs[2]["model"][key], value, rtol=0, atol=0, msg=key)


def test_selftrain_stage_rounds_outputs_and_skip(tmp_path: Path) -> None:
    from roadparse.stages import selftrain

    workspace, _ = make_workspace(tmp_path, gsd_cm=0.5)
    settings = small_settings(tiny_segformer_dir(tmp_path), iterations=4, rounds=2, min_improvement=0.0)
    manifest = selftrain.run(workspace, settings)  # no dev labels: rounds cannot be compared with round 0
    summary = manifest["summary"]
    assert summary["rounds_run"] == 2 and summary["stop_rule"] == "label_agreement"
    assert summary["best_round"] == 2 and summary["dev_miou"] is None and "No dev labels" in summary["verdict"]
    for r in (1, 2):
        round_dir = workspace.root / "selftrain" / f"round_{r}"
        assert (round_dir / "checkpoints" / "last.pt").is_file()
        assert (round_dir / "model" / "segmenter.json").is_file()
        metrics = json.loads((round_dir / "metrics.json").read_text())
        assert metrics["training"]["iterations"] == 4 and 0.0 <= metrics["agreement"] <= 1.0
        assert set(metrics["fit"]["iou"]) == set(load_classes().names) and 0.0 <= metrics["fit"]["miou"] <= 100.0
        labels = read_label_png(round_dir / "labels" / "f0_t0.png")
        assert labels.shape == (64, 64) and labels.max() < 7
    model, record = load_segmenter(workspace.root / "selftrain" / summary["model"])
    assert record["class_names"][0] == "road"
    assert record["working_gsd_cm"] == 0.5  # the tiles' GSD: predict resamples other inputs to it
    again = selftrain.run(workspace, settings)  # complete: skipped
    assert again["fingerprint"] == manifest["fingerprint"] and again["finished"] == manifest["finished"]


@pytest.mark.parametrize("student_init", ["pretrained", "teacher"])
def test_student_starts_from_teacher_or_afresh(tmp_path: Path, student_init: str) -> None:
    from roadparse.stages import selftrain

    workspace, _ = make_workspace(tmp_path, n_tiles=2)
    # lr 0: training leaves the parameters where they started, so round 2's are its initial weights
    settings = small_settings(tiny_segformer_dir(tmp_path), iterations=2, rounds=2, lr=0.0,
                              student_init=student_init)
    assert selftrain.run(workspace, settings)["summary"]["rounds_run"] == 2
    teacher, _ = load_segmenter(workspace.root / "selftrain" / "round_1" / "model")
    student, _ = load_segmenter(workspace.root / "selftrain" / "round_2" / "model")
    same = [torch.equal(a, b) for a, b in zip(teacher.parameters(), student.parameters(), strict=True)]
    assert all(same) if student_init == "teacher" else not all(same)


def test_next_round_trains_on_confident_pixels_only(tmp_path: Path) -> None:
    from roadparse.stages import selftrain

    workspace, _ = make_workspace(tmp_path, n_tiles=2)
    settings = small_settings(tiny_segformer_dir(tmp_path), iterations=6, rounds=2, relabel_confidence=0.165,
                              min_improvement=0.0)
    manifest = selftrain.run(workspace, settings)  # no dev labels: round 2 runs whatever round 1 scores
    round_1 = workspace.root / "selftrain" / "round_1"
    full, confident = read_label_png(round_1 / "labels" / "f0_t0.png"), read_label_png(round_1 / "confident_labels" / "f0_t0.png")
    kept = confident != IGNORE_INDEX
    assert (confident[kept] == full[kept]).all() and 0 < kept.sum() < kept.size  # near-uniform after 6 iterations: max probability 0.154-0.171
    assert (full != IGNORE_INDEX).all()  # the round's own labels (scored on dev) keep every pixel
    assert manifest["items"]["round_2"]["trained_on"] == str(round_1 / "confident_labels")


def test_selftrain_stops_on_label_agreement(tmp_path: Path) -> None:
    from roadparse.stages import selftrain

    workspace, _ = make_workspace(tmp_path, n_tiles=2)
    # min_improvement 1: any agreement >= 0 stops after round 2 even though 5 rounds are allowed
    settings = small_settings(tiny_segformer_dir(tmp_path), iterations=2, rounds=5, min_improvement=1.0)
    summary = selftrain.run(workspace, settings)["summary"]
    assert summary["rounds_run"] == 2 and summary["stop_rule"] == "label_agreement"
    assert "agreement" in summary["stopped_by"]


def test_selftrain_resumes_an_interrupted_round(tmp_path: Path) -> None:
    from roadparse.stages import selftrain

    workspace, _ = make_workspace(tmp_path, n_tiles=2)
    settings = small_settings(tiny_segformer_dir(tmp_path), iterations=4, rounds=1)

    def interrupt(iteration: int, loss: float) -> None:
        if iteration == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        selftrain.run(workspace, settings, callback=interrupt)
    assert workspace.read_manifest("selftrain") is None
    manifest = selftrain.run(workspace, settings)
    metrics = manifest["items"]["round_1"]
    assert metrics["training"]["resumed_from"] == 2 and metrics["training"]["iterations_this_session"] == 2
    assert manifest["summary"]["stopped_by"] == "reached selftrain.rounds = 1"


def test_train_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roadparse.cli import main

    workspace, gt_dir = make_workspace(tmp_path, n_tiles=2)
    backbone = tiny_segformer_dir(tmp_path)
    args = ["train", str(workspace.root), "--dev-labels", str(gt_dir), "--set", f"selftrain.backbone={backbone}",
            "--set", "selftrain.pretrained=false", "--set", "selftrain.iterations=2", "--set", "selftrain.rounds=1",
            "--set", "selftrain.scale_range=[48, 64]", "--set", "selftrain.crop_size=32", "--set", "selftrain.batch_size=2",
            "--set", "selftrain.device=cpu", "--set", "predict.window=32"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = workspace.read_manifest("selftrain")
    assert manifest is not None and (workspace.root / "selftrain" / "round_1" / "model" / "weights.pt").is_file()
    # the budget before training, the verdict after it
    assert "training budget per round: 2 iterations x batch 2 = 4 crops" in result.output
    assert manifest["summary"]["verdict"] in result.output
