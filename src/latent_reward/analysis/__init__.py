"""Machinery the experiments share to analyse stores at any width: targets, the grid sweep, cross-fitting, the SGD
settings grid, and sketched views for choosing cells."""

from latent_reward.analysis.sketch import SketchConfig, SketchedStore, full_store, sketch_view

__all__ = ["SketchConfig", "SketchedStore", "full_store", "sketch_view"]
