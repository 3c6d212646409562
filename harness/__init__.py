"""Runs things: CLI, registry, backends, run store, reference-model zoo."""
