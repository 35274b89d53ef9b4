"""MQTT topics, payload shapes, message identities and Mosquitto's password hash (pure)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from besmart_server.server.mqtt import broker, passwords, topics
from besmart_server.server.mqtt.topics import Refused, Topic

T = 1_767_225_600_000


def test_topic_names_device_sensor_and_type() -> None:
    assert topics.parse_topic("besmart/v1/meter-7/12/32") == Topic("meter-7", 12, 32)


@pytest.mark.parametrize(
    ("topic", "says"),
    [
        pytest.param("besmart/v1/dev/12", "is not besmart/v1", id="too-short"),
        pytest.param("besmart/v1/dev/12/32/x", "is not besmart/v1", id="too-long"),
        pytest.param("other/v1/dev/12/32", "is not besmart/v1", id="other-prefix"),
        pytest.param("besmart/v2/dev/12/32", "is not besmart/v1", id="other-version"),
        pytest.param("besmart/v1/dev/x/32", "sensor_mid 'x' is not an id", id="mid-text"),
        pytest.param("besmart/v1/dev/-1/32", "sensor_mid '-1' is not an id", id="mid-negative"),
        pytest.param("besmart/v1/dev/12/3.5", "moid '3.5' is not an id", id="moid-float"),
        pytest.param("besmart/v1/dev/12/99999999999", "moid", id="moid-too-big"),
        pytest.param("besmart/v1/dev/١٢/32", "sensor_mid", id="mid-arabic-digits"),
        pytest.param("besmart/v1/d%u/12/32", "is not a device name", id="device-percent"),
    ],
)
def test_bad_topics_are_refused_with_a_reason(topic: str, says: str) -> None:
    with pytest.raises(Refused) as info:
        topics.parse_topic(topic)
    assert says in info.value.reason


def test_single_reading_becomes_one_point_columns() -> None:
    r = topics.parse_payload(
        b'{"time": 1767225600000, "value": 1.5, "origin": 2, "unit": "Wh", "id": "m-1"}', 0
    )
    assert r.body == {"time": [T], "value": [1.5], "origin": [2]}
    assert (r.n, r.unit, r.msg_id, r.bare) == (1, "Wh", "m-1", False)


def test_columnar_body_is_taken_as_the_v2_put_body() -> None:
    r = topics.parse_payload(b'{"time": [1, 2], "value": [3, 4], "type": ["INT", "INT"]}', 0)
    assert r.body == {"time": [1, 2], "value": [3, 4], "type": ["INT", "INT"]}
    assert (r.n, r.msg_id) == (2, None)


def test_bare_number_is_timed_on_arrival() -> None:
    r = topics.parse_payload(b"230.5", arrival_ms=T)
    assert r.body == {"time": [T], "value": [230.5]}
    assert r.bare


def test_integer_ids_are_the_same_identity_as_their_text() -> None:
    assert topics.parse_payload(b'{"time": 1, "value": 1, "id": 42}', 0).msg_id == "42"


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        pytest.param(b"", "empty payload", id="empty"),
        pytest.param(b"{", "not JSON", id="broken-json"),
        pytest.param(b"\xff\xfe", "not JSON", id="binary"),
        pytest.param(b"NaN", "not JSON", id="nan"),
        pytest.param(b'"12"', "JSON object or a number", id="string"),
        pytest.param(b"[1, 2]", "JSON object or a number", id="list"),
        pytest.param(b"true", "JSON object or a number", id="bool"),
        pytest.param(b"null", "JSON object or a number", id="null"),
        pytest.param(b'{"value": 1}', "field required: time", id="no-time"),
        pytest.param(b'{"time": 1}', "field required: value", id="no-value"),
        pytest.param(b'{"time": 1, "value": 1, "ts": 2}', "unknown field(s) ts", id="extra"),
        pytest.param(b'{"time": 1, "value": 1, "unit": 5}', "unit must be a string", id="unit"),
        pytest.param(b'{"time": 1, "value": 1, "id": 1.5}', "id must be", id="id-float"),
        pytest.param(b'{"time": 1, "value": 1, "id": ""}', "id must be", id="id-empty"),
        pytest.param(b'{"time": 1, "value": 1, "id": true}', "id must be", id="id-bool"),
        pytest.param(b'{"time": [1], "value": 1}', "column 'value' must be a list", id="col"),
        pytest.param(b'{"time": [1, 2], "value": [1]}', "has 1 items but 'time' has 2", id="len"),
        pytest.param(b'{"time": [1], "value": [1], "x": []}', "unknown field(s) x", id="c-extra"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(payload: bytes, says: str) -> None:
    with pytest.raises(Refused) as info:
        topics.parse_payload(payload, 0)
    assert says in info.value.reason


def test_ids_longer_than_the_limit_are_refused() -> None:
    long_id = "x" * (topics.MAX_ID_CHARS + 1)
    with pytest.raises(Refused):
        topics.parse_payload(b'{"time": 1, "value": 1, "id": "%s"}' % long_id.encode(), 0)


def test_a_redelivery_has_the_same_key_and_other_points_another() -> None:
    topic = "besmart/v1/d/3/32"
    a = topics.parse_payload(b'{"time": 1, "value": 2.0}', 0)
    same = topics.parse_payload(b'{"value": 2.0, "time": 1}', 5)  # key order, arrival differ
    later = topics.parse_payload(b'{"time": 2, "value": 2.0}', 0)
    other_value = topics.parse_payload(b'{"time": 1, "value": 3.0}', 0)
    other_origin = topics.parse_payload(b'{"time": 1, "value": 2.0, "origin": 2}', 0)
    key = topics.message_key(topic, a)
    assert key == topics.message_key(topic, same)
    assert key != topics.message_key("besmart/v1/d/4/32", a)  # another series
    others = {topics.message_key(topic, r) for r in (later, other_value, other_origin)}
    assert key not in others
    assert len(others) == 3


def test_an_id_is_the_identity_whatever_the_points() -> None:
    a = topics.parse_payload(b'{"time": 1, "value": 2, "id": "x"}', 0)
    b = topics.parse_payload(b'{"time": 9, "value": 9, "id": "x"}', 0)
    assert topics.message_key("besmart/v1/d/3/32", a) == topics.message_key("besmart/v1/d/4/1", b)


def test_a_bare_number_has_no_identity() -> None:
    assert topics.message_key("besmart/v1/d/3/32", topics.parse_payload(b"1", 0)) is None


def test_mosquitto_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """The $7$ line we write is the one mosquitto_passwd writes for the same salt."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    pw = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(pw), "dev", "s3cret"], check=True)
    theirs = pw.read_text().strip().split(":", 1)[1]
    assert passwords.verify("s3cret", theirs)
    assert not passwords.verify("s3cret!", theirs)
    salt = __import__("base64").b64decode(theirs.split("$")[3])
    assert passwords.mosquitto_hash("s3cret", salt=salt) == theirs


def test_config_denies_anonymous_and_confines_devices(tmp_path: Path) -> None:
    paths = broker.write_config(tmp_path / "b", [("dev-1", "$7$h")], port=18830)
    conf = paths.conf.read_text()
    assert "listener 18830 127.0.0.1" in conf
    assert "allow_anonymous false" in conf
    assert "max_queued_messages 10000000" in conf
    assert "pattern write besmart/v1/%u/#" in paths.acl.read_text()
    lines = paths.passwd.read_text().splitlines()
    assert lines[0].startswith("besmart-bridge:$7$")
    assert lines[1] == "dev-1:$7$h"
    secret = broker.bridge_secret(paths.root)
    assert passwords.verify(secret, lines[0].split(":", 1)[1])
    # Rewriting keeps the bridge's secret; a revoked device's line is gone.
    broker.write_config(paths.root, [], port=18830)
    assert broker.bridge_secret(paths.root) == secret
    assert paths.passwd.read_text().count("\n") == 1
