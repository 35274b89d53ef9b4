"""Mosquitto's configuration for the platform, and keeping its password file in step.

`write_config` writes DIR/mosquitto.conf, DIR/acl, DIR/passwd (every device that may publish,
plus the bridge's account) and DIR/bridge.secret; `sync_accounts` rewrites the password file
after a device is added or revoked and makes a running broker reload it (SIGHUP to the pid in
DIR/mosquitto.pid).
"""

from __future__ import annotations

import getpass
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy import Connection

from besmart_server.server.mqtt import passwords, service
from besmart_server.server.mqtt.service import BRIDGE_USER

SECRET_FILE: Final = "bridge.secret"
# Messages the broker keeps per offline persistent session (the bridge's, while it is down).
# Mosquitto's default of 1,000 silently drops the rest: here room for ~10 minutes of 20,000/s.
MAX_QUEUED: Final = 10_000_000
# QoS 1 messages sent to the bridge before it acknowledges: its batches (up to 5,000
# messages) need several in flight at once; Mosquitto's default of 20 caps it at ~100/s.
MAX_INFLIGHT: Final = 20_000
# Seconds between the broker's snapshots to disk: what a broker crash (not a stop) may lose
# of what it acknowledged but had not yet delivered to the bridge (see the README).
AUTOSAVE_SECONDS: Final = 10


@dataclass(frozen=True, slots=True)
class Paths:
    """The files of one broker configuration directory."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def passwd(self) -> Path:
        return self.root / "passwd"

    @property
    def acl(self) -> Path:
        return self.root / "acl"

    @property
    def pid(self) -> Path:
        return self.root / "mosquitto.pid"

    @property
    def secret(self) -> Path:
        return self.root / SECRET_FILE

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "mosquitto.log"


def render_conf(
    paths: Paths, *, port: int, bind: str, run_as: str, autosave_seconds: int = AUTOSAVE_SECONDS
) -> str:
    """mosquitto.conf for the platform's broker."""
    return f"""# Written by `besmart mqtt config`; device changes rewrite the password file.
pid_file {paths.pid}
# Mosquitto started as root switches to this user: it must own the files below.
user {run_as}
per_listener_settings false
listener {port} {bind}
allow_anonymous false
password_file {paths.passwd}
acl_file {paths.acl}

persistence true
persistence_location {paths.data}/
# A snapshot every {autosave_seconds} s: a broker crash (not a stop, which saves) may lose
# messages it acknowledged (PUBACK) in the last {autosave_seconds} s and had not delivered.
autosave_interval {autosave_seconds}
persistent_client_expiration 30d
max_queued_messages {MAX_QUEUED}
max_queued_bytes 0
max_inflight_messages {MAX_INFLIGHT}
max_packet_size 1048576

log_dest file {paths.log}
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
"""


def render_acl() -> str:
    """The ACL: the bridge reads every device's topics, a device writes only its own."""
    return f"""# Written by `besmart mqtt config`.
user {BRIDGE_USER}
topic read besmart/v1/#

# Every device (its username is %u) may publish under its own prefix, nothing else.
pattern write besmart/v1/%u/#
"""


def render_passwd(accounts: Sequence[tuple[str, str]], bridge_hash: str) -> str:
    """The password file: the bridge's account and every device that may publish."""
    lines = [f"{BRIDGE_USER}:{bridge_hash}"]
    lines.extend(f"{name}:{h}" for name, h in accounts if name != BRIDGE_USER)
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)  # a reloading broker never reads half a file


def bridge_secret(root: Path) -> str:
    """The bridge's broker password, as `write_config` left it."""
    return Paths(root).secret.read_text().strip()


def write_config(
    root: Path,
    accounts: Sequence[tuple[str, str]],
    *,
    port: int = 1883,
    bind: str = "127.0.0.1",
    run_as: str | None = None,
    autosave_seconds: int = AUTOSAVE_SECONDS,
) -> Paths:
    """Write every file of a broker configuration (the bridge's secret is kept if present)."""
    paths = Paths(root.resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.data.mkdir(exist_ok=True)
    if paths.secret.exists():
        secret = bridge_secret(paths.root)
    else:
        secret = passwords.new_secret()
        _write(paths.secret, secret + "\n")
    _write(paths.secret.with_suffix(".hash"), passwords.mosquitto_hash(secret) + "\n")
    user = run_as or getpass.getuser()
    conf = render_conf(paths, port=port, bind=bind, run_as=user, autosave_seconds=autosave_seconds)
    _write(paths.conf, conf, 0o644)
    _write(paths.acl, render_acl(), 0o644)
    sync_accounts(paths.root, accounts)
    return paths


def sync_devices(conn: Connection, config_dir: str | None) -> bool:
    """Bring the broker in step with the devices after an add or a revoke (when its folder
    is configured): rewritten from this transaction's view (the change included) before it
    commits, so a broker that reloads early only accepts a login the database is about to
    hold. True when a broker was signalled."""
    if config_dir is None:
        return False
    return sync_accounts(Path(config_dir), service.broker_accounts(conn))


def sync_accounts(root: Path, accounts: Sequence[tuple[str, str]]) -> bool:
    """Rewrite the password file from these accounts and make a running broker reload it;
    True when a broker was signalled."""
    paths = Paths(root.resolve())
    bridge_hash = paths.secret.with_suffix(".hash").read_text().strip()
    _write(paths.passwd, render_passwd(accounts, bridge_hash))
    return reload(paths.root)


def reload(root: Path) -> bool:
    """SIGHUP to the broker of this configuration (it rereads password and ACL files)."""
    try:
        pid = int(Paths(root).pid.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True
