"""The wire contract: pydantic models with the spec's field names; no SQLAlchemy, no FastAPI."""

# Ids (clients, sensors, signal types, units, runs...) are 32-bit columns in the database: a
# larger one is a 422 at the boundary that names it, never an overflow in a driver.
ID_MAX = 2**31 - 1
