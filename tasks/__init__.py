"""lm-eval task folders (YAML + scorer). Point lm-eval at this folder with
``TaskManager(include_path=TASKS_DIR)`` or ``lm_eval --include_path tasks/``."""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
