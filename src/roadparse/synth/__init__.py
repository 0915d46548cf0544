"""Synthetic drone-view road scenes with exact per-pixel ground truth (demo and test data)."""

from roadparse.synth.dataset import generate_dataset, make_tiny_dataset
from roadparse.synth.scene import render_frame, render_tile

__all__ = ["generate_dataset", "make_tiny_dataset", "render_frame", "render_tile"]
