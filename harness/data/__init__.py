"""Public data sets (the catalogue and where each is read from), calibration tiers and their audit."""
