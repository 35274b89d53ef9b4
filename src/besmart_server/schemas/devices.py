"""MQTT devices and the messages the bridge refused, on the wire."""

from __future__ import annotations

from pydantic import BaseModel, Field

from besmart_server.schemas import ID_MAX


class DeviceCreate(BaseModel):
    """POST /api/devices body: a device of one client, limited to some of its sensors."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="the MQTT username and the topic level after besmart/v1/",
    )
    client_cid: int = Field(ge=0, le=ID_MAX)
    sensors: list[int] | None = Field(
        None, description="sensor_mids the device may write; none: every sensor of the client"
    )


class Device(BaseModel):
    """A device as listed (never its secret)."""

    name: str
    client_cid: int
    sensors: list[int] | None = Field(description="null: every sensor of the client")
    created_at: int = Field(description="UTC unix ms")
    revoked_at: int | None = Field(description="UTC unix ms, or null while the device may publish")


class DeviceCreated(Device):
    """A new device with its MQTT credentials; the secret is shown this once."""

    username: str
    secret: str
    topic_prefix: str


class RejectedMessage(BaseModel):
    """A message the bridge acknowledged without storing it, and why."""

    id: int
    received_at: int = Field(description="UTC unix ms")
    client_cid: int | None
    device: str
    topic: str
    payload: str = Field(description="the payload as text (truncated to 4,096 characters)")
    reason: str
