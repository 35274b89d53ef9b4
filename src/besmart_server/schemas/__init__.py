"""The wire contract: pydantic models with the spec's field names; no SQLAlchemy, no FastAPI."""
