"""The Q-resafe patch: masked-LoRA DPO on safety-critical weights."""
