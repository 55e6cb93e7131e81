"""notify module against a real HTTP endpoint on loopback (tests/helpers/webhook_receiver.py): the
payload each service receives, the four ways, and every way delivery can fail, which must warn,
never fail, and never show the webhook URL's secret part."""

import base64
import json

import pytest

from helpers.http_app import self_signed_cert
from helpers.webhook_receiver import WebhookReceiver, refused_url

SECRET = "s3cr3t-xyz"
HOOK = "/hooks/T000/B000/" + SECRET
TOKEN = "tok-9f8e7d6c5b4a"


@pytest.fixture()
def receiver():
    with WebhookReceiver() as server:
        yield server


def warnings_of(result):
    """Warning texts, whether the module returned plain strings or ansible-core 2.19's summaries."""
    texts = []
    for warning in result.get("warnings", []):
        if isinstance(warning, dict):
            warning = (warning.get("event") or {}).get("msg") or warning.get("msg") or json.dumps(warning)
        texts.append(warning)
    return texts


def assert_no_secret(result, *secrets):
    for secret in (SECRET,) + secrets:
        assert secret not in result.stdout, "secret %r in the module's output" % secret
        assert secret not in result.stderr, "secret %r in the module's stderr" % secret


FULL = dict(event="failure", app="shop", environment="production", version="1.4.2", deploy_id="20240501T101500Z",
            user="alice", msg="Release 1.4.2: checkout redesign", link="https://ci.example.com/jobs/42",
            duration=95.5, reason="health check: version is 1.4.1, expected 1.4.2",
            details={"migrations": 3, "tenants": ["a", "b"]})


def check_slack(payload, args):
    assert isinstance(payload["text"], str) and payload["text"].startswith("Deploy failed: shop 1.4.2")
    attachment = payload["attachments"][0]
    assert attachment["color"].startswith("#")
    assert all(block["type"] in ("section", "context") for block in attachment["blocks"])
    texts = json.dumps(attachment["blocks"])
    assert "checkout redesign" in texts and "expected 1.4.2" in texts and "alice" in texts


def check_mattermost(payload, args):
    assert isinstance(payload["text"], str) and "Deploy failed: shop 1.4.2 (production)" in payload["text"]
    assert payload["channel"] == args["channel"] and payload["username"] == args["username"]
    attachment = payload["attachments"][0]
    assert attachment["text"] == args["msg"] and attachment["title_link"] == args["link"]
    assert {"title": "Error", "value": args["reason"], "short": False} in attachment["fields"]


def check_teams(payload, args):
    assert payload["type"] == "message"
    attachment = payload["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] and card["body"]
    assert card["body"][0]["type"] == "TextBlock" and card["body"][0]["text"].startswith("Deploy failed")
    assert card["actions"][0] == {"type": "Action.OpenUrl", "title": "Details", "url": args["link"]}


def check_webhook(payload, args):
    expected = dict(event="failure", app="shop", environment="production", version="1.4.2",
                    deploy_id="20240501T101500Z", user="alice", message=args["msg"], url=args["link"],
                    duration=95.5, rolled_back=False, error=args["reason"], extra=args["details"])
    for key, value in expected.items():
        assert payload[key] == value, key
    assert payload["title"] == "Deploy failed: shop 1.4.2 (production)" and payload["timestamp"].endswith("Z")


CHECKS = dict(slack=check_slack, mattermost=check_mattermost, teams=check_teams, webhook=check_webhook)


@pytest.mark.parametrize("service", ["slack", "mattermost", "teams", "webhook"])
def test_notify_four_ways(run_module, receiver, service):
    args = dict(FULL, service=service, url=receiver.url(HOOK), channel="deploys", username="safeship")

    check = run_module("notify", args, check_mode=True)
    assert check.rc == 0 and not check.get("failed"), check.get("msg")
    assert check["changed"] is True and check["sent"] is False and check["tries"] == 0
    CHECKS[service](check["payload"], args)
    assert receiver.received() == []
    assert_no_secret(check)

    real = run_module("notify", args)
    assert real.rc == 0 and not real.get("failed"), real.get("msg")
    assert real["changed"] is True and real["sent"] is True and real["status"] == 200 and real["tries"] == 1
    assert real["endpoint"] == "http://127.0.0.1:%d/…" % receiver.port
    got = receiver.received()
    assert len(got) == 1
    assert got[0].method == "POST" and got[0].path == HOOK
    assert got[0].headers["Content-Type"].startswith("application/json")
    assert got[0].json == real["payload"]  # what was reported is what was sent
    CHECKS[service](got[0].json, args)
    assert real["invocation"]["module_args"]["url"] != args["url"]
    assert_no_secret(real)

    again = run_module("notify", args)
    assert again["changed"] is True and again["sent"] is True
    assert len(receiver.received()) == 2  # a notification is a new message every time
    assert_no_secret(again)

    check_again = run_module("notify", args, check_mode=True)
    assert check_again["changed"] is True and check_again["sent"] is False
    assert len(receiver.received()) == 2
    assert_no_secret(check_again)


def test_teams_workflows_202_accepted_is_delivered(run_module, receiver):
    result = run_module("notify", dict(service="teams", url=receiver.url(HOOK, mode="accepted"), event="start"))
    assert result["sent"] is True and result["status"] == 202 and result["changed"] is True
    assert len(receiver.received()) == 1


@pytest.mark.parametrize("mode, expected, requests", [
    ("error", "HTTP 500 Internal Server Error: upstream exploded (after 2 attempts)", 2),
    ("status:404", "HTTP 404 Not Found: no_service (after 1 attempt)", 1),  # not retried
    ("slow", "no answer within 1 s (timeout) (after 2 attempts)", 2),
    ("close", "connection closed without a complete response", 2),
    ("refused", "connection refused (after 2 attempts)", 0),
])
def test_failed_delivery_warns_and_does_not_fail(run_module, receiver, mode, expected, requests):
    url = refused_url(HOOK) if mode == "refused" else receiver.url(HOOK, mode=mode)
    args = dict(service="slack", url=url, event="success", app="shop", timeout=1, retries=1, delay=0.05)
    result = run_module("notify", args)
    assert result.rc == 0
    assert result.get("failed") is not True
    assert result["changed"] is False and result["sent"] is False
    assert result["error"].startswith(expected.split(" (after")[0]) and "(after" in result["error"]
    if "(after" in expected:
        assert result["error"] == expected
    warnings = warnings_of(result)
    assert len(warnings) == 1
    assert "the slack notification for event 'success' was not sent to http://127.0.0.1:" in warnings[0]
    assert "/…: " + result["error"] in warnings[0]
    assert "fail_on_error" in warnings[0]
    assert len(receiver.wait_for(requests, timeout=2)) == requests
    assert_no_secret(result)


def test_fail_on_error_fails_without_the_secret(run_module, receiver):
    args = dict(service="mattermost", url=receiver.url(HOOK, mode="error"), event="failure", retries=0,
                fail_on_error=True)
    result = run_module("notify", args)
    assert result.rc == 1 and result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("the mattermost notification for event 'failure' was not sent to http://127.0.0.1:")
    assert result["msg"].endswith("HTTP 500 Internal Server Error: upstream exploded (after 1 attempt).")
    assert result["sent"] is False and result["status"] == 500
    assert len(receiver.received()) == 1
    assert_no_secret(result)


def test_a_flapping_endpoint_is_retried_until_it_answers(run_module, receiver):
    args = dict(service="webhook", url=receiver.url(HOOK, mode="flaky:2"), event="start", retries=2, delay=0.05)
    result = run_module("notify", args)
    assert result["sent"] is True and result["tries"] == 3 and result["changed"] is True
    bodies = [r.json for r in receiver.received()]
    assert len(bodies) == 3 and bodies[0] == bodies[2] == result["payload"]
    assert warnings_of(result) == []


def test_headers_and_url_credentials_are_sent_but_never_shown(run_module, receiver):
    password = "pw-4d3c2b1a"
    url = receiver.url(HOOK).replace("http://", "http://deployer:%s@" % password)
    args = dict(service="webhook", url=url, event="success", headers={"X-Api-Key": TOKEN})
    result = run_module("notify", args)
    assert result["sent"] is True
    got = receiver.received()[0]
    assert got.headers["X-Api-Key"] == TOKEN
    assert got.headers["Authorization"] == "Basic " + base64.b64encode(
        ("deployer:" + password).encode()).decode()
    assert result["endpoint"] == "http://127.0.0.1:%d/…" % receiver.port
    assert_no_secret(result, TOKEN, password)

    # and when delivery fails, the warning shows neither
    down = receiver.url(HOOK + "-down", mode="error").replace("http://", "http://deployer:%s@" % password)
    failed = run_module("notify", dict(args, url=down, retries=0))
    assert failed["sent"] is False and len(warnings_of(failed)) == 1
    assert_no_secret(failed, TOKEN, password)


def test_check_mode_never_contacts_the_endpoint(run_module, receiver):
    result = run_module("notify", dict(service="slack", url=receiver.url(HOOK, mode="error"), event="start"),
                        check_mode=True)
    assert result["changed"] is True and result["sent"] is False and warnings_of(result) == []
    assert receiver.received() == []


@pytest.mark.parametrize("url", ["hooks.slack.com/services/T000/B000/" + SECRET, "ftp://127.0.0.1" + HOOK])
def test_a_url_that_is_not_http_warns(run_module, url):
    result = run_module("notify", dict(service="slack", url=url, event="start"))
    assert result.rc == 0 and result.get("failed") is not True
    assert result["sent"] is False and result["changed"] is False and result["tries"] == 0
    assert "url must start with https:// or http://" in warnings_of(result)[0]
    assert_no_secret(result)


def test_custom_event_needs_a_message(run_module, receiver):
    result = run_module("notify", dict(service="slack", url=receiver.url(HOOK), event="custom"))
    assert result["failed"] is True and result["msg"] == "event is custom but all of the following are missing: msg"
    assert receiver.received() == []
    assert_no_secret(result)


def test_tls_certificate_is_verified_unless_told_otherwise(run_module, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    with WebhookReceiver(tls=(cert, key)) as server:
        args = dict(service="teams", url=server.url(HOOK), event="success", retries=2, delay=0.05)
        refused = run_module("notify", args)
        assert refused.rc == 0 and refused["sent"] is False and refused["changed"] is False
        # a certificate problem does not go away by retrying
        assert refused["tries"] == 1 and refused["error"].startswith("TLS certificate verification failed")
        assert "ca_path" in warnings_of(refused)[0], warnings_of(refused)
        assert server.received() == []
        assert_no_secret(refused)

        trusted = run_module("notify", dict(args, ca_path=cert))
        assert trusted["sent"] is True and len(server.received()) == 1

        unverified = run_module("notify", dict(args, validate_certs=False))
        assert unverified["sent"] is True and len(server.received()) == 2
