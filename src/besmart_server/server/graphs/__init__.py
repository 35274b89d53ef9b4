"""Estimation graphs: a pure DAG engine over time series, its operators and the shipped graphs."""
