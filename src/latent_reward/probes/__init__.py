"""Probes that read a rating out of residual states: ridge (default), sgd, mlp, mean_diff, pairwise.

Importing this package registers every kind in `Probe.registry`; `Probe.create(kind, settings)`
builds one. A new kind is one module here, subclassing `Probe` with a `kind` name, imported below.
"""

from latent_reward.probes.base import Probe, Standardizer
from latent_reward.probes.mean_diff import MeanDiffProbe
from latent_reward.probes.mlp import MLPProbe
from latent_reward.probes.pairwise import PairwiseProbe
from latent_reward.probes.ridge import RidgeProbe, fit_ridge_all_layers, ridge_cv_all_layers
from latent_reward.probes.settings import ProbeSettings, TrainConfig
from latent_reward.probes.sgd import SGDProbe

__all__ = ["MLPProbe", "MeanDiffProbe", "PairwiseProbe", "Probe", "ProbeSettings", "RidgeProbe", "SGDProbe", "Standardizer",
           "TrainConfig", "fit_ridge_all_layers", "ridge_cv_all_layers"]
