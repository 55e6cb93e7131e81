"""pm2_app health_checks for real: pm2 7 in a private PM2_HOME, built releases of the fixture app (a good one and
one whose /health answers 500), real HTTP. A healthy reload passes once the stability window is over and every
check answered; an unhealthy release fails at its first 5xx answer, long before a 20 s window would end; a check
that never passes fails at wait_online_timeout naming what it got; a check that passes only after the window keeps
the module waiting for it."""

import http.server
import json
import threading

from helpers.node_apps import free_port
from helpers.pm2_checks import serves, write_ecosystem


def cluster_app(current, port):
    return {"name": "web", "script": "dist/server.js", "cwd": current, "exec_mode": "cluster", "instances": 2,
            "wait_ready": True, "listen_timeout": 8000, "kill_timeout": 3000, "env": {"PORT": port}}


def health_url(port):
    return "http://127.0.0.1:%d/health" % port


def started(task, releases, tmp_path, version="1.0.0"):
    """The app web (2 cluster instances) online on a free port: (ecosystem, current link, port)."""
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), version)
    eco = write_ecosystem(str(tmp_path / "ecosystem.config.js"), [cluster_app(current, port)])
    task.ok(ecosystem=eco)
    serves(port, version)
    return eco, current, port


def test_a_healthy_reload_passes_once_the_window_is_over_and_every_check_answered(task, releases, tmp_path):
    eco, current, port = started(task, releases, tmp_path)
    releases.switch(current, "2.0.0")
    checks = [dict(url=health_url(port), json_expect={"status": "ok", "version": "2.0.0"},
                   headers={"X-Probe-Token": "probe-secret-123"})]

    check = task.ok(check_mode=True, ecosystem=eco, state="reloaded", health_checks=checks)
    assert check["changed"] is True and check["health"] == {}  # not probed in check mode
    serves(port, "1.0.0")

    real = task.ok(ecosystem=eco, state="reloaded", stable_seconds=2, health_checks=checks)
    assert real["changed"] is True and real["actions"] == {"web": "reload"}
    entry = real["health"][health_url(port)]
    assert entry["ok"] is True and entry["status"] == 200 and entry["attempts"] >= 2 and entry["latency_ms"] > 0
    assert entry["elapsed"] >= 2  # probed on through the whole window, not once
    assert "probe-secret-123" not in json.dumps(dict(real)) + real.stdout
    serves(port, "2.0.0")

    # nothing to do: nothing acted on, nothing probed
    again = task.ok(ecosystem=eco, health_checks=checks)
    assert again["changed"] is False and again["health"] == {}


def test_an_unhealthy_release_fails_at_its_first_5xx_not_at_the_end_of_the_window(task, releases, tmp_path):
    eco, current, port = started(task, releases, tmp_path)
    releases.switch(current, "3.0.0", "unhealthy")
    result = task.fails(ecosystem=eco, state="reloaded", stable_seconds=20, wait_online_timeout=120,
                        health_checks=[dict(url=health_url(port))])
    assert result["changed"] is True
    assert result["msg"].startswith("pm2_app: app web is broken: GET %s: status 500, "
                                    "expected 200; body: " % health_url(port)), result["msg"]
    assert "cannot reach the payment service" in result["msg"]
    assert result["msg"].endswith("(health_checks; not waiting out the 20 s of stable_seconds).")
    entry = result["health"][health_url(port)]
    assert entry["ok"] is False and entry["status"] == 500 and entry["attempts"] == 1
    # the module's own clock: the failure came from the first answer, well inside the 20 s window
    assert entry["elapsed"] < 20
    assert [a["version"] for a in result["apps"]] == ["3.0.0", "3.0.0"]


def test_a_check_that_never_passes_fails_at_wait_online_timeout_saying_what_it_got(task, releases, tmp_path):
    eco, current, port = started(task, releases, tmp_path)
    result = task.fails(ecosystem=eco, state="restarted", stable_seconds=1, wait_online_timeout=15,
                        health_checks=[dict(url=health_url(port), json_expect={"version": "9.9.9"})])
    assert result["msg"].startswith("pm2_app: app web is online, but its health checks did not pass within 15 s: "
                                    "GET %s: JSON path 'version' is \"1.0.0\", expected \"9.9.9\"" % health_url(port))
    entry = result["health"][health_url(port)]
    assert entry["ok"] is False and entry["status"] == 200 and entry["attempts"] > 1
    assert entry["elapsed"] > 1  # probed past the window


def test_a_check_that_passes_only_after_the_window_keeps_the_module_waiting(task, releases, tmp_path):
    """The check's URL is served by a second server, started by the test once the app is up and the 1 s window
    has passed: connection refused until then, 200 after."""
    eco, current, port = started(task, releases, tmp_path)
    side_port = free_port()

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = []

    def serve_later():
        serves(port, "1.0.0", timeout=60)  # the restarted app answers: its window starts now at the latest
        threading.Event().wait(3.0)
        server = http.server.HTTPServer(("127.0.0.1", side_port), Health)
        servers.append(server)
        server.serve_forever()

    thread = threading.Thread(target=serve_later, daemon=True)
    thread.start()
    try:
        result = task.ok(ecosystem=eco, state="restarted", stable_seconds=1, wait_online_timeout=60,
                         health_checks=[dict(url="http://127.0.0.1:%d/ready" % side_port, json_expect={"status": "ok"})])
    finally:
        if servers:
            servers[0].shutdown()
    entry = result["health"]["http://127.0.0.1:%d/ready" % side_port]
    assert entry["ok"] is True and entry["status"] == 200 and entry["attempts"] > 1
    assert entry["elapsed"] > 1  # it passed after the window: the module waited for it
