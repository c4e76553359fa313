"""Probes that read a rating out of residual states: ridge (the default), sgd, mlp, mean_diff, pairwise.

Importing this package registers every kind in `Probe.registry`; `Probe.create(kind, settings)`
builds one from its own settings model (`Probe.registry[kind].Settings`). A new kind is one module here,
subclassing `Probe` with a `kind` name and its `Settings`, imported below.
"""

from latent_reward.probes.base import Probe, ProbeOptions, Standardizer, probe_class
from latent_reward.probes.info import ProbeInfo, ProbeProvenance, Provenance
from latent_reward.probes.mean_diff import MeanDiffProbe, MeanDiffSettings
from latent_reward.probes.mlp import MLPProbe, MLPSettings
from latent_reward.probes.module import ProbeModule
from latent_reward.probes.pairwise import PairwiseProbe, PairwiseSettings
from latent_reward.probes.ridge import RidgeProbe, RidgeSettings, fit_ridge_all_layers, ridge_cv_all_layers
from latent_reward.probes.settings import ProbeSettings, TrainConfig
from latent_reward.probes.sgd import SGDProbe, SGDSettings

DEFAULT_PROBE = RidgeProbe.kind  # the kind the sweep fits unless told otherwise, and the one its figures show first

__all__ = [
    "DEFAULT_PROBE",
    "MLPProbe",
    "MLPSettings",
    "MeanDiffProbe",
    "MeanDiffSettings",
    "PairwiseProbe",
    "PairwiseSettings",
    "Probe",
    "ProbeInfo",
    "ProbeModule",
    "ProbeOptions",
    "ProbeProvenance",
    "ProbeSettings",
    "Provenance",
    "RidgeProbe",
    "RidgeSettings",
    "SGDProbe",
    "SGDSettings",
    "Standardizer",
    "TrainConfig",
    "fit_ridge_all_layers",
    "probe_class",
    "ridge_cv_all_layers",
]
