"""The receiver on the lab host: a running, enabled systemd unit that got the start message and the success
message (generic webhook and Slack), each with what the deploy said and without the secret URL or token."""

import json

import pytest

SECRET_PATH = "T0KEN-path-5f3a9c"
SECRET_HEADER = "tok-9d1e77"
LOG = "/var/log/hook-receiver/received.jsonl"


@pytest.fixture(name="received")
def fixture_received(host):
    return [json.loads(line) for line in host.file(LOG).content_string.splitlines()]


def test_receiver_is_a_running_enabled_unit(host):
    unit = host.service("hook-receiver")
    assert unit.is_running
    assert unit.is_enabled
    assert host.socket("tcp://0.0.0.0:8099").is_listening
    receivers = host.process.filter(comm="hook-receiver")
    assert receivers
    assert all(p.user != "root" for p in receivers)  # DynamicUser


def test_three_messages_arrived(received):
    assert [(m["path"].split("/")[1], json.loads(m["body"]).get("event")) for m in received] == [
        ("hooks", "start"), ("hooks", "success"), ("services", None)]


def test_the_generic_webhook_got_what_the_deploy_said(received):
    success = json.loads(received[1]["body"])
    assert success["app"] == "shop"
    assert success["environment"] == "staging"
    assert success["version"] == "1.4.2"
    assert success["deploy_id"] == "r42"
    assert success["user"] == "molecule"
    assert success["extra"] == {"tenants": 3}
    assert received[1]["content_type"].startswith("application/json")
    assert received[1]["authorization"] == "Bearer " + SECRET_HEADER


def test_slack_got_a_message_naming_the_release(received):
    slack = json.loads(received[2]["body"])
    text = json.dumps(slack)
    assert "shop" in text and "1.4.2" in text
    assert "attachments" in slack or "blocks" in slack


def test_no_secret_in_any_message(received):
    for message in received:
        assert SECRET_PATH not in message["body"]
        assert SECRET_HEADER not in message["body"]


def test_nothing_reached_the_unreachable_port(host, received):
    assert not host.socket("tcp://0.0.0.0:8098").is_listening
    assert all(json.loads(m["body"]).get("event") != "failure" for m in received if m["path"].startswith("/hooks"))
