"""The training loop: optimiser per paper Table 6, poly schedule, AMP, checkpoints, resume, DDP.

Multi-GPU: launch the command under ``torchrun``, e.g.
``torchrun --nproc_per_node 4 "$(which roadparse)" selftrain WORKDIR``; each process trains on its
own slice of every global batch (``batch_size`` per GPU), gradients are averaged by
DistributedDataParallel, and only rank 0 writes checkpoints, models and manifests.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from roadparse.config import SelftrainSettings
from roadparse.io.labels import IGNORE_INDEX
from roadparse.models.segmenters import unwrap
from roadparse.stages.selftrain.dataset import IterationBatchSampler, TileLabelDataset
from roadparse.workspace import atomic_output

log = logging.getLogger(__name__)

# Paper Table 6: (optimizer, learning rate, weight decay) per architecture.
PAPER_OPTIMIZERS = {"deeplabv3plus": ("sgd", 1e-3, 5e-4), "segformer": ("adamw", 6e-5, 0.01)}
_DEFAULT_DECAY = {"sgd": 5e-4, "adamw": 0.01}
_DEFAULT_LR = {"sgd": 1e-3, "adamw": 6e-5}


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Waits for every rank (no-op without DDP)."""
        if self.world_size > 1:
            torch.distributed.barrier()

    def broadcast(self, value: Any) -> Any:
        """Returns rank 0's ``value`` on every rank (``value`` itself without DDP)."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def distributed_context(device_name: str = "auto") -> tuple[DistContext, torch.device]:
    """Returns (this process's DistContext, its device); joins the process group under torchrun."""
    from roadparse.models import resolve_device

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda") or device_name.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return DistContext(rank, world_size, local_rank), device


def resolve_optimizer(settings: SelftrainSettings) -> tuple[str, float, float]:
    """Returns (optimizer name, learning rate, weight decay) after applying the paper defaults."""
    name: str = settings.optimizer
    if name == "auto":
        name = PAPER_OPTIMIZERS[settings.architecture][0]
    lr = settings.lr if settings.lr is not None else _DEFAULT_LR[name]
    decay = settings.weight_decay if settings.weight_decay is not None else _DEFAULT_DECAY[name]
    return name, lr, decay


def make_optimizer(model: torch.nn.Module, settings: SelftrainSettings) -> torch.optim.Optimizer:
    """Returns SGD or AdamW over the model's trainable parameters, as ``settings`` resolve."""
    name, lr, decay = resolve_optimizer(settings)
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=settings.momentum, weight_decay=decay)
    return torch.optim.AdamW(params, lr=lr, betas=settings.betas, weight_decay=decay)


def lr_factor(iteration: int, iterations: int) -> float:
    """Returns the learning-rate multiplier at ``iteration``: poly with power 1 (MMSegmentation's schedule)."""
    return 1.0 - min(iteration / max(iterations, 1), 1.0)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Returns the mean cross-entropy over pixels whose label is not IGNORE_INDEX (0 when none is).

    Args:
        logits: (B, C, H, W) float.
        labels: (B, H, W) int64.
    """
    total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp_min(1)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _loss_curve(losses: list[float], points: int = 50) -> list[float]:
    """Returns the loss averaged over at most ``points`` equal chunks of the run."""
    if not losses:
        return []
    chunks = np.array_split(np.asarray(losses, dtype=np.float64), min(points, len(losses)))
    return [round(float(chunk.mean()), 5) for chunk in chunks]


def train_segmenter(
    model: torch.nn.Module,
    dataset: TileLabelDataset,
    settings: SelftrainSettings,
    checkpoint_path: str | Path,
    record: dict[str, Any],
    device: torch.device,
    dist: DistContext | None = None,
    callback: Callable[[int, float], None] | None = None,
    desc: str = "train",
) -> dict[str, Any]:
    """Trains ``model`` in place for ``settings.iterations`` and returns a summary dict.

    Resumes from ``checkpoint_path`` when it holds a checkpoint of the same run
    (``record["fingerprint"]``): model, optimiser, scheduler, AMP scaler, iteration, RNG
    states and loss history are restored, and the sampler continues at that iteration.
    A checkpoint is written every ``checkpoint_every`` iterations and at the end.
    ``callback(iteration, loss)`` runs after every step (and its checkpoint, if any).

    Returns:
        iterations, seconds and iterations_per_second of this session, first/final loss
        (mean of the first / last 10% of iterations) and a 50-point loss curve.
    """
    dist = dist or DistContext()
    # Dropout / drop-path draw from torch's global RNG: fork it, seed it per run (and rank),
    # and checkpoint it, so a resumed run continues the same random stream; the caller's
    # RNG state is left untouched.
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(settings.seed * 1000 + dist.rank)
        return _train(model, dataset, settings, Path(checkpoint_path), record, device, dist, callback, desc)


def _train(
    model: torch.nn.Module,
    dataset: TileLabelDataset,
    settings: SelftrainSettings,
    checkpoint_path: Path,
    record: dict[str, Any],
    device: torch.device,
    dist: DistContext,
    callback: Callable[[int, float], None] | None,
    desc: str,
) -> dict[str, Any]:
    if settings.iterations == "auto":
        raise ValueError("selftrain.iterations is 'auto': resolve it with roadparse.stages.selftrain.budget.resolve_iterations first")
    model.to(device).to(memory_format=torch.channels_last).train()  # NHWC: oneDNN and tensor cores run convolutions faster
    if dist.world_size > 1:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    optimizer = make_optimizer(model, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, int(settings.iterations)))
    use_amp = settings.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start, losses = 0, []
    if checkpoint_path.is_file():
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if checkpoint.get("record", {}).get("fingerprint") == record.get("fingerprint"):
            unwrap(model).load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            scaler.load_state_dict(checkpoint["scaler"])
            _set_rng_state(checkpoint["rng"])
            start, losses = int(checkpoint["iteration"]), list(checkpoint["losses"])
            log.info("%s: resuming from %s at iteration %d", desc, checkpoint_path, start)
        else:
            log.warning("%s: ignoring checkpoint %s of a different run", desc, checkpoint_path)

    def save_checkpoint(iteration: int) -> None:
        if dist.is_main:
            payload = {
                "model": unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "iteration": iteration,
                "rng": _rng_state(),
                "losses": losses,
                "record": record,
            }
            with atomic_output(checkpoint_path) as tmp:
                torch.save(payload, tmp)
        dist.barrier()

    sampler = IterationBatchSampler(
        len(dataset), settings.batch_size, int(settings.iterations), settings.seed,
        start=start, rank=dist.rank, world_size=dist.world_size,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=settings.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        generator=torch.Generator(),  # keeps the global RNG untouched, so resume is exact
    )
    started, running = time.perf_counter(), None
    iteration = start
    with tqdm(total=settings.iterations, initial=start, desc=desc, unit="it", dynamic_ncols=True, disable=not dist.is_main) as bar:
        for images, labels in loader:
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = model(images)
            loss = masked_cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            iteration += 1
            value = float(loss.detach())
            losses.append(value)
            running = value if running is None else 0.98 * running + 0.02 * value
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
            bar.update(1)
            if iteration % settings.checkpoint_every == 0 or iteration == settings.iterations:
                save_checkpoint(iteration)
            if callback is not None:
                callback(iteration, value)
    seconds = time.perf_counter() - started
    tenth = max(1, len(losses) // 10)
    return {
        "iterations": settings.iterations,
        "iterations_this_session": iteration - start,
        "resumed_from": start,
        "seconds": round(seconds, 3),
        "iterations_per_second": round((iteration - start) / seconds, 4) if seconds > 0 else None,
        "first_loss": round(float(np.mean(losses[:tenth])), 5) if losses else None,
        "final_loss": round(float(np.mean(losses[-tenth:])), 5) if losses else None,
        "loss_curve": _loss_curve(losses),
    }
