"""The one device-aware path from a resolved model and prompts to text: lm-eval's hf/vllm behind the store."""
