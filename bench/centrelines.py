"""Benchmark: centre-line length and width of ragged markings, roadparse's centre-lines against the plain skeleton.

The reference is what ``roadparse export`` measured before: the scikit-image skeleton of each
region joined into polylines as it is (spurs kept) and simplified at 1 cm, width = area / length.
Two parts:

1. **Ragged markings of known size** (:func:`roadparse.synth.ragged.ragged_marking`: edges
   moved by noise of 10 % of the width, 5 seeds each): lane line, dash, curve, curved sealing
   at 0.5 and 2 cm/px; error of length and width against the truth, pieces per marking.
2. **Synthetic frames as predictions**: the ground-truth labels of ``roadparse synth`` frames
   (highway: the demo's family; urban: reported, not tuned on) with ragged edges added to the
   markings and sealing (:func:`roadparse.synth.ragged.ragged_labels`: 0.5 cm std, smooth over
   5 cm, 0.3 px pixel noise; the reference then comes out as long as on the demo's own predictions
   in #29, +18 % on sealing, and longer on markings), measured against the ground truth's own centre-lines
   (roadparse's method on the clean labels). Per class: total length and width error, centre-line
   regions per ground-truth region, pieces per region; dashes (white regions whose oriented box is under 7 m and 4:1): median and worst
   |length error| against the long side of the ground-truth dash's oriented box; seconds.

    python bench/centrelines.py                      # both parts, 2 frames per family
    python bench/centrelines.py --frames 4 --skip-markings
"""

from __future__ import annotations

import argparse
import time

import numpy as np

AMPLITUDE_CM, CORRELATION_CM, JITTER_PX = 0.5, 5.0, 0.3
"""Ragged edges of the frames' predictions: std of the edge's offset, its smoothness, pixel noise."""
MARKINGS = [("lane line 6 m", 6.0, 0.15, None), ("dash 1.9 m", 1.9, 0.15, None),
            ("curve 3 m, r 4 m", 3.0, 0.15, 4.0), ("sealing 4 m, r 3 m", 4.0, 0.04, 3.0)]


def skeleton_length(mask: np.ndarray, gsd_cm: float, branching: bool = True) -> tuple[float, int]:
    """Returns (length in pixels, pieces) of the reference: the plain skeleton joined into polylines, simplified at 1 cm."""
    import shapely
    from skimage.morphology import skeletonize

    from roadparse.centrelines import skeleton_edges

    pixels, edges = skeleton_edges(skeletonize(mask))
    if len(edges) == 0:
        return 0.0, 0
    points = pixels[:, ::-1] + 0.5
    merged = shapely.line_merge(shapely.MultiLineString([points[list(pair)] for pair in edges]))
    merged = shapely.simplify(merged, 1.0 / gsd_cm)
    return float(merged.length), len(getattr(merged, "geoms", [merged]))


def centre_line_length(mask: np.ndarray, gsd_cm: float = 1.0, branching: bool = False) -> tuple[float, int]:
    """Returns (length in pixels, pieces) of roadparse's centre-line (the export simplifies it at 1 cm: < 0.1 % shorter)."""
    import shapely

    from roadparse.centrelines import centre_line_paths, path_length

    paths = [p for p in centre_line_paths(mask, branching=branching) if len(p) >= 2]
    if not paths:
        return 0.0, 0
    merged = shapely.line_merge(shapely.MultiLineString(paths))
    return sum(path_length(p) for p in paths), len(getattr(merged, "geoms", [merged]))


METHODS = {"skeleton (reference)": skeleton_length, "centre-line": centre_line_length}


def markings_table(seeds: int) -> None:
    from roadparse.synth.ragged import ragged_marking

    print("## Ragged markings of known size (edge noise 10 % of the width)\n")
    print("| marking | cm/px | method | length error mean / worst | width error mean / worst | pieces (max) |")
    print("|---|---|---|---|---|---|")
    for gsd in (0.5, 2.0):
        px = 100.0 / gsd
        for name, length_m, width_m, radius_m in MARKINGS:
            masks = []
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                masks.append(ragged_marking(rng, length_m * px, width_m * px, None if radius_m is None else radius_m * px,
                                            angle=float(rng.uniform(0, np.pi))))
            for method, measure in METHODS.items():
                lengths, widths, pieces = [], [], []
                for mask in masks:
                    length, count = measure(mask, gsd, name.startswith("sealing"))
                    lengths.append(100 * (length / (length_m * px) - 1))
                    widths.append(100 * (mask.sum() / max(length, 1e-9) / (width_m * px) - 1))
                    pieces.append(count)
                worst_l, worst_w = max(lengths, key=abs), max(widths, key=abs)
                print(f"| {name} | {gsd:g} | {method} | {np.mean(lengths):+.1f} / {worst_l:+.1f} % | "
                      f"{np.mean(widths):+.1f} / {worst_w:+.1f} % | {max(pieces)} |")
    print()


def oriented_box(mask: np.ndarray) -> tuple[float, float]:
    """Returns the (long, short) sides in pixels of a region's minimum rotated rectangle."""
    import shapely

    rows, cols = np.nonzero(mask)
    box = shapely.minimum_rotated_rectangle(shapely.MultiPoint(np.stack([cols, rows], axis=1) + 0.5))
    if box.geom_type != "Polygon":
        return float(box.length) + 1.0, 1.0
    x, y = box.exterior.coords.xy
    sides = np.hypot(np.diff(x), np.diff(y))
    return float(sides.max()) + 1.0, float(sides.min()) + 1.0  # pixel centres: one pixel more edge to edge


def is_dash(mask: np.ndarray, gsd_cm: float) -> bool:
    """True for a region shaped like a dash: its oriented box under 7 m long and at least 4 times longer than wide."""
    long, short = oriented_box(mask)
    return long * gsd_cm < 700 and long >= 4 * short


def frames_table(style: str, frames: int, seed: int) -> None:
    from scipy import ndimage

    from roadparse.io.labels import load_classes
    from roadparse.stages.export.vectors import BRANCHING_CLASSES
    from roadparse.synth.dataset import frame_rng
    from roadparse.synth.ragged import ragged_labels
    from roadparse.synth.styles import get_style

    classes = load_classes()
    family = get_style(style)
    gsd = family.default_gsd_cm
    names = ("white_marking", "yellow_marking", "crack_sealing")
    ids = tuple(classes.index(n) for n in names)
    totals: dict[tuple[str, str, str], float] = {}
    dashes: dict[str, list[float]] = {}
    seconds = dict.fromkeys(METHODS, 0.0)
    for index in range(frames):
        _, truth = family.render(frame_rng(seed, index), 2400, 1600, gsd)
        rng = np.random.default_rng([seed, index, 1])
        predicted = ragged_labels(rng, truth, ids, amplitude=AMPLITUDE_CM / gsd, correlation=CORRELATION_CM / gsd,
                                  background=classes.index("road"), jitter=JITTER_PX)
        for name, class_id in zip(names, ids, strict=True):
            for source, labels in (("truth", truth), ("prediction", predicted)):
                regions, count = ndimage.label(labels == class_id)
                for box_index, box in enumerate(ndimage.find_objects(regions), start=1):
                    if box is None:
                        continue
                    mask = regions[box] == box_index
                    if mask.sum() * (gsd / 100) ** 2 < 0.001:  # the export's minimum area
                        continue
                    for method, measure in METHODS.items():
                        if source == "truth" and method != "centre-line":
                            continue
                        start = time.process_time()
                        length, pieces = measure(mask, gsd, name in BRANCHING_CLASSES)
                        seconds[method] += time.process_time() - start if source == "prediction" else 0.0
                        for key, value in (("length", length), ("area", float(mask.sum())), ("pieces", pieces),
                                           ("regions", 1.0)):
                            totals[(name, f"{source}:{method}", key)] = totals.get((name, f"{source}:{method}", key), 0) + value
                        if name == "white_marking" and source == "prediction" and is_dash(mask, gsd):
                            parts, _ = ndimage.label(truth[box] == class_id)
                            overlap = np.bincount(parts[mask], minlength=parts.max() + 1)
                            overlap[0] = 0
                            reference = oriented_box(parts == overlap.argmax())[0] if overlap.any() else 0.0
                            if reference:
                                dashes.setdefault(method, []).append(100 * (length / reference - 1))
                    if name == "white_marking" and source == "truth" and is_dash(mask, gsd):
                        length, _ = centre_line_length(mask)
                        dashes.setdefault("truth centre-line", []).append(100 * (length / oriented_box(mask)[0] - 1))
    print(f"## {style} frames ({frames} x 2400 x 1600 px at {gsd:g} cm/px), ragged predictions vs the truth's centre-lines\n")
    print("| class | method | length error | width error | regions per truth region | pieces per region |")
    print("|---|---|---|---|---|---|")
    for name in names:
        truth_key = "truth:centre-line"
        if (name, truth_key, "length") not in totals:
            continue
        t_length, t_area = totals[(name, truth_key, "length")], totals[(name, truth_key, "area")]
        t_regions = totals[(name, truth_key, "regions")]
        for method in METHODS:
            key = f"prediction:{method}"
            length, area = totals[(name, key, "length")], totals[(name, key, "area")]
            width_error = (area / length) / (t_area / t_length) - 1
            regions = totals[(name, key, "regions")]
            print(f"| {name} | {method} | {100 * (length / t_length - 1):+.1f} % | {100 * width_error:+.1f} % | "
                  f"{regions / t_regions:.2f} | {totals[(name, key, 'pieces')] / regions:.2f} |")
    print("\n| white dashes (box < 7 m, 4:1) vs the truth's oriented box | n | median abs length error | worst |")
    print("|---|---|---|---|")
    for method, errors in dashes.items():
        print(f"| {method} | {len(errors)} | {np.median(np.abs(errors)):.1f} % | {max(errors, key=abs):+.1f} % |")
    ratio = seconds["centre-line"] / max(seconds["skeleton (reference)"], 1e-9)
    print(f"\nCPU seconds on the predictions: reference {seconds['skeleton (reference)']:.1f}, centre-line "
          f"{seconds['centre-line']:.1f} ({ratio:.1f}x)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2, help="synthetic frames per family")
    parser.add_argument("--seeds", type=int, default=5, help="ragged markings per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--styles", default="highway,urban")
    parser.add_argument("--skip-markings", action="store_true")
    parser.add_argument("--edge", default=None, help="AMPLITUDE_CM,CORRELATION_CM,JITTER_PX of the predictions' edges")
    args = parser.parse_args()
    if args.edge:
        global AMPLITUDE_CM, CORRELATION_CM, JITTER_PX
        AMPLITUDE_CM, CORRELATION_CM, JITTER_PX = (float(v) for v in args.edge.split(","))
    if not args.skip_markings:
        markings_table(args.seeds)
    for style in args.styles.split(","):
        if args.frames:
            frames_table(style, args.frames, args.seed)


if __name__ == "__main__":
    main()
