"""Command-line options: common flags plus the ones each model and dataset mode adds."""
