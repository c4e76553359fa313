"""Post-training with TRL (SFT, offline DPO, online RL) and its data adapters and rewards."""
