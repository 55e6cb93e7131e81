"""notify logic: URL redaction, payloads per service, retry policy (the opener and sleep are the seams)."""

import datetime
import io
import socket
from urllib.error import HTTPError, URLError

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _notify
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError

NOW = datetime.datetime(2024, 5, 1, 10, 17, 2, tzinfo=datetime.timezone.utc)
SLACK_URL = "https://hooks.slack.com/services/T000/B000/s3cr3t-xyz"
TEAMS_URL = ("https://prod-01.westeurope.logic.azure.com:443/workflows/0a1b2c3d4e/triggers/manual/paths/invoke"
             "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Zm9vYmFyc2VjcmV0")


def params(**overrides):
    base = dict(_notify.argument_spec())
    values = dict((name, spec.get("default")) for name, spec in base.items())
    values.update(service="slack", url=SLACK_URL, event="success", app="shop", environment="production",
                  version="1.4.2")
    values.update(overrides)
    return values


@pytest.mark.parametrize("url, shown", [
    (SLACK_URL, "https://hooks.slack.com/…"),
    (TEAMS_URL, "https://prod-01.westeurope.logic.azure.com:443/…"),
    ("http://user:pa55word@127.0.0.1:8080/hook?token=abc", "http://127.0.0.1:8080/…"),
    ("HTTPS://[::1]:9/x", "https://[::1]:9/…"),
    ("hooks.slack.com/services/T000/B000/s3cr3t", "<invalid url>"),
    ("", "<invalid url>"),
    ("http://host:notaport/x", "<invalid url>"),
])
def test_redact_url_keeps_only_scheme_host_and_port(url, shown):
    assert _notify.redact_url(url) == shown


def test_scrub_removes_every_secret_piece():
    secrets = _notify.secret_parts(TEAMS_URL)
    text = "failed on %s (path /workflows/0a1b2c3d4e/triggers, sig Zm9vYmFyc2VjcmV0)" % TEAMS_URL
    cleaned = _notify.scrub(text, secrets)
    for piece in ("Zm9vYmFyc2VjcmV0", "0a1b2c3d4e", "logic.azure.com:443/workflows"):
        assert piece not in cleaned
    assert _notify.scrub("user pa55word here", _notify.secret_parts("http://u:pa55word@h/x")) == "user … here"


@pytest.mark.parametrize("url, problem", [
    (SLACK_URL, None),
    ("http://127.0.0.1:1/x", None),
    ("ftp://example.com/x", "scheme 'ftp'"),
    ("hooks.slack.com/services/x", "must start with https://"),
    ("https:///path-only", "no host name"),
    ("http://[::1/x", "not a valid URL"),
])
def test_url_problem(url, problem):
    found = _notify.url_problem(url)
    if problem is None:
        assert found is None
    else:
        assert problem in found and "services" not in found


@pytest.mark.parametrize("event, app, version, environment, title", [
    ("start", "shop", "1.4.2", "production", "Deploy started: shop 1.4.2 (production)"),
    ("failure", "shop", None, "staging", "Deploy failed: shop (staging)"),
    ("rollback", None, None, "production", "Deploy rolled back: production"),
    ("success", None, None, None, "Deploy succeeded"),
    ("custom", "shop", None, None, "shop"),
    ("custom", None, None, None, "Deploy notification"),
])
def test_headline(event, app, version, environment, title):
    assert _notify.headline(event, app, version, environment) == title


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (65, "1m 05s"), (3723, "1h 02m 03s"),
                                           (-3, "0s"), (None, None)])
def test_format_duration(seconds, text):
    assert _notify.format_duration(seconds) == text


def test_rolled_back_follows_the_event_unless_given():
    assert _notify.build_message(params(event="rollback"), NOW)["rolled_back"] is True
    assert _notify.build_message(params(event="failure"), NOW)["rolled_back"] is False
    assert _notify.build_message(params(event="failure", rolled_back=True), NOW)["rolled_back"] is True


def test_webhook_payload_has_every_field():
    payload = _notify.build_payload("webhook", params(
        event="failure", deploy_id="20240501T101500Z", user="alice", msg="canary failed", link="https://ci/1",
        duration=95.5, reason="health check: version 1.4.1", details={"tenants": 120}), NOW)
    assert payload == {
        "event": "failure", "title": "Deploy failed: shop 1.4.2 (production)", "app": "shop",
        "environment": "production", "version": "1.4.2", "deploy_id": "20240501T101500Z", "user": "alice",
        "message": "canary failed", "url": "https://ci/1", "duration": 95.5, "rolled_back": False,
        "error": "health check: version 1.4.1", "extra": {"tenants": 120}, "timestamp": "2024-05-01T10:17:02Z",
        "source": "safeship.webapp"}


def test_webhook_payload_sends_nulls_for_what_is_not_set():
    payload = _notify.build_payload("webhook", params(app=None, environment=None, version=None, event="start"), NOW)
    for key in ("app", "environment", "version", "deploy_id", "user", "message", "url", "duration", "error"):
        assert key in payload and payload[key] is None
    assert payload["extra"] == {} and payload["rolled_back"] is False


def test_slack_payload_escapes_and_colours():
    payload = _notify.build_payload("slack", params(event="failure", msg="a < b & c > d",
                                                    reason="<!channel> boom", link="https://ci/1?a=1|2"), NOW)
    assert payload["text"] == "Deploy failed: shop 1.4.2 (production)"
    attachment = payload["attachments"][0]
    assert attachment["color"] == _notify.COLORS["failure"]
    texts = [b["text"]["text"] for b in attachment["blocks"] if b["type"] == "section" and "text" in b]
    assert texts[0] == "a &lt; b &amp; c &gt; d"
    assert texts[1] == "*Error*\n&lt;!channel&gt; boom"
    context = attachment["blocks"][-1]
    assert context["type"] == "context"
    assert "<https://ci/1?a=1%7C2|details>" in context["elements"][0]["text"]


def test_slack_fields_are_split_in_sections_of_ten_and_capped():
    details = dict(("k%02d" % i, i) for i in range(60))
    payload = _notify.build_payload("slack", params(details=details), NOW)
    sections = [b for b in payload["attachments"][0]["blocks"] if "fields" in b]
    assert all(len(s["fields"]) <= 10 for s in sections)
    fields = [f for s in sections for f in s["fields"]]
    assert len(fields) == _notify.MAX_FIELDS
    assert fields[-1]["text"].endswith("more details not shown")


def test_long_texts_are_truncated_for_chat_but_not_for_webhook():
    long = "x" * 10000
    slack = _notify.build_payload("slack", params(msg=long, details={"log": long}), NOW)
    section = slack["attachments"][0]["blocks"][0]["text"]["text"]
    assert len(section) <= 3000 and section.endswith("(truncated)")
    field = slack["attachments"][0]["blocks"][1]["fields"][-1]["text"]
    assert len(field) <= 2000
    assert _notify.build_payload("webhook", params(msg=long), NOW)["message"] == long


def test_mattermost_payload_identity_and_fields():
    payload = _notify.build_payload("mattermost", params(
        event="rollback", channel="deploys", username="safeship", icon_emoji=":rocket:", reason="boom",
        details={"nested": {"a": [1, 2]}}), NOW)
    assert payload["text"] == "**Deploy rolled back: shop 1.4.2 (production)**"
    assert (payload["channel"], payload["username"], payload["icon_emoji"]) == ("deploys", "safeship", ":rocket:")
    assert "icon_url" not in payload
    attachment = payload["attachments"][0]
    assert attachment["color"] == _notify.COLORS["rollback"]
    fields = dict((f["title"], f["value"]) for f in attachment["fields"])
    assert fields["Rolled back"] == "yes" and fields["Error"] == "boom"
    assert fields["nested"] == '{"a": [1, 2]}'


def test_teams_payload_is_an_adaptive_card_message():
    payload = _notify.build_payload("teams", params(event="success", link="https://ci/1", user="alice"), NOW)
    assert payload["type"] == "message"
    attachment = payload["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.2"
    assert card["body"][0] == dict(type="TextBlock", text="Deploy succeeded: shop 1.4.2 (production)",
                                   size="Medium", weight="Bolder", wrap=True, color="Good")
    facts = [b for b in card["body"] if b["type"] == "FactSet"][0]["facts"]
    assert dict(title="By", value="alice") in facts
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Details", "url": "https://ci/1"}]
    # channel/username mean nothing to Teams
    assert "channel" not in _notify.build_payload("teams", params(channel="x"), NOW)


# -------------------------------------------------------------------------------------------------
# Retry policy, through the opener seam


class FakeResponse(object):
    def __init__(self, status, body=b"ok"):
        self.status = status
        self.body = io.BytesIO(body)

    def getcode(self):
        return self.status

    def read(self, size=-1):
        return self.body.read(size)

    def close(self):
        pass


def http_error(code, body=b"nope", headers=None):
    return HTTPError("http://x/", code, "Reason", headers or {}, io.BytesIO(body))


class Script(object):
    """An opener answering from a list: exceptions are raised, responses returned."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []
        self.sleeps = []

    def __call__(self, url, **kwargs):
        self.calls.append((url, kwargs))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def sleep(self, seconds):
        self.sleeps.append(seconds)


def post(script, **overrides):
    p = params(**overrides)
    return _notify.post_json(p["url"], {"text": "hi"}, p, opener=script, sleep=script.sleep)


def test_success_first_time():
    script = Script(FakeResponse(200))
    outcome = post(script)
    assert (outcome.sent, outcome.status, outcome.attempts, outcome.response) == (True, 200, 1, "ok")
    url, kwargs = script.calls[0]
    assert url == SLACK_URL and kwargs["method"] == "POST" and kwargs["follow_redirects"] == "none"
    assert kwargs["headers"]["Content-Type"].startswith("application/json")
    assert kwargs["data"] == b'{"text": "hi"}'


def test_transient_failures_are_retried_with_doubling_delay():
    script = Script(http_error(500), URLError(ConnectionRefusedError(111, "refused")), socket.timeout("timed out"),
                    FakeResponse(202, b""))
    outcome = post(script, retries=3, delay=2)
    assert outcome.sent and outcome.attempts == 4 and outcome.status == 202
    assert script.sleeps == [2, 4, 8]


def test_backoff_is_capped():
    script = Script(*[http_error(503) for dummy in range(4)])
    outcome = post(script, retries=3, delay=20)
    assert not outcome.sent and outcome.attempts == 4
    assert script.sleeps == [20, 30.0, 30.0]
    assert outcome.error.startswith("HTTP 503 Reason: nope")


def test_client_errors_are_not_retried():
    script = Script(http_error(404, b"no_service"), FakeResponse(200))
    outcome = post(script, retries=5)
    assert not outcome.sent and outcome.attempts == 1 and outcome.status == 404
    assert outcome.error == "HTTP 404 Reason: no_service" and script.sleeps == []


def test_429_honours_retry_after_within_the_cap():
    script = Script(http_error(429, headers={"Retry-After": "7"}), http_error(429, headers={"Retry-After": "900"}),
                    FakeResponse(200))
    outcome = post(script, retries=2, delay=1)
    assert outcome.sent and script.sleeps == [7.0, 30.0]


def test_a_redirect_is_a_failure_that_says_so():
    outcome = post(Script(http_error(302, b"")), retries=0)
    assert not outcome.sent and "redirects are not followed" in outcome.error


@pytest.mark.parametrize("exc, text", [
    (URLError(ConnectionRefusedError(111, "Connection refused")), "connection refused"),
    (URLError(socket.timeout("timed out")), "no answer within 10 s (timeout)"),
    (TimeoutError("timed out"), "no answer within 10 s (timeout)"),
    (URLError(socket.gaierror(-2, "Name or service not known")), "host name not found (Name or service not known)"),
    (ConnectionResetError(104, "reset"), "connection closed without a complete response"),
])
def test_describe_exception(exc, text):
    described, retryable = _notify.describe_exception(exc, 10)
    assert described.startswith(text) and retryable is True


class Module(object):
    def __init__(self, check_mode=False, **overrides):
        self.params = params(**overrides)
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


def test_run_check_mode_sends_nothing_and_reports_a_change():
    script = Script()
    module = Module(check_mode=True)
    result = _notify.run(module, opener=script, sleep=script.sleep, now=NOW)
    assert result["changed"] is True and result["sent"] is False and result["tries"] == 0
    assert script.calls == [] and module.warnings == []
    assert result["payload"]["text"] == "Deploy succeeded: shop 1.4.2 (production)"


def test_run_failure_warns_without_the_secret():
    script = Script(http_error(403, b"invalid_token for /services/T000/B000/s3cr3t-xyz"))
    module = Module(retries=0)
    result = _notify.run(module, opener=script, sleep=script.sleep, now=NOW)
    assert result["changed"] is False and result["sent"] is False and result["status"] == 403
    assert len(module.warnings) == 1
    for text in (module.warnings[0], result["error"], result["response"]):
        assert "s3cr3t-xyz" not in text
    assert "https://hooks.slack.com/…" in module.warnings[0]
    assert "HTTP 403" in module.warnings[0] and "(after 1 attempt)" in module.warnings[0]


def test_run_fail_on_error_raises_with_the_details():
    script = Script(http_error(500), http_error(500))
    module = Module(retries=1, delay=0, fail_on_error=True)
    with pytest.raises(SafeshipError) as caught:
        _notify.run(module, opener=script, sleep=script.sleep, now=NOW)
    assert "was not sent to https://hooks.slack.com/…" in caught.value.msg
    assert caught.value.details["tries"] == 2 and caught.value.details["sent"] is False
    assert module.warnings == []


def test_run_bad_url_is_a_delivery_problem_even_in_check_mode():
    script = Script()
    module = Module(check_mode=True, url="hooks.slack.com/services/T000/B000/s3cr3t-xyz")
    result = _notify.run(module, opener=script, sleep=script.sleep, now=NOW)
    assert result["changed"] is False and result["sent"] is False and script.calls == []
    assert "must start with https://" in result["error"] and "s3cr3t" not in module.warnings[0]


@pytest.mark.parametrize("name, value", [("timeout", 0), ("retries", -1), ("delay", -0.5)])
def test_run_refuses_impossible_settings(name, value):
    with pytest.raises(SafeshipError, match=name):
        _notify.run(Module(**{name: value}), opener=Script(), sleep=lambda s: None)
