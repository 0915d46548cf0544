"""Benchmark: faster crop encoders on this CPU — speed-up and agreement with float32.

Variants of the offline profile's encoder (EfficientNet-Lite0, real ImageNet weights, layer 7):

* ``bn-folded``: each batch norm folded into the convolution before it (inference only; what
  ``load_encoder`` gives since it measured 1.3x with the same clusters), against ``fp32``, the
  network with its batch norms as trained;
* ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)``: fast only where the CPU has
  AVX512-BF16 or AMX (``lscpu`` flags ``avx512_bf16``, ``amx_bf16``), emulated elsewhere;
* ``int8``: static post-training quantisation (FX graph mode, the ``x86`` backend, per-channel
  weights), calibrated on ``--calibration`` crops of the first work directory (the highway family:
  tune there, report on the others).

(``channels-last`` is not a variant: the encoder already hands the network an NHWC batch, a
channels-last tensor, and the convolutions keep that layout.) For each work directory
(``roi`` and ``masks`` finished, e.g. the demo profile on ``roadparse synth`` frames of each
family) it cuts every mask's crop as the embed stage does, encodes them with each variant, and
reports the cosine of each crop's features with float32's and the ARI between the clusters of
the ``cluster`` stage (the run's settings) on float32's features and on the variant's.
Speed: ``--rounds`` rounds over ``--speed-batches`` batches of 32 real crops, the variants
alternating inside each round; the speed-up is the median over rounds of float32's time over
the variant's, so a busy neighbour on a shared machine slows both sides alike.

``--vit`` adds DINOv2 ViT-B/14 (layer 12) and ``--sam`` the SAM ViT-L image encoder (one
1024x1024 input), both full size with random weights built from their configs (no trained
weights can be downloaded here: cosines with random weights say how much the arithmetic
moves, not what a trained model's clusters would do), in float32, bf16 autocast and int8
dynamic quantisation of their linear layers.

    python bench/encoder_speedups.py --workdirs hw-run,urban-run
    python bench/encoder_speedups.py --workdirs hw-run --variants bn-folded,int8 --vit --sam
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from roadparse.artifacts import list_tiles, read_assignments
from roadparse.config import Settings, load_settings
from roadparse.models.efficientnet_lite import EfficientNetLite0, load_efficientnet_lite0
from roadparse.models.encoders import Encoder, load_encoder
from roadparse.stages import cluster, embed
from roadparse.workspace import Workspace

LAYER = 7
BATCH = 32
Features = Callable[[np.ndarray], np.ndarray]
"""(B, S, S, 3) uint8 crops -> (B, D) float32 features."""


def crops_of(workdir: Path, settings: Settings) -> np.ndarray:
    """Returns the (N, S, S, 3) uint8 crops of every mask of ``workdir`` in the embed stage's row order."""
    workspace = Workspace(workdir)
    items = workspace.require_manifest("masks")["items"]
    tiles = [tile for tile in list_tiles(workspace) if tile.id in items]
    gains = embed.colour_gains(tiles) if settings.embed.colour_normalise == "frame" else None
    parts = [embed.tile_crops(workspace, tile, settings.embed, gains).crops for tile in tiles]
    return np.concatenate([part for part in parts if len(part)])


def in_batches(function: Features, crops: np.ndarray) -> np.ndarray:
    """Returns ``function`` over ``crops`` in batches of 32, the last padded with blank crops (as the stage does)."""
    rows = []
    for start in range(0, len(crops), BATCH):
        batch = crops[start : start + BATCH]
        padded = np.concatenate([batch, np.zeros((BATCH - len(batch), *batch.shape[1:]), np.uint8)])
        rows.append(function(padded)[: len(batch)])
    return np.concatenate(rows)


def _static_conv(conv: nn.Conv2d, size: int) -> tuple[nn.Module, int]:
    """Returns (``conv`` with its TensorFlow SAME padding fixed for ``size`` px input, output size): traceable."""
    kernel, stride = conv.weight.shape[-1], conv.stride[0]
    pad = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, conv.groups,
                      conv.bias is not None)
    plain.load_state_dict(conv.state_dict())
    out = math.ceil(size / stride)
    if pad % 2 == 0:
        plain.padding = (pad // 2, pad // 2)
        return plain, out
    return nn.Sequential(nn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)), plain), out


class _Block(nn.Module):
    def __init__(self, block: Any, size: int):
        super().__init__()
        self.expand, self.residual = block.expand, block.residual
        if self.expand:
            self.expand_conv, _ = _static_conv(block._expand_conv, size)
            self.bn0 = block._bn0
        self.depthwise, self.size = _static_conv(block._depthwise_conv, size)
        self.bn1 = block._bn1
        self.project, _ = _static_conv(block._project_conv, self.size)
        self.bn2 = block._bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu6(self.bn0(self.expand_conv(x))) if self.expand else x
        out = self.bn2(self.project(F.relu6(self.bn1(self.depthwise(out)))))
        return out + x if self.residual else out


class PooledStage(nn.Module):
    """EfficientNet-Lite0 up to stage ``layer``, average-pooled, with fixed paddings (FX-traceable)."""

    def __init__(self, model: EfficientNetLite0, layer: int, size: int = 224):
        super().__init__()
        self.stem, size = _static_conv(model._conv_stem, size)
        self.bn0 = model._bn0
        blocks = []
        for block in model._blocks[: model.stage_ends[layer - 1] + 1]:
            blocks.append(_Block(block, size))
            size = blocks[-1].size
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.relu6(self.bn0(self.stem(x)))).mean((2, 3))


def int8_static(encoder: Encoder, calibration: np.ndarray) -> Features:
    """Returns the features of EfficientNet-Lite0's layer 7 through an int8 model calibrated on ``calibration`` crops."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    float_model = PooledStage(copy.deepcopy(encoder.model), LAYER).eval()
    example = encoder._to_tensor(calibration[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(float_model, get_default_qconfig_mapping("x86"), (example,))
        with torch.inference_mode():
            for start in range(0, len(calibration), BATCH):
                prepared(encoder._to_tensor(calibration[start : start + BATCH]))
        quantised = convert_fx(prepared)

    def features(crops: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return quantised(encoder._to_tensor(crops).contiguous()).float().numpy()

    return features


def bf16(function: Callable[[np.ndarray], Any]) -> Features:
    """Returns ``function`` run under CPU bfloat16 autocast."""

    def features(crops: np.ndarray) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return np.asarray(function(crops), dtype=np.float32)

    return features


def lite0_variants(names: list[str], calibration: np.ndarray) -> dict[str, Features]:
    """Returns float32 and the named variants of the offline profile's encoder."""
    encoder = copy.copy(load_encoder("efficientnet-lite0", [LAYER], "cpu"))
    folded_model = encoder.model
    encoder.model = load_efficientnet_lite0()  # the batch norms as trained: the reference
    variants: dict[str, Features] = {"fp32": lambda crops: encoder.encode(crops)[LAYER]}
    for name in names:
        if name == "bn-folded":  # what load_encoder gives
            folded = copy.copy(encoder)
            folded.model = folded_model
            variants[name] = lambda crops, folded=folded: folded.encode(crops)[LAYER]
        elif name == "bf16":
            variants[name] = bf16(lambda crops: encoder.encode(crops)[LAYER])
        elif name == "int8":
            variants[name] = int8_static(encoder, calibration)
        else:
            raise ValueError(f"unknown variant {name!r}; choose from bn-folded, bf16, int8")
    return variants


def speed_ups(variants: dict[str, Callable[[Any], Any]], inputs: list[Any], rounds: int) -> dict[str, float]:
    """Returns variant -> median over rounds of float32's seconds over the variant's, on the same inputs."""
    for function in variants.values():
        function(inputs[0])
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, function in variants.items():
            start = time.perf_counter()
            for item in inputs:
                function(item)
            times[name].append(time.perf_counter() - start)
    reference = np.array(times["fp32"])
    return {name: float(np.median(reference / np.array(seconds))) for name, seconds in times.items()}


def clusters_with(workdir: Path, settings: Settings, features: np.ndarray, scratch: Path) -> np.ndarray:
    """Returns the cluster stage's labels on ``workdir``'s embedding with its layer-7 features replaced by ``features``."""
    if scratch.exists():
        shutil.rmtree(scratch)
    for stage in ("roi", "masks", "embed"):
        shutil.copytree(workdir / stage, scratch / stage)
    np.save(scratch / "embed" / f"features_layer{LAYER}.npy", features.astype(np.float32))
    cluster.run(Workspace(scratch), settings)
    return np.asarray(read_assignments(Workspace(scratch))["cluster"])


def cosines(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Returns the (N,) cosine of each row of ``features`` with the same row of ``reference``."""
    dot = (features * reference).sum(axis=1)
    return dot / np.maximum(np.linalg.norm(features, axis=1) * np.linalg.norm(reference, axis=1), 1e-12)


def agreement(workdirs: list[Path], variants: dict[str, Features], scratch: Path) -> None:
    """Prints each variant's cosine with float32 and the ARI of its clusters, per work directory."""
    from sklearn.metrics import adjusted_rand_score

    print(f"{'work directory':<28} {'variant':<10} {'crops':>6} {'mean cos':>9} {'min cos':>9} {'cluster ARI':>12}")
    for workdir in workdirs:
        settings = load_settings(workdir / "settings.yaml", ["embed.device=cpu"])
        if not (workdir / "embed" / "manifest.json").exists():
            embed.run(Workspace(workdir), settings)
        crops = crops_of(workdir, settings)
        features = {name: in_batches(function, crops) for name, function in variants.items()}
        labels = {name: clusters_with(workdir, settings, rows, scratch / name) for name, rows in features.items()}
        for name, rows in features.items():
            cos = cosines(rows, features["fp32"])
            ari = adjusted_rand_score(labels["fp32"], labels[name])
            print(f"{str(workdir)[-28:]:<28} {name:<10} {len(crops):>6} {cos.mean():>9.5f} {cos.min():>9.5f} {ari:>12.4f}",
                  flush=True)


def vit_and_sam(sam: bool, vit: bool, rounds: int) -> None:
    """Prints float32 / bf16 / int8-dynamic speed-ups and cosines of DINOv2 ViT-B and the SAM ViT-L image encoder."""
    from torch.ao.quantization import quantize_dynamic
    from transformers import Dinov2Config, Dinov2Model, SamVisionConfig, SamVisionModel

    torch.manual_seed(0)
    models: dict[str, tuple[nn.Module, torch.Tensor, Callable[[Any], torch.Tensor]]] = {}
    if vit:
        crops = torch.randn(BATCH, 3, 224, 224)
        models["DINOv2 ViT-B, 32 crops"] = (Dinov2Model(Dinov2Config()).eval(), crops,
                                           lambda out: out.hidden_states[12][:, 0])
    if sam:
        config = SamVisionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                 global_attn_indexes=[5, 11, 17, 23])
        encoder = SamVisionModel(config).eval()
        # transformers' initialisation leaves this encoder's output near 1e-20 (cosines underflow to 0);
        # PyTorch's default initialisation of each layer keeps activations of order 1, as trained weights do
        for module in encoder.modules():
            if module is not encoder and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        models["SAM ViT-L image encoder"] = (encoder, torch.randn(1, 3, 1024, 1024),
                                            lambda out: out.last_hidden_state)
    print(f"{'model':<26} {'variant':<10} {'speed-up':>9} {'cosine':>9}")
    for label, (model, pixels, pick) in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantised = quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)

        def run(net: nn.Module, inputs: torch.Tensor, autocast: bool = False,
                pick: Callable[[Any], torch.Tensor] = pick) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                return pick(net(inputs, output_hidden_states=True)).float()

        functions = {"fp32": lambda x, net=model: run(net, x), "bf16": lambda x, net=model: run(net, x, True),
                     "int8-dyn": lambda x, net=quantised: run(net, x)}
        outputs = {name: function(pixels).reshape(len(pixels), -1) for name, function in functions.items()}
        for name, speed in speed_ups(functions, [pixels], rounds).items():
            cos = F.cosine_similarity(outputs[name], outputs["fp32"], dim=1).min()
            print(f"{label:<26} {name:<10} {speed:>9.2f} {float(cos):>9.5f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdirs", default="", help="comma-separated work directories (roi and masks finished); first = calibration")
    parser.add_argument("--variants", default="bn-folded,bf16,int8")
    parser.add_argument("--calibration", type=int, default=128, help="int8: crops of the first work directory to calibrate on")
    parser.add_argument("--speed-batches", type=int, default=2, help="batches of 32 real crops per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vit", action="store_true", help="also DINOv2 ViT-B (random weights)")
    parser.add_argument("--sam", action="store_true", help="also the SAM ViT-L image encoder (random weights)")
    args = parser.parse_args()
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    bf16_hardware = [flag for flag in ("avx512_bf16", "amx_bf16") if f" {flag}" in flags]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, bf16 hardware: {', '.join(bf16_hardware) or 'none'}; "
          f"load average {os.getloadavg()[0]:.1f}")
    workdirs = [Path(w) for w in args.workdirs.split(",") if w]
    if workdirs:
        first = load_settings(workdirs[0] / "settings.yaml", ["embed.device=cpu"])
        calibration = crops_of(workdirs[0], first)
        calibration = calibration[np.random.default_rng(0).permutation(len(calibration))[: args.calibration]]
        variants = lite0_variants([v for v in args.variants.split(",") if v], calibration)
        batches = [calibration[i * BATCH : (i + 1) * BATCH] for i in range(args.speed_batches)]
        print(f"EfficientNet-Lite0 layer {LAYER}, {args.speed_batches} batches of {BATCH} real crops, {args.rounds} rounds:")
        for name, speed in speed_ups(variants, batches, args.rounds).items():
            print(f"  {name:<10} speed-up {speed:.2f}")
        with tempfile.TemporaryDirectory() as tmp:
            agreement(workdirs, variants, Path(tmp))
    if args.vit or args.sam:
        vit_and_sam(args.sam, args.vit, args.rounds)


if __name__ == "__main__":
    main()
