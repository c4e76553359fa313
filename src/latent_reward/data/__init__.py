"""Rated conversations: one normalized Example type, loaders for each source, grouped splits."""

from latent_reward.data.formats import Dataset, FieldMap, detect_format, load_dataset
from latent_reward.data.schema import Example, group_key
from latent_reward.data.splits import split_groups, split_masks

__all__ = [
    "Dataset",
    "Example",
    "FieldMap",
    "detect_format",
    "group_key",
    "load_dataset",
    "split_groups",
    "split_masks",
]
