"""A training budget that scales with the data: iterations per round from tiles and classes.

With ``selftrain.iterations: auto`` each round trains on

    crops = max(budget_crops_per_tile x tiles, budget_crops_per_class x classes)

random crops, i.e. ``iterations = ceil(crops / batch_size)`` clamped to
[``budget_min_iterations``, ``budget_max_iterations``], so a 120-tile set gets 2.4x the
iterations of a 51-tile one instead of the same number by accident. An explicit
``selftrain.iterations`` is used as given. The relabelling cost of a round (sliding windows
over every tile) is reported with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from roadparse.config import SelftrainSettings
from roadparse.windows import window_starts


@dataclass(frozen=True)
class TrainingBudget:
    """What one self-training round costs: training iterations and crops, relabelling windows."""

    tiles: int
    classes: int
    iterations: int
    batch_size: int
    relabel_windows: int
    rule: str

    @property
    def crops(self) -> int:
        """Training crops per round (iterations x batch size)."""
        return self.iterations * self.batch_size

    def describe(self) -> str:
        """Returns one line for the terminal: the numbers and the rule that gave them."""
        return (
            f"training budget per round: {self.iterations} iterations x batch {self.batch_size} = {self.crops} crops "
            f"({self.crops / max(self.tiles, 1):.1f} per tile) on {self.tiles} tiles, {self.classes} classes; "
            f"relabelling {self.relabel_windows} windows; {self.rule}"
        )


def relabel_window_count(tile_sizes: list[tuple[int, int]], window: int, overlap: float) -> int:
    """Returns how many sliding windows relabelling all tiles of these (width, height) sizes takes."""
    stride = max(1, int(round(window * (1.0 - overlap))))
    def count(length: int) -> int:
        return len(window_starts(max(length, window), window, stride))  # shorter sides are padded to one window

    return sum(count(w) * count(h) for w, h in tile_sizes)


REFERENCE_TILE_PX = 800
"""A tile of the rule is 800 x 800 px (the paper's tile); smaller tiles (e.g. 2 m at a coarser GSD)
count by their area, so the same ground at another tiling gets the same budget."""


def tile_units(tile_sizes: list[tuple[int, int]]) -> float:
    """Returns the data's size in 800 x 800-px tiles: the (width, height) tiles' area / 800²."""
    return sum(w * h for w, h in tile_sizes) / REFERENCE_TILE_PX**2


def auto_iterations(train: SelftrainSettings, n_tiles: float, n_classes: int) -> int:
    """Returns the iterations per round of the documented rule (see the module docstring);
    ``n_tiles`` counts 800 x 800-px tiles (:func:`tile_units`)."""
    crops = max(train.budget_crops_per_tile * n_tiles, train.budget_crops_per_class * n_classes)
    iterations = math.ceil(crops / train.batch_size)
    return int(min(max(iterations, train.budget_min_iterations), train.budget_max_iterations))


def training_budget(
    train: SelftrainSettings, tile_sizes: list[tuple[int, int]], n_classes: int, window: int, overlap: float
) -> TrainingBudget:
    """Returns the budget of one round: ``selftrain.iterations`` or, when 'auto', the rule's result.

    Args:
        train: training settings.
        tile_sizes: (width, height) of every training tile.
        n_classes: number of classes the network predicts.
        window: relabelling window side in pixels (``predict.window``, or ``predict.window_m`` at the tiles' working GSD).
        overlap: relabelling window overlap (``predict.overlap``).
    """
    n_tiles = len(tile_sizes)
    if train.iterations == "auto":
        units = tile_units(tile_sizes)
        iterations = auto_iterations(train, units, n_classes)
        rule = (
            f"rule: ceil(max({train.budget_crops_per_tile:g} x {units:.1f} tiles of 800x800 px, "
            f"{train.budget_crops_per_class:g} x "
            f"{n_classes} classes) / batch {train.batch_size}) within [{train.budget_min_iterations}, "
            f"{train.budget_max_iterations}] (selftrain.iterations: auto)"
        )
    else:
        iterations = int(train.iterations)
        rule = "selftrain.iterations set explicitly"
    windows = relabel_window_count(tile_sizes, window, overlap)
    return TrainingBudget(n_tiles, n_classes, iterations, train.batch_size, windows, rule)


def resolve_iterations(train: SelftrainSettings, budget: TrainingBudget) -> SelftrainSettings:
    """Returns ``train`` with ``iterations`` set to the budget's number (checkpoints no sparser than the round)."""
    return train.model_copy(
        update={"iterations": budget.iterations, "checkpoint_every": min(train.checkpoint_every, budget.iterations)}
    )
