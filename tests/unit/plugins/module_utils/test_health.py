"""Unit tests of the health_probe logic: JSON paths and comparisons, placeholders, latency statistics,
error sentences, input validation, and the retry loop driven by a scripted sender (no network,
no sleeping)."""

import http.client
import json
import socket
import ssl
import urllib.error

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _health, _http
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._redact import Redactor

DOC = {"status": "ok", "version": "1.2.3", "checks": {"db": "ok", "cache": "down"}, "items": [{"id": 7}, {"id": 8}],
       "count": 2, "enabled": True, "none": None}


# ---------------------------------------------------------------------------------------------- JSON paths

@pytest.mark.parametrize("path, value", [("status", "ok"), ("checks.db", "ok"), ("items.0.id", 7), ("items.-1.id", 8),
                                         ("items", [{"id": 7}, {"id": 8}]), ("none", None)])
def test_lookup(path, value):
    assert _health.lookup(DOC, path) == value


@pytest.mark.parametrize("path, reason", [
    ("version2", "no key 'version2' in the object at the top level (keys: checks, count, enabled,"),
    ("checks.queue", "no key 'queue' in the object at 'checks' (keys: cache, db)"),
    ("items.5.id", "'items' has 2 items, no index 5"),
    ("items.first", "'items' is an array and 'first' is not an index"),
    ("status.code", "'status' is a string, not an object or array"),
    ("count.x", "'count' is a number, not an object or array"),
])
def test_lookup_says_where_the_path_stops(path, reason):
    with pytest.raises(_health.PathError) as info:
        _health.lookup(DOC, path)
    assert reason in str(info.value)


@pytest.mark.parametrize("path", ["", ".status", "checks..db", "status.", None, 3])
def test_invalid_paths_are_refused(path):
    with pytest.raises(SafeshipError, match="is not valid"):
        _health.check_path(path, "json_expect")


@pytest.mark.parametrize("expected, actual, equal", [
    ("1.2.3", "1.2.3", True), ("200", 200, False), (200, "200", False), (1, 1.0, True), (True, 1, False),
    (1, True, False), (None, None, True), (None, "", False), ([1, "a"], [1, "a"], True), ([1], [1, 2], False),
    ({"a": 1}, {"a": 1}, True), ({"a": 1}, {"a": 1, "b": 2}, False), ({"a": "1"}, {"a": 1}, False),
])
def test_json_equal_keeps_types_apart(expected, actual, equal):
    assert _health.json_equal(expected, actual) is equal


def test_expectation_messages():
    assert _health.expectation_problem("version", "1.2.3", DOC) is None
    assert _health.expectation_problem("version", "1.2.4", DOC) == \
        "JSON path 'version' is \"1.2.3\", expected \"1.2.4\""
    missing = _health.expectation_problem("build", "x", DOC)
    assert missing.startswith("JSON path 'build' missing: no key 'build'")
    as_string = _health.expectation_problem("count", "2", DOC)
    assert "is 2, expected \"2\" (a number, expected a string" in as_string and "without quotes" in as_string
    as_number = _health.expectation_problem("version", 1.2, {"version": "1.2"})
    assert "(a string, expected a number: write the expected value in quotes" in as_number


# ---------------------------------------------------------------------------------------------- placeholders

def test_placeholders_and_substitution():
    captures = {"token": "abc", "uid": 7}
    assert _health.placeholders(["/users/${uid}", {"Authorization": "Bearer ${ token }"}, "$${literal}"]) == \
        {"uid", "token"}
    assert _health.substitute("/users/${uid}", captures) == "/users/7"
    assert _health.substitute("cost: $${price} for ${token}", captures) == "cost: ${price} for abc"
    # a string that is only a placeholder keeps the captured type where JSON is built
    assert _health.substitute({"id": "${uid}", "name": "u${uid}"}, captures, native=True) == {"id": 7, "name": "u7"}
    assert _health.substitute({"id": "${uid}"}, captures) == {"id": "7"}
    assert _health.substitute("${not closed", captures) == "${not closed"


# ---------------------------------------------------------------------------------------------- latency

def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert _health.percentile(values, 50) == 50
    assert _health.percentile(values, 95) == 95
    assert _health.percentile([5.0], 95) == 5.0
    assert _health.percentile([3, 1, 2], 50) == 2
    stats = _health.latency_stats([10.04, 2.0, 30.0, 4.0])
    assert stats == dict(count=4, min=2.0, p50=4.0, p95=30.0, max=30.0)
    assert _health.latency_stats([]) == {}


# ---------------------------------------------------------------------------------------------- error sentences

URL = "http://127.0.0.1:8080/health"


@pytest.mark.parametrize("exc, sentence", [
    (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
     "connection refused by 127.0.0.1:8080"),
    (urllib.error.URLError(socket.timeout("timed out")), "no response from 127.0.0.1:8080 within 2.5 s (timeout)"),
    (socket.timeout("timed out"), "no response from 127.0.0.1:8080 within 2.5 s (timeout)"),
    (http.client.RemoteDisconnected("Remote end closed connection"),
     "127.0.0.1:8080 closed the connection without sending a response"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection reset by 127.0.0.1:8080"),
    (urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed")),
     "TLS certificate of 127.0.0.1:8080 not accepted"),
    (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
     "cannot resolve host of 127.0.0.1:8080: Name or service not known"),
])
def test_describe_error(exc, sentence):
    assert sentence in _http.describe_error(exc, URL, 2.5)


@pytest.mark.parametrize("url, where", [("http://h/x", "h:80"), ("https://h/x", "h:443"), ("http://h:81", "h:81"),
                                        ("http://[::1]:8080/", "[::1]:8080")])
def test_where(url, where):
    assert _http.where(url) == where


# ---------------------------------------------------------------------------------------------- validation

def params(**overrides):
    spec = _health.argument_spec()
    values = dict((name, option.get("default")) for name, option in spec.items())
    values.update(overrides)
    for step in values.get("steps") or []:
        for name, option in _health._step_options().items():
            step.setdefault(name, option.get("default"))
    return values


@pytest.mark.parametrize("overrides, message", [
    (dict(url="ftp://host/x"), "is not an http:// or https:// URL"),
    (dict(url="http://h/", retries=-1), "retries cannot be negative"),
    (dict(url="http://h/", consecutive_successes=0), "consecutive_successes must be at least 1"),
    (dict(url="http://h/", timeout=0), "timeout must be more than 0"),
    (dict(url="http://h/", status_code=[200, 99]), "status_code 99 is not an HTTP status"),
    (dict(url="http://h/", body_regex="(unclosed"), "url: body_regex is not a valid regular expression"),
    (dict(url="http://h/", json_expect={"a..b": 1}), "JSON path 'a..b' is not valid"),
    (dict(url="http://h/", method="get me"), "is not an HTTP method"),
    (dict(url="http://h/${x}"), "placeholders are only filled in steps"),
    (dict(url="http://h/", ca_path="/nonexistent/ca.pem"), "ca_path /nonexistent/ca.pem is not a file"),
    (dict(url="http://h/", steps=[dict(url="/me", bearer="token")]),
     "step 1 uses ${token}, which no earlier step captures (captured before it: nothing)"),
    (dict(url="http://h/", steps=[dict(name="login", url="/login", capture={"tok": "access_token"}),
                                  dict(name="me", url="/me", headers={"X-T": "${token}"})]),
     "step 2 'me' uses ${token}, which no earlier step captures (captured before it: tok)"),
    (dict(url="http://h/", steps=[dict(url="/login", capture={"1x": "a"})]), "capture name '1x' is not valid"),
    (dict(url="http://h/", steps=[dict(url="/login", capture={"a": "b"}, capture_public=["c"])]),
     "capture_public names c, which capture does not define"),
    (dict(url="http://h/", steps=[dict(url="/login", json_body="{not json")]), "json_body is a string that is not JSON"),
    (dict(steps=[dict(url="/relative/without/base")]), "step 1: url '/relative/without/base' is not an http://"),
])
def test_bad_input_is_refused_before_any_request(overrides, message):
    with pytest.raises(SafeshipError) as info:
        _health.Probe(params(**overrides), Redactor(), send=_no_send)
    assert message in info.value.msg


def _no_send(*args, **kwargs):
    raise AssertionError("no request may be sent")


# ---------------------------------------------------------------------------------------------- retry loop

class Script(object):
    """A sender that answers from a list of (status, body) or error strings, and a sleep that only counts."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []
        self.sleeps = []

    def send(self, session, method, url, headers=None, data=None, timeout=None, **kwargs):
        self.sent.append(dict(method=method, url=url, headers=headers, data=data))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, str):
            return _http.Reply(method, url, error=answer, latency_ms=1.0)
        status, body = answer
        return _http.Reply(method, url, status=status, body=json.dumps(body).encode(), latency_ms=float(status) / 100,
                           headers={"content-type": "application/json"})

    def probe(self, **overrides):
        return _health.Probe(params(**overrides), Redactor(), send=self.send, sleep=self.sleeps.append)


GOOD = (200, {"status": "ok"})
BAD = (503, {"status": "down"})


def test_retries_until_healthy():
    script = Script(["connection refused by 127.0.0.1:1", BAD, GOOD])
    result = script.probe(url="http://h/health", retries=5, delay=0.5).run()
    assert result["attempts"] == 3 and result["status"] == 200 and result["changed"] is False
    assert script.sleeps == [0.5, 0.5]
    assert [entry["ok"] for entry in result["history"]] == [False, False, True]
    assert result["latencies_ms"] == [5.0, 2.0]  # the refused attempt had no reply


def test_gives_up_after_retries_plus_one_attempts():
    script = Script([BAD])
    with pytest.raises(SafeshipError) as info:
        script.probe(url="http://h/health", retries=3, delay=0).run()
    assert "failed after 4 attempts" in info.value.msg and "status 503, expected 200" in info.value.msg
    assert info.value.details["attempts"] == 4 and len(script.sent) == 4


def test_a_fail_fast_status_ends_the_probe_at_once():
    secret_body = (500, {"status": "error", "access_token": "tok-leaked-123", "error": "cannot reach payments"})
    script = Script(["connection refused by h:80", (404, {}), secret_body, GOOD])
    with pytest.raises(SafeshipError) as info:
        script.probe(url="http://h/health", retries=30, delay=1, fail_fast_statuses=list(range(500, 600))).run()
    msg = info.value.msg
    # refused and 404 are retried as usual; the 500 ends it: no 4th request, no more sleeping
    assert len(script.sent) == 3 and script.sleeps == [1, 1]
    assert msg.startswith("GET http://h/health answered with status 500, one of fail_fast_statuses, at attempt 3 "
                          "(of at most 31): not retried.")
    assert "cannot reach payments" in msg and "tok-leaked-123" not in msg + json.dumps(info.value.details)
    assert info.value.details["attempts"] == 3 and info.value.details["status"] == 500


def test_a_fail_fast_status_that_is_expected_is_a_success_and_other_statuses_retry():
    script = Script([(503, {"status": "maintenance"})])
    result = script.probe(url="http://h/health", status_code=[200, 503], fail_fast_statuses=[503]).run()
    assert result["status"] == 503 and len(script.sent) == 1
    script = Script([BAD, BAD, GOOD])
    result = script.probe(url="http://h/health", retries=5, delay=0, fail_fast_statuses=[500]).run()
    assert result["attempts"] == 3


def test_a_fail_fast_status_ends_a_step_s_retries():
    script = Script([GOOD, (502, {"error": "bad gateway"}), GOOD])
    with pytest.raises(SafeshipError) as info:
        script.probe(url="http://h/health", fail_fast_statuses=[502],
                     steps=[dict(name="api", url="/api", retries=5, delay=0)]).run()
    assert len(script.sent) == 2 and "step 1 'api' (GET /api) answered with status 502" in info.value.msg
    assert info.value.details["steps"][0]["attempts"] == 1


def test_fail_fast_statuses_must_be_http_statuses():
    with pytest.raises(SafeshipError, match="fail_fast_statuses 600 is not an HTTP status"):
        _health.Probe(params(url="http://h/", fail_fast_statuses=[500, 600]), Redactor(), send=_no_send)


# ---------------------------------------------------------------------------------------------- the watch

class Clock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        self.now += 0.5
        return self.now


def watch_specs(**overrides):
    spec = dict(url="http://127.0.0.1:3000/health", status_code=[200], json_expect={}, headers={}, timeout=5.0)
    spec.update(overrides)
    return [spec]


def test_watch_passes_once_a_check_answered_as_expected_and_keeps_probing():
    script = Script(["connection refused by 127.0.0.1:3000", (404, {}), GOOD, (200, {"status": "ok"})])
    watch = _health.Watch(watch_specs(json_expect={"status": "ok"}), Redactor(), fail_fast=range(500, 600),
                          send=script.send, clock=Clock())
    assert [watch.probe() for dummy in range(4)] == [False, False, True, True]
    assert watch.results() == {"http://127.0.0.1:3000/health": dict(
        ok=True, status=200, attempts=4, latency_ms=2.0, elapsed=2.0)}


def test_watch_fails_at_once_on_a_5xx_with_the_body_and_headers_masked():
    script = Script([(500, {"status": "error", "error": "cannot reach the payment service"})])
    watch = _health.Watch(watch_specs(headers={"X-Api-Key": "k-secret-1", "Host": "shop.test"}), Redactor(),
                          fail_fast=range(500, 600), send=script.send, clock=Clock())
    with pytest.raises(_health.HealthFailure) as info:
        watch.probe()
    assert info.value.msg.startswith("GET http://127.0.0.1:3000/health: status 500, "
                                     "expected 200; body: ")
    assert "cannot reach the payment service" in info.value.msg
    assert script.sent[0]["headers"] == {"X-Api-Key": "k-secret-1", "Host": "shop.test"}
    result = watch.results()["http://127.0.0.1:3000/health"]
    assert result["ok"] is False and result["status"] == 500 and result["attempts"] == 1
    assert "k-secret-1" not in json.dumps(watch.results())


def test_watch_says_what_the_checks_that_never_passed_got():
    script = Script([GOOD, "connection refused by 127.0.0.1:3001"])
    specs = watch_specs() + watch_specs(url="http://127.0.0.1:3001/health")
    watch = _health.Watch(specs, Redactor(), send=script.send, clock=Clock())
    assert watch.probe() is False
    assert watch.pending() == "GET http://127.0.0.1:3001/health: connection refused by 127.0.0.1:3001"


@pytest.mark.parametrize("specs, message", [
    (watch_specs(url="ftp://x/"), "health_checks[0]: url 'ftp://x/' is not an http:// or https:// URL"),
    (watch_specs() * 2, "health_checks[1]: url http://127.0.0.1:3000/health is checked twice"),
    (watch_specs(status_code=[999]), "health_checks[0]: status_code 999 is not an HTTP status"),
    (watch_specs(timeout=0), "health_checks[0]: timeout must be more than 0 seconds"),
    (watch_specs(json_expect={"a..b": 1}), "JSON path 'a..b' is not valid"),
])
def test_watch_refuses_bad_checks(specs, message):
    with pytest.raises(SafeshipError) as info:
        _health.Watch(specs, Redactor(), send=_no_send)
    assert message in info.value.msg


def test_flapping_needs_a_streak_and_stops_when_it_cannot_be_reached():
    script = Script([GOOD, BAD] * 10)
    with pytest.raises(SafeshipError) as info:
        script.probe(url="http://h/health", retries=4, consecutive_successes=3, delay=0).run()
    assert "passed at most 1 time in a row, consecutive_successes needs 3" in info.value.msg
    # limit 7 attempts; after the 6th (a failure) 1 attempt is left, 3 are needed: stop
    assert len(script.sent) == 6


def test_a_streak_passes():
    script = Script([BAD, GOOD, GOOD, GOOD])
    result = script.probe(url="http://h/health", retries=1, consecutive_successes=3, delay=0).run()
    assert result["attempts"] == 4
    assert result["latency"]["count"] == 3  # computed over the streak when samples is 0


def test_samples_default_to_ten_with_a_budget_and_fail_above_it():
    script = Script([GOOD])
    result = script.probe(url="http://h/health", max_latency_ms=5).run()
    assert len(script.sent) == 11 and result["latency"]["count"] == 10
    script = Script([GOOD])
    with pytest.raises(SafeshipError) as info:
        script.probe(url="http://h/health", max_latency_ms=1).run()
    assert "p95 latency 2.0 ms over 10 requests, above max_latency_ms 1" in info.value.msg


def test_a_failing_sample_fails_the_probe():
    script = Script([GOOD, GOOD, BAD, GOOD])
    with pytest.raises(SafeshipError, match="passed, then failed latency sample 2 of 3: status 503"):
        script.probe(url="http://h/health", samples=3).run()


def test_steps_capture_and_use_values():
    script = Script([GOOD, (200, {"access_token": "tok-abcdef", "user": {"id": 7}}), (200, {"id": 7})])
    result = script.probe(url="http://h/health", steps=[
        dict(name="login", url="/login", method="POST", json_body={"password": "pw-123456"},
             capture={"token": "access_token", "uid": "user.id"}, capture_public=["uid"]),
        dict(name="me", url="/users/${uid}", bearer="token", json_expect={"id": "${uid}"}),
    ]).run()
    login, me = script.sent[1], script.sent[2]
    assert login["url"] == "http://h/login" and json.loads(login["data"]) == {"password": "pw-123456"}
    assert login["headers"]["Content-Type"] == "application/json"
    assert me["url"] == "http://h/users/7" and me["headers"]["Authorization"] == "Bearer tok-abcdef"
    assert result["steps"][0]["captured"] == {"token": "********", "uid": 7}
    assert "tok-abcdef" not in json.dumps(result) and "pw-123456" not in json.dumps(result)


def test_a_step_runs_once_unless_it_sets_retries():
    script = Script([GOOD, BAD])
    with pytest.raises(SafeshipError) as info:
        script.probe(url="http://h/health", retries=9, steps=[dict(name="api", url="/api")]).run()
    assert len(script.sent) == 2 and "step 1 'api' failed (GET http://h/api): status 503" in info.value.msg
    script = Script([GOOD, BAD, BAD, GOOD])
    result = script.probe(url="http://h/health", steps=[dict(name="api", url="/api", retries=2, delay=0.1)]).run()
    assert result["steps"][0]["attempts"] == 3 and script.sleeps == [0.1, 0.1]


def test_without_url_the_first_step_is_retried():
    script = Script([BAD, BAD, GOOD, GOOD])
    result = script.probe(retries=5, delay=0, steps=[dict(url="http://h/ready"), dict(url="/api")]).run()
    assert result["attempts"] == 3
    assert [step["attempts"] for step in result["steps"]] == [3, 1]


def test_skipped_in_check_mode_when_asked():
    script = Script([GOOD])
    result = _health.Probe(params(url="http://h/", run_in_check_mode=False), Redactor(), check_mode=True,
                           send=script.send).run()
    assert result["skipped"] is True and result["changed"] is False and script.sent == []


def test_steps_inherit_top_level_headers_and_override_them_whatever_the_case():
    script = Script([GOOD])
    script.probe(url="http://h/health", headers={"X-Env": "prod", "Host": "www.example.test"}, steps=[
        dict(url="/a"), dict(url="/b", headers={"host": "acme.example.test"})]).run()
    top, first, second = [sent["headers"] for sent in script.sent]
    assert top == {"X-Env": "prod", "Host": "www.example.test"}
    assert first == {"X-Env": "prod", "Host": "www.example.test"}
    assert second == {"X-Env": "prod", "host": "acme.example.test"}


def test_a_token_written_with_json_escapes_is_masked_in_the_excerpt():
    body = '{"error": "denied", "echo": "tok\\/abc-123456", "access_token": "other-secret-1"}'
    assert "tok\\/abc" in body

    class Raw(Script):
        def send(self, session, method, url, headers=None, data=None, timeout=None, **kwargs):
            self.sent.append(url)
            if len(self.sent) == 1:
                return _http.Reply(method, url, status=200, body=b'{"access_token": "tok/abc-123456"}',
                                   latency_ms=1.0)
            return _http.Reply(method, url, status=403, body=body.encode(), latency_ms=1.0)

    script = Raw([GOOD])
    with pytest.raises(SafeshipError) as info:
        script.probe(steps=[dict(url="http://h/login", capture={"token": "access_token"}),
                            dict(url="/api", bearer="token")]).run()
    msg = info.value.msg
    assert "status 403, expected 200" in msg and "denied" in msg
    assert "abc-123456" not in msg and "other-secret-1" not in msg
    assert "abc-123456" not in json.dumps(info.value.details)
