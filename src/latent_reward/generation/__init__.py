"""Batched generation with a KV cache, seeded per sequence, with optional residual-stream reads and interventions,
and steering as a context manager."""

from latent_reward.generation.batched import GenerationConfig, Reply, generate, generate_chat
from latent_reward.generation.interventions import Intervention
from latent_reward.generation.steering import SteeringVector, steering

__all__ = ["GenerationConfig", "Intervention", "Reply", "SteeringVector", "generate", "generate_chat", "steering"]
