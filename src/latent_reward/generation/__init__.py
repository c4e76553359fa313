"""Batched generation with a KV cache, seeded per sequence, with optional residual-stream reads and interventions."""

from latent_reward.generation.batched import GenerationConfig, Intervention, Reply, generate, generate_chat

__all__ = ["GenerationConfig", "Intervention", "Reply", "generate", "generate_chat"]
