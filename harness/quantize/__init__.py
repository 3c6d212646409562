"""Quantization methods behind one interface (see base.py)."""
