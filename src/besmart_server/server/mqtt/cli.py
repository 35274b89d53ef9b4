"""`besmart device ...` and `besmart mqtt ...`: devices, the broker's configuration, the bridge
and its dead letters. The CLI acts as the operator against BESMART_DATABASE_URL."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from besmart_server.server.cli_db import open_database
from besmart_server.server.config import Settings

device_app = typer.Typer(help="Devices that publish readings over MQTT.", no_args_is_help=True)
mqtt_app = typer.Typer(
    help="MQTT ingestion: broker configuration, the bridge, refused messages.",
    no_args_is_help=True,
)


def _mids(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"not a list of sensor_mids: {text!r} (use 3,4,7)") from exc


@device_app.command("add")
def device_add(
    name: Annotated[str, typer.Argument(help="Device name: its MQTT username and topic level.")],
    client: Annotated[int, typer.Option("--client", help="client_cid the device writes for.")],
    sensors: Annotated[
        str | None,
        typer.Option("--sensors", help="sensor_mids it may write (3,4,...); default: all."),
    ] = None,
) -> None:
    """Add a device and print its MQTT username and secret (once)."""
    from besmart_server.server.mqtt import broker, service

    settings = Settings()
    with open_database(settings) as db, db.transaction() as conn:
        created = service.add_device(conn, name=name, client_cid=client, sensor_mids=_mids(sensors))
        broker.sync_devices(conn, settings.mqtt_config_dir)
    given = ",".join(map(str, created.sensors)) if created.sensors else "all of the client's"
    typer.echo(f"device {created.name} added for client {created.client_cid} (sensors: {given})")
    typer.echo(f"  username: {created.username}")
    typer.echo(f"  secret:   {created.secret}   (shown once; keep it)")
    typer.echo(f"  topics:   {created.topic_prefix}{{sensor_mid}}/{{signal_type_moid}}")


@device_app.command("list")
def device_list(
    client: Annotated[int | None, typer.Option("--client", help="Only this client's.")] = None,
) -> None:
    """List devices (name, client, sensors, revoked)."""
    from besmart_server.server.mqtt import service

    with open_database(Settings()) as db, db.transaction(write=False) as conn:
        rows = service.list_devices(conn, None if client is None else [client])
    for d in rows:
        given = ",".join(map(str, d.sensors)) if d.sensors else "all"
        state = "revoked" if d.revoked_at is not None else "active"
        typer.echo(f"{d.name}\tclient {d.client_cid}\tsensors {given}\t{state}")


@device_app.command("revoke")
def device_revoke(name: Annotated[str, typer.Argument(help="The device to revoke.")]) -> None:
    """Revoke a device: the broker refuses its login once its password file is rewritten."""
    from besmart_server.server.mqtt import broker, service

    settings = Settings()
    with open_database(settings) as db, db.transaction() as conn:
        changed = service.revoke_device(conn, name)
        broker.sync_devices(conn, settings.mqtt_config_dir)
    typer.echo("revoked" if changed else "already revoked")


@mqtt_app.command("config")
def mqtt_config(
    directory: Annotated[Path, typer.Argument(help="Folder for mosquitto.conf and its files.")],
    port: Annotated[int, typer.Option("--port", help="The broker's port.")] = 1883,
    bind: Annotated[
        str, typer.Option("--bind", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    run_as: Annotated[
        str | None, typer.Option("--user", help="User a broker started as root runs as (you).")
    ] = None,
) -> None:
    """Write a Mosquitto configuration for the platform (listener, persistence, passwords, ACL,
    the bridge's account); set BESMART_MQTT_CONFIG_DIR to it so device changes reach it."""
    from besmart_server.server.mqtt import broker, service

    with open_database(Settings()) as db, db.transaction(write=False) as conn:
        accounts = service.broker_accounts(conn)
    paths = broker.write_config(directory, accounts, port=port, bind=bind, run_as=run_as)
    typer.echo(f"wrote {paths.conf} ({len(accounts)} device(s))")
    typer.echo(f"start the broker:  mosquitto -c {paths.conf}")
    typer.echo(f"then the bridge:   BESMART_MQTT_CONFIG_DIR={paths.root} besmart mqtt bridge")


@mqtt_app.command("bridge")
def mqtt_bridge(
    broker_url: Annotated[
        str | None, typer.Option("--broker", help="mqtt://[user:password@]host:port")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Messages per transaction at most.")] = 5000,
    linger_ms: Annotated[
        int, typer.Option(min=0, help="Longest wait for a batch to fill, in ms.")
    ] = 200,
) -> None:
    """Store what devices publish (acknowledged after commit) until SIGINT/SIGTERM."""
    import logging

    from besmart_server.server.mqtt.bridge import Bridge, broker_address

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    bridge_log = logging.getLogger("besmart.mqtt")
    bridge_log.addHandler(handler)
    bridge_log.setLevel(logging.INFO)
    settings = Settings()
    address = broker_address(broker_url or settings.mqtt_broker_url, settings.mqtt_config_dir)
    with open_database(settings) as db:
        bridge = Bridge(
            db,
            address,
            settings=settings,
            batch_max=batch,
            linger_s=linger_ms / 1000,
            dedupe_days=settings.mqtt_dedupe_days,
        )

        def _stop(*_: Any) -> None:
            bridge.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        bridge.run()
    t = bridge.totals
    typer.echo(
        f"bridge stopped: {t.stored} stored, {t.duplicates} duplicates, {t.rejected} refused"
    )


@mqtt_app.command("rejected")
def mqtt_rejected(
    client: Annotated[int | None, typer.Option("--client", help="Only this client's.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest this many.")] = 50,
) -> None:
    """List messages the bridge refused, newest first, one JSON object a line."""
    from besmart_server.server.mqtt import service

    with open_database(Settings()) as db, db.transaction(write=False) as conn:
        rows = service.list_rejected(conn, None if client is None else [client], limit=limit)
    for r in rows:
        typer.echo(orjson.dumps(r.model_dump()).decode())
