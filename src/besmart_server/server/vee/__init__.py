"""Validation, estimation and editing (VEE) of meter data, with an audit trail."""
