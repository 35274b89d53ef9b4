"""A multi-host deployment on one machine: API hosts and graph workers, each in a network
namespace of its own, behind HAProxy, sharing one PostgreSQL and one Redis.

    python -m deploy.multihost up [--api 3] [--workers 2] [--net 77] [--port 18080]
    python -m deploy.multihost status [--net 77]
    python -m deploy.multihost kill api1|worker1 [--net 77]     # SIGKILL one host's process
    python -m deploy.multihost down [--net 77]

Topology (net 77): a bridge `bmh77br` at 10.77.0.1/24 in the machine's own namespace; API
host i is namespace `bmh77-api<i>` at 10.77.0.1<i> (`besmart serve` on port 8000), graph
worker j is `bmh77-wrk<j>` at 10.77.0.2<j> (`besmart graph worker`), each joined to the
bridge by a veth pair. The namespaces have no default route: they reach each other and
10.77.0.1 only. PostgreSQL and Redis stay bound to 127.0.0.1 (their configuration is not
touched): two socat forwards bound to 10.77.0.1 carry 5432 and 6379 to them, and stop with
`down`. HAProxy (Debian's package; its system service is not used) listens on
127.0.0.1:<port> and balances over the API hosts.

Each `up` makes a database of its own (`besmart_mh<net>`) with one client and one user (the
credentials are in `status`), and `down` removes everything `up` made: processes, namespaces,
links, the database and the queue's Redis keys. Both are idempotent; a failing `up` runs
`down`. Needs root (namespaces) and the `ip`, `socat` and `haproxy` commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

API_PORT = 8000
START_TIMEOUT_S = 90.0
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Host:
    """One namespace and the process it runs."""

    name: str  # api1, worker1
    ns: str
    ip: str
    pid: int = 0


@dataclass
class State:
    """What `up` made (state.json in the run folder): what `down`, `status`, tests read."""

    net: int
    port: int
    database: str
    database_url: str  # as the hosts reach it (through the bridge)
    queue: str
    lease_seconds: float
    login: str = ""
    password: str = ""
    client_cid: int = 0
    hosts: list[Host] = field(default_factory=list)
    helpers: dict[str, int] = field(default_factory=dict)  # socat, haproxy: pids

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


def run_dir(net: int) -> Path:
    return Path(os.environ.get("BESMART_MULTIHOST_DIR", "/tmp")) / f"besmart-multihost-{net}"


def prefix(net: int) -> str:
    return f"bmh{net}"


def gateway(net: int) -> str:
    return f"10.{net}.0.1"


def load_state(net: int) -> State | None:
    path = run_dir(net) / "state.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    hosts = [Host(**h) for h in raw.pop("hosts")]
    return State(**raw, hosts=hosts)


def save_state(state: State) -> None:
    (run_dir(state.net) / "state.json").write_text(json.dumps(asdict(state), indent=2))


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A setup command; its output is kept for the error when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def _env(state: State, **extra: str) -> dict[str, str]:
    """The environment of a besmart process: this one's PATH/PYTHONPATH and the settings."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME", "LANG")}
    return {
        **keep,
        "BESMART_DATABASE_URL": state.database_url,
        "BESMART_DEMO": "false",
        "BESMART_EXECUTOR": "dramatiq",
        "BESMART_BROKER_URL": f"redis://{gateway(state.net)}:6379/0",
        "BESMART_BROKER_QUEUE": state.queue,
        "BESMART_GRAPH_LEASE_SECONDS": str(state.lease_seconds),
        **extra,
    }


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """A detached process (its own session, so it outlives this command); its pid."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


# The processes this one started (kept so that `_stop` reaps them, not left as zombies).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # a zombie of ours (the test's process started it) is not alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(what: str, ready: Any, pid: int | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if pid is not None and not _alive(pid):
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{what} exited while starting:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.2)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # any HTTP answer: the server is up
    except OSError:
        return False
    return True


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.encode())


# --- network ----------------------------------------------------------------------------------


def _add_host(net: int, name: str, ns: str, ip: str, bridge: str) -> None:
    outer = f"{prefix(net)}{name[0]}{name[-1]}"  # bmh77a1, bmh77w2: at most 15 characters
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "link", "set", outer, "master", bridge)
    sh("ip", "link", "set", outer, "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")


def _haproxy_cfg(state: State) -> str:
    servers = "\n".join(
        f"    server {h.name} {h.ip}:{API_PORT} check inter 500ms fall 2 rise 2"
        for h in state.hosts
        if h.name.startswith("api")
    )
    return f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    # a request is sent again only when it never reached a host (a refused connection):
    # a write a host may have stored before it died is never sent twice
    retries 3
    retry-on conn-failure
    option redispatch
frontend api
    bind 127.0.0.1:{state.port}
    default_backend hosts
backend hosts
    balance roundrobin
    option forwardfor
{servers}
"""


# --- up / down ---------------------------------------------------------------------------------


def up(
    *,
    api: int,
    workers: int,
    net: int,
    port: int,
    lease_seconds: float = 30.0,
    threads: int = 2,
) -> State:
    """Build the deployment (after a `down` of whatever a previous one left)."""
    for tool in ("ip", "socat", "haproxy"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise RuntimeError(f"{tool} is not installed (apt-get install {tool})")
    down(net=net)
    folder = run_dir(net)
    folder.mkdir(parents=True, exist_ok=True)
    gw = gateway(net)
    database = f"besmart_mh{net}"
    state = State(
        net=net,
        port=port,
        database=database,
        database_url=f"postgresql://postgres@{gw}:5432/{database}",
        queue=f"besmart-mh{net}",
        lease_seconds=lease_seconds,
    )
    save_state(state)
    try:
        _build(state, api=api, workers=workers, threads=threads)
    except BaseException:
        down(net=net)
        raise
    return state


def _build(state: State, *, api: int, workers: int, threads: int) -> None:
    net, folder, gw = state.net, run_dir(state.net), gateway(state.net)
    bridge = f"{prefix(net)}br"
    sh("ip", "link", "add", bridge, "type", "bridge")
    sh("ip", "addr", "add", f"{gw}/24", "dev", bridge)
    sh("ip", "link", "set", bridge, "up")
    for i in range(1, api + 1):
        state.hosts.append(Host(f"api{i}", f"{prefix(net)}-api{i}", f"10.{net}.0.{10 + i}"))
    for j in range(1, workers + 1):
        state.hosts.append(Host(f"worker{j}", f"{prefix(net)}-wrk{j}", f"10.{net}.0.{20 + j}"))
    for h in state.hosts:
        _add_host(net, h.name, h.ns, h.ip, bridge)
    save_state(state)

    # PostgreSQL and Redis keep listening on 127.0.0.1 only: a forward bound to the bridge
    for name, service_port in (("pg", 5432), ("redis", 6379)):
        state.helpers[f"socat-{name}"] = _spawn(
            [
                "socat",
                f"TCP-LISTEN:{service_port},bind={gw},reuseaddr,fork",
                f"TCP:127.0.0.1:{service_port}",
            ],
            folder / f"socat-{name}.log",
        )
    save_state(state)

    _pg_admin(f'CREATE DATABASE "{state.database}"')
    local = {**_env(state), "BESMART_DATABASE_URL": state.database_url.replace(gw, "127.0.0.1")}
    besmart = [sys.executable, "-m", "besmart_server"]
    subprocess.run([*besmart, "db", "upgrade"], env=local, check=True, capture_output=True)
    added = subprocess.run(
        [*besmart, "client", "add", "multihost"],
        env=local,
        check=True,
        capture_output=True,
        text=True,
    )
    state.client_cid = int(added.stdout.split()[-1])
    state.login, state.password = "loader", secrets.token_urlsafe(12)
    subprocess.run(
        [
            *besmart,
            *("user", "add", state.login, "--client", str(state.client_cid)),
            *("--role", "owner", "--password", state.password),
        ],
        env=local,
        check=True,
        capture_output=True,
    )
    save_state(state)

    for h in state.hosts:
        log = folder / f"{h.name}.log"
        if h.name.startswith("api"):
            # the client address of a login (its throttling) is the one HAProxy forwards
            env = _env(state, FORWARDED_ALLOW_IPS=gw)
            cmd = ["serve", "--host", h.ip, "--port", str(API_PORT)]
        else:
            env = _env(state)
            cmd = ["graph", "worker", "--threads", str(threads)]
        h.pid = _spawn(["ip", "netns", "exec", h.ns, *besmart, *cmd], log, env)
        save_state(state)
    for h in state.hosts:
        log = folder / f"{h.name}.log"
        if h.name.startswith("api"):
            url = f"http://{h.ip}:{API_PORT}/api/users/me"
            _wait(h.name, lambda u=url: _answers(u), h.pid, log)
        else:
            _wait(h.name, lambda p=log: b"graph worker on" in p.read_bytes(), h.pid, log)

    cfg = folder / "haproxy.cfg"
    cfg.write_text(_haproxy_cfg(state))
    sh("haproxy", "-c", "-q", "-f", str(cfg))
    state.helpers["haproxy"] = _spawn(["haproxy", "-db", "-f", str(cfg)], folder / "haproxy.log")
    save_state(state)
    _wait("haproxy", lambda: _answers(f"{state.base_url}/api/users/me"), state.helpers["haproxy"])


def _stop(pid: int) -> None:
    """SIGTERM a process (and the session it leads) we started; SIGKILL after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + wait_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _alive(pid):
            break
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)


def down(*, net: int) -> None:
    """Remove what `up` made for this net (whatever is left of it; safe to run twice)."""
    state = load_state(net)
    pre = prefix(net)
    if state is not None:
        if "haproxy" in state.helpers:
            _stop(state.helpers["haproxy"])
        for h in state.hosts:
            if h.pid:
                _stop(h.pid)
    # anything still running in our namespaces is ours (a process a host started)
    namespaces = [
        line.split()[0]
        for line in sh("ip", "netns", "list", check=False).stdout.splitlines()
        if line.startswith(f"{pre}-")
    ]
    for ns in namespaces:
        for found in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(found), signal.SIGKILL)
        sh("ip", "netns", "delete", ns, check=False)
    if state is not None:
        for pid in state.helpers.values():
            _stop(pid)
    links = sh("ip", "-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(pre):
            sh("ip", "link", "delete", name, check=False)
    if state is not None:
        try:
            _pg_admin(f'DROP DATABASE IF EXISTS "{state.database}" WITH (FORCE)')
        except Exception as exc:  # PostgreSQL down: nothing of ours is left in it to drop
            print(f"database {state.database} not dropped: {exc}", file=sys.stderr)
        _drop_queue(state.queue)
    folder = run_dir(net)
    if folder.exists():
        shutil.rmtree(folder)


def _drop_queue(queue: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            keys = list(client.scan_iter(match=f"dramatiq:{queue}*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    except Exception as exc:  # Redis down: nothing of ours is left in it
        print(f"queue {queue} not cleaned: {exc}", file=sys.stderr)


def kill(state: State, name: str) -> int:
    """SIGKILL one host's process (a crash: no shutdown, no lease released); its pid."""
    h = state.host(name)
    os.kill(h.pid, signal.SIGKILL)
    child = _children.pop(h.pid, None)
    if child is not None:
        child.wait(timeout=10)
    return h.pid


def status(state: State) -> dict[str, Any]:
    """Each host, whether its process is alive, and how to reach the load balancer."""
    return {
        "url": state.base_url,
        "login": state.login,
        "password": state.password,
        "client_cid": state.client_cid,
        "database": state.database,
        "hosts": {h.name: {"ip": h.ip, "pid": h.pid, "alive": _alive(h.pid)} for h in state.hosts},
        "helpers": {k: {"pid": p, "alive": _alive(p)} for k, p in state.helpers.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.multihost", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "kill"])
    parser.add_argument("target", nargs="?", help="kill: api1, worker2...")
    parser.add_argument("--net", type=int, default=77, help="10.NET.0.0/24 (default 77)")
    parser.add_argument("--api", type=int, default=3, help="API hosts (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="graph workers (default 2)")
    parser.add_argument("--port", type=int, default=18080, help="HAProxy's port on 127.0.0.1")
    parser.add_argument("--lease", type=float, default=30.0, help="graph run lease, seconds")
    args = parser.parse_args(argv)
    if not 2 <= args.net <= 254 or not 1 <= args.api <= 9 or not 0 <= args.workers <= 9:
        parser.error("--net is 2..254, --api 1..9, --workers 0..9")
    if args.command == "up":
        state = up(
            api=args.api,
            workers=args.workers,
            net=args.net,
            port=args.port,
            lease_seconds=args.lease,
        )
        print(json.dumps(status(state), indent=2))
    elif args.command == "down":
        down(net=args.net)
    else:
        found = load_state(args.net)
        if found is None:
            print(f"no deployment on net {args.net}", file=sys.stderr)
            return 1
        if args.command == "kill":
            if not args.target:
                parser.error("kill needs a host: api1, worker1...")
            print(kill(found, args.target))
        else:
            print(json.dumps(status(found), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
