"""A bounded mixed read/write load test of besmart-server on loopback."""
