"""Settings from the environment (prefix BESMART_); built explicitly, never at import time."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./data/besmart.db"


class Settings(BaseSettings):
    """Every knob of the server; each field documents itself in the README's table."""

    model_config = SettingsConfigDict(env_prefix="BESMART_", frozen=True, extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="sqlite:///path or postgresql://user@host:port/db",
    )
    sqlite_synchronous: str = Field(
        "NORMAL",
        pattern="^(OFF|NORMAL|FULL|EXTRA)$",
        description="SQLite PRAGMA synchronous (WAL): NORMAL survives process crashes",
    )
    sqlite_checkpoint_seconds: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="the server checkpoints SQLite's WAL this often on a thread of its own "
        "(0: SQLite does it inside the commit that fills 1,000 WAL pages)",
    )
    pg_vacuum_seconds: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="while PostgreSQL's autovacuum is off, the server looks this often on a "
        "thread of its own for tables with many dead rows and vacuums them (0: never)",
    )
    token_ttl_seconds: int = Field(7200, ge=60, description="lifetime of login tokens")
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed by CORS (JSON list)"
    )
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="largest accepted request body (413 above)"
    )
    max_points_per_request: int = Field(
        2_000_000, ge=1, description="points one write request may carry (413 above)"
    )
    max_points_per_read: int = Field(
        5_000_000, ge=1, description="points one read may return (413 above)"
    )
    max_items_per_request: int = Field(
        10_000, ge=1, description="items in one multi-series request (413 above)"
    )
    max_window_days: int = Field(
        3660,
        ge=1,
        description="longest since..till window one delta_t read may span, in days (413 above); "
        "raw reads are bounded by max_points_per_read only",
    )
    login_max_failures: int = Field(
        5, ge=1, description="failed logins per login within the window before 429"
    )
    login_max_failures_per_address: int = Field(
        20, ge=1, description="failed logins per client address within the window before 429"
    )
    login_window_seconds: int = Field(300, ge=1, description="throttling window for failures")
    weather_radius_km: float = Field(
        50.0, gt=0, description="weather: grid points farther than this from a query are not used"
    )
    weather_neighbours: int = Field(
        4, ge=1, le=64, description="weather: grid points interpolated (inverse distance) at most"
    )
    demo: bool = Field(True, description="load demo data on the first serve of an empty database")
    executor: str = Field(
        "inprocess",
        pattern="^(inprocess|dramatiq)$",
        description="graphs: where task_async runs go: a thread of the server (inprocess) or "
        "workers behind a broker (dramatiq; start them with `besmart graph worker`)",
    )
    broker_url: str = Field(
        "redis://127.0.0.1:6379/0", description="graphs: the Redis broker of the dramatiq executor"
    )
    broker_queue: str = Field(
        "besmart-graphs", description="graphs: the queue the dramatiq executor and workers use"
    )
    graph_threads: int = Field(
        2, ge=1, le=64, description="graphs: concurrent task_async runs per server (inprocess)"
    )
    graph_lease_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="graphs: a running run's lease, renewed every third of it; a run whose "
        "worker stopped renewing is queued again (or failed) once it has run out",
    )
    graph_max_attempts: int = Field(
        3, ge=1, le=20, description="graphs: times a run is started before it is failed"
    )
    validate_after_write: bool = Field(
        True,
        description="vee: queue the windows every write touched for validation (by a "
        "validation worker, after the write's commit) and the audit of estimated and "
        "corrected points",
    )
    validate_in_serve: bool = Field(
        True,
        description="vee: `besmart serve` starts one validation worker process (`besmart vee "
        "worker`) beside the API and stops it with the API; off when the workers run "
        "elsewhere (several hosts: one or more `besmart vee worker` in all)",
    )
    validate_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="vee: a validation worker looks at the queue this often (a read of one "
        "row; writers queue their windows and wake nobody, whichever process they are in)",
    )
    validate_delay_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="vee: each drain of the validation queue looks at it this long after the "
        "poll that started it, so the windows of a burst of writes (a bulk load) are claimed "
        "together, merged per series",
    )
    validate_max_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="vee: while writes keep coming, a worker's drains of the validation queue "
        "take at most this share of its time: after a drain it rests in proportion (a drain "
        "of 1 s, then 3 s at 0.25), so a bulk load is validated in fewer, larger windows and "
        "the API and the database keep the cores; 1 drains again after "
        "validate_delay_seconds",
    )
    validate_max_lag_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="vee: while writes keep coming (the queue grew during a drain's "
        "validate_delay_seconds), a drain waits for them to pause, unless the oldest window "
        "waiting has waited this long: a bulk load keeps the cores and is validated after it "
        "(or this often while it lasts); 0 drains whether or not writes keep coming",
    )
    mqtt_broker_url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="mqtt: the broker the bridge subscribes to (mqtt://[user:password@]host:port)",
    )
    mqtt_config_dir: str | None = Field(
        None,
        description="mqtt: the folder `besmart mqtt config` wrote; device changes rewrite its "
        "password file and reload the broker, and the bridge reads its secret there",
    )
    mqtt_bridge: bool = Field(False, description="mqtt: `besmart serve` also runs the bridge")
    mqtt_dedupe_days: float = Field(
        7.0, gt=0, description="mqtt: how long a message's identity is kept to drop redeliveries"
    )
    secret_pepper: SecretStr = Field(
        SecretStr(""), description="optional pepper mixed into token and API key hashes"
    )
