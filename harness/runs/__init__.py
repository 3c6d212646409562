"""Runs: one evaluation of a variant, and a sweep over a grid of variants."""
