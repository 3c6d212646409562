"""Runs things, one subpackage per idea (core, models, quantize, generation, data, scoring, runs, judges,
boards, cli, zoo) plus the run store."""
