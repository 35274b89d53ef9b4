"""Tenant isolation under attack: an attacker tenant tries every route with the victim's ids.

Randomized (the seed is printed; BESMART_ATTACK_SEED replays one, BESMART_ATTACK_ROUNDS sets
the rounds per route): every route of the OpenAPI document is called by the attacker's owner
and reader with path ids, query filters and multi-series bodies naming the victim's client,
sensors, states, signal states, meter types, graphs and runs, mixed with the attacker's own
ids. Every attack has a twin in which each of the victim's ids is replaced by one that does
not exist. Asserted:

- no response (body or headers) carries a byte of the victim's data: its marker string, a
  value it stored, or one of its secrets (beyond what the attacker itself sent, in this
  request or an earlier one: a victim's sensor_eid sent with the attacker's own client
  creates the attacker's own sensor with that eid, which its later reads rightly return);
- the attack and its twin answer the same status and the same body (ids aside): "exists but
  not yours" cannot be told from "does not exist";
- API keys are refused as bearer tokens and tokens as API keys, on every route;
- after every attack, each row of the victim is as it was.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from besmart_server.server.db import Database
from tests.reliability.world import A_PLUS, POINTS_PER_SERIES, T0, Tenant, seed_tenant, snapshot

ROUNDS = int(os.environ.get("BESMART_ATTACK_ROUNDS", "4"))
SEED = int(os.environ.get("BESMART_ATTACK_SEED", str(random.SystemRandom().randrange(10**9))))
DAY = 86_400_000
GHOST = 900_000_000  # ids at and above this do not exist

# Query and path parameters that name a tenant's resource, and the tenant field behind each.
ID_PARAMS: dict[str, Callable[[Tenant, random.Random], Any]] = {
    "client_cid": lambda t, r: t.cid,
    "sensor_mid": lambda t, r: r.choice(t.sensor_mids),
    "node_id": lambda t, r: r.choice(t.sensor_mids),
    "sensor_state_id": lambda t, r: r.choice(t.state_ids),
    "signal_state_id": lambda t, r: r.choice(t.signal_state_ids),
    "meter_type_id": lambda t, r: r.choice(t.meter_type_ids),
    "meter_dev": lambda t, r: r.choice(t.meter_eids),
    "meter_eid": lambda t, r: r.choice(t.meter_eids),
    "sensor_eid": lambda t, r: f"{t.marker}-eid-0",
    "name": lambda t, r: r.choice(t.graph_names),
    "graph_name": lambda t, r: r.choice(t.graph_names),
    "run_id": lambda t, r: r.choice(t.run_ids),
}
# Routes whose `name` query parameter is free text (a sensor name filter or a new name).
NAME_IS_TEXT = {"/api/sensors", "/api/sensors/find", "/api/sensors/{client_cid}.{sensor_mid}"}


def _ghost_of(param: str, value: Any) -> Any:
    if isinstance(value, int):
        return GHOST + value
    return f"ghost-{param}-{value.split('-')[-1]}"


def _plain_value(name: str, schema: dict[str, Any], r: random.Random) -> Any:
    """A valid value for a parameter that names no tenant resource."""
    fixed: dict[str, Any] = {
        "since": T0,
        "till": T0 + DAY,
        "signal_type_moid": A_PLUS,
        "lat": 50.0,
        "lon": 20.0,
        "info": json.dumps({"attack": True}),
        "annotations": json.dumps({"attack": True}),
        "name": "attack",
        "meter_type_name": "attack",
        "unit": None,
        "output_unit_id": None,
        "signal_origin_id": 1,
        "limit": 10,
        "offset": 0,
        "value_for_since": 1.5,
        "value_for_till": 2.5,
        "task_async": False,
    }
    if name in fixed:
        return fixed[name]
    kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
    if "boolean" in kinds:
        return r.choice([True, False])
    if "integer" in kinds:
        return r.randrange(1, 5)
    if "number" in kinds:
        return 1.25
    return "attack"


@dataclass
class Attack:
    """One request, its twin with the victim's ids replaced, and what was swapped."""

    method: str
    url: str
    params: dict[str, Any]
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    victim_ids: int = 0  # how many of the victim's ids the request names
    swaps: dict[str, str] = field(default_factory=dict)  # victim string -> its ghost
    sent: set[str] = field(default_factory=set)  # victim strings the attacker itself sent


@dataclass
class Tally:
    attempts: int = 0
    compared: int = 0
    leaks: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


class Attacker:
    """Builds attacks on the victim from the OpenAPI document.

    An attack is drawn from a seed; drawn again from the same seed with `ghost=True`, it is
    the same request with each of the victim's ids replaced by one that does not exist.
    """

    def __init__(self, attacker: Tenant, victim: Tenant) -> None:
        self.a, self.v = attacker, victim
        self.r = random.Random()
        self.ghost = False

    def _id_value(self, name: str, attack: Attack, path: str) -> Any:
        roll = self.r.random()
        own = ID_PARAMS[name](self.a, self.r)
        value = ID_PARAMS[name](self.v, self.r)
        if roll < 0.2:
            return own
        if roll < 0.35:
            return _ghost_of(name, value)
        attack.victim_ids += 1
        if self.ghost:
            return _ghost_of(name, value)
        if isinstance(value, str):
            attack.swaps[value] = _ghost_of(name, value)
            attack.sent.add(value)
        return value

    def build(
        self,
        method: str,
        path: str,
        op: dict[str, Any],
        headers: dict[str, str],
        *,
        seed: int,
        ghost: bool = False,
    ) -> Attack:
        self.r.seed(seed)
        self.ghost = ghost
        attack = Attack(method, path, {}, headers=headers)
        url = path
        for p in op.get("parameters", []):
            name, where, schema = p["name"], p["in"], p.get("schema", {})
            is_id = name in ID_PARAMS and not (name == "name" and path in NAME_IS_TEXT)
            if where == "query" and not p.get("required") and self.r.random() < 0.3:
                continue
            value = (
                self._id_value(name, attack, path) if is_id else _plain_value(name, schema, self.r)
            )
            if value is None:
                continue
            if where == "path":
                url = url.replace("{" + name + "}", str(value))
            else:
                attack.params[name] = value
        attack.url = url
        if "requestBody" in op:
            attack.body = self._body(method, path, attack)
        return attack

    def _item_ids(self, attack: Attack) -> dict[str, Any]:
        cid = self._id_value("client_cid", attack, "")
        mid = self._id_value("sensor_mid", attack, "")
        return {"client_cid": cid, "sensor_mid": mid, "signal_type_moid": A_PLUS}

    def _body(self, method: str, path: str, attack: Attack) -> Any:
        series = {"time": [T0 + 7], "value": [1.5]}
        if path == "/api/users/token":
            login = self._id_value_login(attack)
            return {"login": login, "password": "not the password"}
        if path.endswith("/data") or path.endswith("/data/v2"):
            if "{" not in attack.url and path.startswith("/api/sensors/signals/"):
                items = [self._item_ids(attack) for _ in range(self.r.randrange(1, 4))]
                if method == "PUT":
                    return [{**i, "data": series} for i in items]
                return [{**i, "since": T0, "till": T0 + DAY, "last_acq": True} for i in items]
            return series
        if path == "/api/tasks/graphs/run/name":
            return {"client_cid": self.v.cid, "sensor_mid": self.v.sensor_mids[0]}
        return {"nodes": [{"function": "signals", "params": {}}], "edges": []}

    def _id_value_login(self, attack: Attack) -> str:
        attack.victim_ids += 1
        value = self.v.owner.login
        if self.ghost:
            return "ghost-login"
        attack.swaps[value] = "ghost-login"
        attack.sent.add(value)
        return value


_TIMING = re.compile(r'"time_(tstorage|other)":[-+0-9.eE]+')
_DIGITS = re.compile(r"[0-9]+")


def _normalized(res: Any, swaps: dict[str, str]) -> tuple[int, str]:
    """Status and body with the victim's strings as their ghosts and every number as N: ids
    differ between an attack and its twin, the words and the shape must not."""
    text = _TIMING.sub("<t>", res.text)
    for victim, ghost in swaps.items():
        text = text.replace(victim, ghost)
    return res.status_code, _DIGITS.sub("N", text)


def _send(client: TestClient, a: Attack) -> Any:
    kw: dict[str, Any] = {"params": a.params, "headers": a.headers}
    if a.body is not None:
        kw["json"] = a.body
    return client.request(a.method, a.url, **kw)


def _leaks(res: Any, victim: Tenant, sent: set[str]) -> list[str]:
    text = res.text + json.dumps(dict(res.headers))
    for s in sent:
        text = text.replace(s, "")
    return [fp for fp in victim.fingerprints() if fp in text]


@pytest.fixture
def world(client: TestClient, db: Database) -> tuple[Tenant, Tenant]:
    r = random.Random(SEED)
    victim = seed_tenant(client, db, marker=f"vctm{r.randrange(16**6):06x}", rng=r)
    attacker = seed_tenant(client, db, marker=f"attk{r.randrange(16**6):06x}", rng=r)
    assert not set(victim.values) & set(attacker.values)
    return attacker, victim


def test_every_route_with_the_other_tenants_ids(
    client: TestClient, db: Database, world: tuple[Tenant, Tenant]
) -> None:
    attacker, victim = world
    r = random.Random(SEED)
    sent: set[str] = set()  # every victim string the attacker sent so far (its own now)
    # The scan finds the victim's data where it belongs: in the victim's own answers.
    mid = victim.sensor_mids[0]
    own = client.get(f"/api/sensors/{victim.cid}.{mid}", headers=victim.owner.headers).text
    own += client.get(
        f"/api/sensors/{victim.cid}.{mid}/signals/{A_PLUS}/data",
        params={"since": T0, "till": T0 + DAY},
        headers=victim.reader.headers,
    ).text
    assert victim.marker in own
    assert sum(fp in own for fp in victim.fingerprints()) >= POINTS_PER_SERIES
    before = snapshot(db, victim)
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    tally = Tally()
    bot = Attacker(attacker, victim)
    logins = 0
    for path, ops in sorted(paths.items()):
        for method, op in sorted(ops.items()):
            for _ in range(ROUNDS):
                if path == "/api/users/token" and method == "post":
                    logins += 1
                    if logins > 2:  # each try counts towards throttling
                        continue
                who = r.choice([attacker.owner, attacker.reader])
                seed = r.randrange(2**32)
                a = bot.build(method.upper(), path, op, who.headers, seed=seed)
                res = _send(client, a)
                tally.attempts += 1
                assert res.status_code < 500, (a, res.text)
                sent |= a.sent
                if found := _leaks(res, victim, sent):
                    tally.leaks.append(f"{a.method} {a.url} {a.params}: {found}")
                if not a.victim_ids:
                    continue
                twin = bot.build(method.upper(), path, op, who.headers, seed=seed, ghost=True)
                twin_res = _send(client, twin)
                tally.attempts += 1
                if found := _leaks(twin_res, victim, sent):
                    tally.leaks.append(f"{twin.method} {twin.url}: {found}")
                tally.compared += 1
                if _normalized(res, a.swaps) != _normalized(twin_res, {}):
                    tally.mismatches.append(
                        f"{a.method} {a.url} {a.params} {a.body}: {res.status_code} {res.text!r}"
                        f" vs ghost {twin.url} {twin.params}: {twin_res.status_code} "
                        f"{twin_res.text!r}"
                    )
    after = snapshot(db, victim)
    print(
        f"isolation attack (seed {SEED}): {tally.attempts} requests, {tally.compared} "
        f"victim/ghost pairs compared, {len(tally.leaks)} leaks, "
        f"{len(tally.mismatches)} mismatches"
    )
    assert not tally.leaks, "\n".join(tally.leaks)
    assert not tally.mismatches, "\n".join(tally.mismatches)
    assert after == before
    # The victim's credentials still work.
    assert client.get("/api/clients", headers=victim.owner.headers).status_code == 200


WRONG_CREDENTIALS = [
    (
        "the attacker's API key as a bearer token",
        lambda a, v: {"Authorization": f"Bearer {a.api_key}"},
    ),
    (
        "the victim's API key as a bearer token",
        lambda a, v: {"Authorization": f"Bearer {v.api_key}"},
    ),
    ("the attacker's token as an API key", lambda a, v: {"X-Auth": a.owner.token}),
    ("the victim's token as an API key", lambda a, v: {"X-Auth": v.owner.token}),
    ("a token under another scheme", lambda a, v: {"Authorization": f"Basic {a.owner.token}"}),
    ("no credentials", lambda a, v: {}),
]


def test_keys_are_not_tokens_and_tokens_are_not_keys(
    client: TestClient, db: Database, world: tuple[Tenant, Tenant]
) -> None:
    """With each kind of wrong credentials, every route but login answers 401, shows nothing."""
    attacker, victim = world
    before = snapshot(db, victim)
    bot = Attacker(attacker, victim)
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    tried = 0
    for what, make_headers in WRONG_CREDENTIALS:
        headers = make_headers(attacker, victim)
        for path, ops in sorted(paths.items()):
            for method, op in sorted(ops.items()):
                if path == "/api/users/token" and method == "post":
                    continue
                a = bot.build(method.upper(), path, op, headers, seed=SEED + tried)
                res = _send(client, a)
                tried += 1
                assert res.status_code == 401, (what, a, res.status_code, res.text)
                assert res.json() == {"detail": "Not valid authentication credentials"}
                assert res.headers["www-authenticate"] == "Bearer"
                assert not _leaks(res, victim, set())
    print(f"wrong credentials: {tried} requests, all 401")
    assert snapshot(db, victim) == before


def test_graph_names_do_not_tell_whether_another_tenant_uses_them(
    client: TestClient, world: tuple[Tenant, Tenant]
) -> None:
    attacker, victim = world
    definition = client.get("/api/tasks/graphs/balance", headers=attacker.owner.headers).json()[
        "definition"
    ]
    codes = [
        client.put(
            f"/api/tasks/graphs/{name}",
            params={"client_cid": attacker.cid},
            json=definition,
            headers=attacker.owner.headers,
        ).status_code
        for name in (victim.graph_names[0], "ghost-graph")
    ]
    assert codes[0] == codes[1]
