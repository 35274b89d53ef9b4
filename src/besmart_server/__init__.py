"""besmart-server: an energy-data platform implementing the besmart REST API v0.44.44.7."""

__version__ = "0.1.0"
API_VERSION = "0.44.44.7"
