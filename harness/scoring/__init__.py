"""Scorers: functions that turn one model response into a judgment. The keyword rules live here so
that lm-eval task scorers (tasks/*/utils.py), the reference-model build and the tests share one
definition."""
