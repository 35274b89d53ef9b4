"""Weather: grid points as sensors of a system client, providers, interpolation, clear sky."""
