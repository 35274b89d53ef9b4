"""MQTT ingestion: devices, the broker's configuration and the bridge into the series store."""
