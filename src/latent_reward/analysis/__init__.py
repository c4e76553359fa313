"""Machinery the experiments share to analyse stores at any width: sketched views for choosing cells."""

from latent_reward.analysis.sketch import SketchConfig, SketchedStore, full_store, sketch_view

__all__ = ["SketchConfig", "SketchedStore", "full_store", "sketch_view"]
