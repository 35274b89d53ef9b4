"""Charts of a signal (series, completeness, forecast quality): a consumer of signals and graphs."""
