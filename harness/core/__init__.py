"""The vocabulary every other part speaks: the variant spec, errors, paths, statistics, the task list.
Imports nothing else of the harness."""
