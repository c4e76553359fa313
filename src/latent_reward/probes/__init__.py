"""Probes that read a rating out of residual states: ridge (default), sgd, mlp, mean_diff, pairwise."""

from latent_reward.probes.base import Probe, Standardizer
from latent_reward.probes.mean_diff import MeanDiffProbe
from latent_reward.probes.mlp import MLPProbe
from latent_reward.probes.pairwise import PairwiseProbe
from latent_reward.probes.ridge import RidgeProbe, fit_ridge_all_layers, ridge_cv_all_layers
from latent_reward.probes.sgd import SGDProbe, TrainConfig

PROBE_KINDS = tuple(Probe.registry)

__all__ = ["PROBE_KINDS", "MLPProbe", "MeanDiffProbe", "PairwiseProbe", "Probe", "RidgeProbe", "SGDProbe", "Standardizer",
           "TrainConfig", "fit_ridge_all_layers", "ridge_cv_all_layers"]
