"""health_probe against real HTTP servers started by the tests (tests/helpers/http_app.py): good, wrong status,
wrong version, slow, flapping, closing the connection, not listening, healthy only after some requests, a
login flow with a bearer token, a Host-based tenant, and TLS with a self-signed certificate.

The module runs as Ansible runs it (a separate process); the servers run in this process."""

import json

import pytest

from helpers.http_app import PASSWORD, App, self_signed_cert
from helpers.ports import free_port

FAST = dict(delay=0.01)


@pytest.fixture()
def make_app():
    apps = []

    def make(**kwargs):
        app = App(**kwargs)
        apps.append(app)
        return app
    yield make
    for app in apps:
        app.close()


@pytest.fixture()
def app(make_app):
    return make_app()


def failed(result):
    assert result.get("failed") is True, "expected a failure, got %s" % result.get("msg")
    assert result.get("changed", False) is False  # Ansible's own argument checks return no 'changed'

    return result["msg"]


def passed(result):
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    return result


def printed(result):
    return result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- four ways

def test_health_probe_four_ways(app, run_module):
    args = dict(url=app.url("/health"), json_expect={"status": "ok", "version": "1.2.3", "checks.db": "ok",
                                                     "items.0.id": 7})
    for number, check_mode in enumerate([True, False, False, True], start=1):
        result = passed(run_module("health_probe", args, check_mode=check_mode))
        assert result["status"] == 200 and result["attempts"] == 1
        assert result["json"]["version"] == "1.2.3"
        # a probe only reads: it sends its request in check mode too
        assert app.hits["/health"] == number


def test_not_run_in_check_mode_when_asked(app, run_module):
    args = dict(url=app.url("/health"), run_in_check_mode=False)
    check = passed(run_module("health_probe", args, check_mode=True))
    assert check["skipped"] is True and app.total() == 0
    real = passed(run_module("health_probe", args))
    assert "skipped" not in real and app.hits["/health"] == 1


# ---------------------------------------------------------------------------------------------- failures

def test_wrong_status_is_retried_then_reported_with_the_body(app, run_module):
    result = run_module("health_probe", dict(url=app.url("/down"), retries=2, **FAST))
    msg = failed(result)
    assert "GET %s failed after 3 attempts" % app.url("/down") in msg
    assert "status 503, expected 200" in msg and '\\"status\\": \\"down\\"' in msg
    assert result["attempts"] == 3 and result["status"] == 503 and app.hits["/down"] == 3
    assert [entry["error"] for entry in result["history"]] == ["status 503, expected 200"] * 3


def test_another_accepted_status(app, run_module):
    result = passed(run_module("health_probe", dict(url=app.url("/down"), status_code=[200, 503], retries=0)))
    assert result["status"] == 503 and result["json"] == {"status": "down"}


def test_wrong_version(make_app, run_module):
    app = make_app(version="1.2.2")
    result = run_module("health_probe", dict(url=app.url("/health"), retries=1,
                                             json_expect={"status": "ok", "version": "1.2.3"}, **FAST))
    msg = failed(result)
    assert "JSON path 'version' is \"1.2.2\", expected \"1.2.3\"" in msg
    assert "JSON path 'status'" not in msg
    assert result["attempts"] == 2 and result["json"]["version"] == "1.2.2"


def test_missing_path_and_type_mismatch(app, run_module):
    msg = failed(run_module("health_probe", dict(url=app.url("/health"), retries=0,
                                                 json_expect={"checks.queue": "ok", "items.0.id": "7"})))
    assert "JSON path 'checks.queue' missing: no key 'queue' in the object at 'checks' (keys: db)" in msg
    assert "JSON path 'items.0.id' is 7, expected \"7\" (a number, expected a string" in msg


def test_body_not_json_and_body_regex(app, run_module):
    msg = failed(run_module("health_probe", dict(url=app.url("/html"), retries=0, json_expect={"status": "ok"})))
    assert "body is not JSON (Content-Type: text/html)" in msg and "<title>Maintenance</title>" in msg
    passed(run_module("health_probe", dict(url=app.url("/html"), retries=0, body_regex="<title>Maint")))
    msg = failed(run_module("health_probe", dict(url=app.url("/html"), retries=0, body_regex="Welcome")))
    assert "body does not match body_regex 'Welcome'" in msg


def test_slow_server_times_out(app, run_module):
    result = run_module("health_probe", dict(url=app.url("/slow?seconds=3"), timeout=0.5, retries=0))
    msg = failed(result)
    assert "no response from 127.0.0.1:%d within 0.5 s (timeout)" % app.port in msg
    assert result["status"] is None and result["latencies_ms"] == []


def test_connection_closed_without_a_response(app, run_module):
    msg = failed(run_module("health_probe", dict(url=app.url("/close"), retries=1, **FAST)))
    assert "127.0.0.1:%d closed the connection without sending a response" % app.port in msg
    assert "after 2 attempts" in msg and app.hits["/close"] == 2


def test_connection_refused(run_module):
    port = free_port()
    result = run_module("health_probe", dict(url="http://127.0.0.1:%d/health" % port, retries=2, **FAST))
    msg = failed(result)
    assert "connection refused by 127.0.0.1:%d" % port in msg and "after 3 attempts" in msg
    assert result["attempts"] == 3 and result["status"] is None


def test_redirects(app, run_module):
    result = passed(run_module("health_probe", dict(url=app.url("/redirect"), json_expect={"status": "ok"})))
    assert app.hits["/health"] == 1 and result["status"] == 200
    msg = failed(run_module("health_probe", dict(url=app.url("/redirect"), follow_redirects="none", retries=0)))
    assert "status 302, expected 200 (redirect to" in msg and "/health; see follow_redirects)" in msg


# ---------------------------------------------------------------------------------------------- retries, flapping

def test_becomes_healthy_after_some_requests(make_app, run_module):
    too_few = make_app()
    msg = failed(run_module("health_probe", dict(url=too_few.url("/ready-after/3"), retries=2, **FAST)))
    assert "failed after 3 attempts" in msg and "status 503" in msg

    enough = make_app()
    result = passed(run_module("health_probe", dict(url=enough.url("/ready-after/3"), retries=5, **FAST)))
    assert result["attempts"] == 4 and result["status"] == 200
    assert [entry["ok"] for entry in result["history"]] == [False, False, False, True]


def test_a_fail_fast_status_ends_the_probe_without_the_remaining_retries(make_app, run_module):
    """A release that says it is ready and answers 5xx is broken: with fail_fast_statuses the probe stops at the
    first such answer instead of retrying; connection errors and other statuses still retry."""
    broken = make_app()
    args = dict(url=broken.url("/down"), retries=20, delay=0.2, fail_fast_statuses=list(range(500, 600)))
    result = run_module("health_probe", args)
    msg = failed(result)
    assert msg.startswith("GET %s answered with status 503, one of fail_fast_statuses, at attempt 1 (of at most "
                          "21): not retried." % broken.url("/down"))
    assert msg.endswith('status 503, expected 200; body: "{\\"status\\": \\"down\\"}"')
    assert result["attempts"] == 1 and broken.hits["/down"] == 1 and result["status"] == 503

    # without it, the same answer is retried as before
    result = run_module("health_probe", dict(args, fail_fast_statuses=[], retries=2, delay=0.01))
    assert "failed after 3 attempts" in failed(result) and broken.hits["/down"] == 4

    # 404 is not in the list: retried until it turns healthy (503 for the first 2 requests is, so it stops)
    slow_start = make_app()
    result = run_module("health_probe", dict(url=slow_start.url("/ready-after/2"), retries=5, delay=0.01,
                                             fail_fast_statuses=[404]))
    assert passed(result)["attempts"] == 3


def test_a_fail_fast_status_ends_a_step_s_retries_and_nothing_leaks(app, run_module):
    result = run_module("health_probe", dict(url=app.url("/health"), fail_fast_statuses=[503], steps=[
        dict(name="api down", url="/down", retries=10, delay=0.2)]))
    msg = failed(result)
    assert "step 1 'api down' (GET /down) answered with status 503, one of fail_fast_statuses" in msg
    assert app.hits["/down"] == 1 and result["steps"][0]["attempts"] == 1


def test_flapping_is_caught_by_consecutive_successes(app, run_module):
    # the first answer is good: one success is enough to be fooled
    fooled = passed(run_module("health_probe", dict(url=app.url("/flap"))))
    assert fooled["attempts"] == 1

    result = run_module("health_probe", dict(url=app.url("/flap"), retries=6, consecutive_successes=3, **FAST))
    msg = failed(result)
    assert "passed at most 1 time in a row, consecutive_successes needs 3" in msg
    assert "last failure" in msg and "status 503, expected 200" in msg
    assert [entry["ok"] for entry in result["history"]][:4] == [False, True, False, True]


def test_a_steady_app_passes_consecutive_successes(app, run_module):
    result = passed(run_module("health_probe", dict(url=app.url("/health"), consecutive_successes=3, **FAST)))
    assert result["attempts"] == 3 and app.hits["/health"] == 3


# ---------------------------------------------------------------------------------------------- latency

def test_latency_samples_and_statistics(app, run_module):
    result = passed(run_module("health_probe", dict(url=app.url("/health"), samples=5)))
    stats = result["latency"]
    assert stats["count"] == 5 and stats["min"] <= stats["p50"] <= stats["p95"] <= stats["max"]
    assert len(result["latencies_ms"]) == 6 and app.hits["/health"] == 6
    assert "p95" in result["msg"]


def test_latency_budget(app, run_module):
    # the server waits 50 ms before answering, so no request can take less than 50 ms: a 10 ms budget must fail
    url = app.url("/slow?seconds=0.05")
    result = run_module("health_probe", dict(url=url, max_latency_ms=10, samples=3, timeout=5))
    msg = failed(result)
    assert "answered with p95 latency" in msg and "over 3 requests, above max_latency_ms 10 (p50" in msg
    assert result["latency"]["p95"] >= 50 and result["latency"]["count"] == 3
    generous = passed(run_module("health_probe", dict(url=url, max_latency_ms=600000, timeout=5)))
    assert generous["latency"]["count"] == 10  # default samples with a budget


# ---------------------------------------------------------------------------------------------- smoke steps

def login_step(**extra):
    step = dict(name="login", url="/api/login", method="POST",
                json_body={"email": "smoke@example.test", "password": PASSWORD},
                capture={"token": "access_token", "uid": "user.id"}, capture_public=["uid"])
    step.update(extra)
    return step


def test_smoke_flow_login_bearer_and_tenant(app, run_module):
    result = passed(run_module("health_probe", dict(url=app.url("/health"), json_expect={"status": "ok"},
                                                    headers={"X-Smoke": "deploy-42"}, steps=[
        login_step(),
        dict(name="profile", url="/api/me", bearer="token", json_expect={"user": "smoke"}),
        dict(name="user", url="/api/users/${uid}", bearer="token", json_expect={"id": "${uid}"}),
        dict(name="tenant acme", url="/api/tenant", bearer="token", headers={"Host": "acme.example.test"},
             json_expect={"tenant": "acme"}),
    ])))
    steps = result["steps"]
    assert [step["name"] for step in steps] == ["login", "profile", "user", "tenant acme"]
    assert all(step["ok"] and step["status"] == 200 and step["attempts"] == 1 for step in steps)
    assert steps[0]["captured"] == {"token": "********", "uid": 7}
    assert steps[0]["json"]["access_token"] == "********"
    assert steps[2]["url"] == app.url("/api/users/7")
    tenant_request = [r for r in app.requests if r["path"] == "/api/tenant"][0]
    assert tenant_request["headers"]["Host"] == "acme.example.test"
    assert tenant_request["headers"]["Authorization"] == "Bearer " + app.token
    # top-level headers reach every step
    assert tenant_request["headers"]["X-Smoke"] == "deploy-42"
    assert all(r["headers"].get("X-Smoke") == "deploy-42" for r in app.requests)
    # the token and the login password never leave the module, not even in the echoed arguments
    assert app.token not in printed(result) and PASSWORD not in printed(result)


def test_a_captured_token_is_redacted_from_a_failure(app, run_module):
    result = run_module("health_probe", dict(url=app.url("/health"), steps=[
        login_step(), dict(name="leak", url="/api/leak", bearer="token")]))
    msg = failed(result)
    assert "step 2 'leak' failed (GET %s): status 500, expected 200" % app.url("/api/leak") in msg
    assert "handling token ******** for user smoke" in msg
    assert app.token not in printed(result) and PASSWORD not in printed(result)
    assert result["steps"][1]["error"] == "status 500, expected 200"


def test_unknown_tenant_host(app, run_module):
    msg = failed(run_module("health_probe", dict(url=app.url("/health"), steps=[
        login_step(), dict(url="/api/tenant", bearer="token", headers={"Host": "other.example.test"})])))
    assert "step 2 (GET %s): status 404" % app.url("/api/tenant") in msg.replace("failed ", "")
    assert "no tenant for host other.example.test" in msg


def test_wrong_password_fails_the_login_step_and_stays_hidden(app, run_module):
    result = run_module("health_probe", dict(url=app.url("/health"), steps=[
        login_step(json_body={"email": "smoke@example.test", "password": "wrong-password-1"})]))
    msg = failed(result)
    assert "step 1 'login' failed (POST %s): status 401, expected 200" % app.url("/api/login") in msg
    assert "wrong-password-1" not in printed(result)


def test_a_capture_path_that_is_missing(app, run_module):
    msg = failed(run_module("health_probe", dict(url=app.url("/health"), steps=[
        login_step(capture={"token": "data.token"}, capture_public=[])])))
    assert "capture token: JSON path 'data.token' missing: no key 'data' in the object at the top level" in msg


def test_without_url_the_first_step_waits_for_the_app(app, run_module):
    result = passed(run_module("health_probe", dict(retries=5, steps=[
        dict(name="ready", url=app.url("/ready-after/2")), login_step(),
        dict(name="me", url="/api/me", bearer="token")], **FAST)))
    assert result["attempts"] == 3
    assert [(step["name"], step["attempts"]) for step in result["steps"]] == [("ready", 3), ("login", 1), ("me", 1)]


def test_placeholders_checked_before_any_request(app, run_module):
    msg = failed(run_module("health_probe", dict(url=app.url("/health"), steps=[
        login_step(), dict(name="me", url="/api/me", headers={"Authorization": "Bearer ${tokn}"})])))
    assert "step 2 'me' uses ${tokn}, which no earlier step captures (captured before it: token, uid)" in msg
    assert app.total() == 0


def test_bad_input_sends_nothing(app, run_module):
    msg = failed(run_module("health_probe", dict(url=app.url("/health"), body="x", json_body={"a": 1})))
    assert "mutually exclusive" in msg
    msg = failed(run_module("health_probe", dict(url="ftp://127.0.0.1/health")))
    assert "url 'ftp://127.0.0.1/health' is not an http:// or https:// URL" in msg
    assert app.total() == 0


def test_basic_auth_password_is_masked(app, run_module):
    result = run_module("health_probe", dict(url=app.url("/down"), retries=0, url_username="probe",
                                             url_password="basic-auth-secret", force_basic_auth=True))
    failed(result)
    request = app.requests[-1]
    assert request["headers"]["Authorization"].startswith("Basic ")
    assert "basic-auth-secret" not in printed(result)


# ---------------------------------------------------------------------------------------------- TLS

@pytest.fixture()
def tls_app(make_app, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    app = make_app(certfile=cert, keyfile=key)
    app.cert = cert
    return app


def test_tls_self_signed(tls_app, run_module):
    url = tls_app.url("/health")
    msg = failed(run_module("health_probe", dict(url=url, retries=0)))
    assert "TLS certificate of 127.0.0.1:%d not accepted" % tls_app.port in msg
    assert "set ca_path" in msg and "validate_certs: false" in msg

    insecure = passed(run_module("health_probe", dict(url=url, validate_certs=False, json_expect={"status": "ok"})))
    assert insecure["status"] == 200

    trusted = passed(run_module("health_probe", dict(url=url, ca_path=tls_app.cert, json_expect={"status": "ok"})))
    assert trusted["json"]["version"] == "1.2.3"


def test_tls_ca_path_that_is_not_a_certificate(tls_app, run_module, tmp_path):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    msg = failed(run_module("health_probe", dict(url=tls_app.url("/health"), ca_path=str(bogus), retries=0)))
    assert "cannot load the CA certificates from %s" % bogus in msg


def test_result_is_json_serialisable_and_documented_keys_present(app, run_module):
    result = passed(run_module("health_probe", dict(url=app.url("/health"))))
    for key in ("url", "attempts", "status", "json", "latencies_ms", "latency", "history", "steps", "elapsed", "msg"):
        assert key in result, key
    json.dumps(dict(result))
