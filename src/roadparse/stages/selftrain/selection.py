"""Which labels a self-training run hands on: the pseudo-labels are round 0 of every comparison.

A trained round is only worth keeping when it beats what it was trained from. With dev
labels, the stop rule and the best round compare every trained round with the best so far,
the pseudo-labels (round 0) included; a round that loses a class the pseudo-labels had
(dev IoU >= 50 % -> < 25 %) is flagged, stops the run and is never chosen. When no trained
round beats the pseudo-labels, ``best_round`` is 0: the run has no model and its labels are
the pseudo-labels, and the verdict says so and names what to change. Without dev labels
nothing can be compared with round 0: the last round is kept, and the verdict says that too.
"""

from __future__ import annotations

import math
from typing import Any

HAD_IOU = 50.0
"""A class the pseudo-labels 'had': dev IoU at least this (%)."""
LOST_IOU = 25.0
"""... and 'lost' by a round: dev IoU under this (%)."""


def lost_classes(round_zero: dict[str, Any] | None, scores: dict[str, Any] | None) -> list[str]:
    """Returns the classes with dev IoU >= HAD_IOU in the pseudo-labels and < LOST_IOU in ``scores`` (dev score dicts)."""
    if not round_zero or not scores:
        return []
    lost = []
    for name, had in round_zero["iou"].items():
        now = scores["iou"].get(name)
        if had is not None and had >= HAD_IOU and (now is None or now < LOST_IOU):
            lost.append(name)
    return lost


def stop_reason(
    round_index: int, rounds: int, metrics: dict[str, Any], history: list[dict[str, Any]], min_improvement: float
) -> str | None:
    """Returns why self-training stops after this round (None: go on).

    ``history`` holds every earlier round's metrics (round 0 = the pseudo-labels, with dev scores only when
    dev labels are given). With dev scores a round must beat the best so far by ``min_improvement`` (a
    fraction: 0.001 = 0.1 mIoU point) and lose no class; without them, successive rounds' labels must
    still differ on more than ``min_improvement`` of the pixels.
    """
    earlier = [m for m in history if m.get("dev") is not None and m["round"] < round_index]
    if metrics.get("dev") is not None and earlier:
        best = max(earlier, key=lambda m: m["dev"]["miou"])
        gain = (metrics["dev"]["miou"] - best["dev"]["miou"]) / 100.0
        if metrics.get("lost_classes"):
            return f"lost classes the pseudo-labels had: {', '.join(metrics['lost_classes'])}"
        if not gain >= min_improvement:  # also NaN
            what = "the pseudo-labels (round 0)" if best["round"] == 0 else f"round {best['round']}"
            return f"dev mIoU {metrics['dev']['miou']:.2f} does not beat {what} ({best['dev']['miou']:.2f}) by {min_improvement * 100:g} point(s)"
    elif round_index >= 2 and metrics.get("agreement") is not None:
        if metrics["agreement"] >= 1.0 - min_improvement:
            return f"label agreement {metrics['agreement']:.4f} >= {1.0 - min_improvement}"
    if round_index >= rounds:
        return f"reached selftrain.rounds = {rounds}"
    return None


def best_round(history: list[dict[str, Any]]) -> int:
    """Returns the round whose labels the run hands on: the best dev mIoU among round 0 and the trained rounds
    that lost no class (ties: the earlier round); without dev scores, the last trained round."""
    scored = [m for m in history if m.get("dev") is not None and not m.get("lost_classes")]
    scored = [m for m in scored if not math.isnan(m["dev"]["miou"])]
    if scored and any(m["round"] == 0 for m in scored):
        return int(max(scored, key=lambda m: m["dev"]["miou"])["round"])
    return int(max(m["round"] for m in history))


FIT_WEAK = 50.0
"""A class a round reproduces under this IoU (%) of its own training labels is named in the advice."""


def _advice(trained: list[dict[str, Any]]) -> str:
    """Returns what to change when no trained round beat the pseudo-labels, from what the rounds show."""
    hints = []
    first = trained[0]
    training = first.get("training") or {}
    lr = (first.get("optimizer") or {}).get("lr")
    first_loss, final_loss = training.get("first_loss"), training.get("final_loss")
    if first_loss is None or final_loss is None or not math.isfinite(final_loss) or final_loss >= first_loss:
        hints.append(f"the loss did not fall (first {first_loss}, final {final_loss}): check selftrain.lr (now {lr})")
    lost = sorted({name for m in trained for name in m.get("lost_classes") or []})
    if lost:
        hints.append(
            f"classes lost ({', '.join(lost)}): try selftrain.relabel_class_quantile (every class keeps a share of its "
            "relabelled pixels) or a longer budget (selftrain.budget_crops_per_tile)"
        )
    iterations = training.get("iterations")
    fit = first.get("fit")
    if fit is None:  # a round recorded before its fit was measured
        hints.append(f"train longer (selftrain.iterations, now {iterations}; or 'auto')")
        hints.append("or improve the pseudo-labels themselves (masks, clustering, merge map)")
        return "; ".join(hints)
    weak = sorted(((value, name) for name, value in fit["iou"].items() if value is not None and value < FIT_WEAK))
    if weak:
        shown = ", ".join(f"{name} {value:.1f} %" for value, name in weak)
        hints.append(
            f"round {first['round']} reproduces only {fit['miou']:.1f} % mIoU of the labels it was trained on ({shown}): "
            f"either it needs more iterations (selftrain.iterations, now {iterations}; or 'auto'), or those labels "
            "give one look two classes (a mixed cluster: split or discard it in the merge map)"
        )
    else:
        hints.append(
            f"round {first['round']} reproduces the labels it was trained on ({fit['miou']:.1f} % mIoU, every class "
            f"≥ {FIT_WEAK:g} %), so training longer would mostly repeat them: improve the pseudo-labels themselves "
            "(masks, clustering, merge map)"
        )
    return "; ".join(hints)


def verdict(history: list[dict[str, Any]], best: int) -> str:
    """Returns one plain sentence on the run's result for the manifest, the terminal and the report."""
    trained = [m for m in history if m["round"] >= 1]
    zero = next((m for m in history if m["round"] == 0 and m.get("dev") is not None), None)
    flagged = [f"round {m['round']} lost {', '.join(m['lost_classes'])}" for m in trained if m.get("lost_classes")]
    flags = f" Flagged: {'; '.join(flagged)}." if flagged else ""
    if zero is None:
        return (
            f"No dev labels: the trained rounds could not be compared with the pseudo-labels; round {best}'s model "
            f"is kept (the last round). Give dev labels to guard against a round that is worse.{flags}"
        )
    base = zero["dev"]["miou"]
    if best == 0:
        tried = ", ".join(f"round {m['round']} {m['dev']['miou']:.2f}" for m in trained if m.get("dev"))
        return (
            f"No trained round beat the pseudo-labels on dev (pseudo-labels {base:.2f} % mIoU; {tried}): the run's "
            f"labels are the pseudo-labels (pseudolabel/labels) and it hands on no model.{flags} To change: {_advice(trained)}."
        )
    chosen = next(m for m in trained if m["round"] == best)
    gain = chosen["dev"]["miou"] - base
    return (
        f"Round {best} is the run's model: dev mIoU {chosen['dev']['miou']:.2f} %, {gain:+.2f} points over the "
        f"pseudo-labels ({base:.2f} %).{flags}"
    )
