"""Model sources: the registry (names -> hub ids, zoo builds, local directories) and variants built on demand."""
