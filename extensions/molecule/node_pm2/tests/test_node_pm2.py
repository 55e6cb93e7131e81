"""node_pm2 with node_pm2_startup: pm2's daemon runs under pm2-root.service, r2 is current and serves 2.0.0 on
port 3000 from two cluster workers, and a restart of the unit brings the saved apps back (the last test)."""

import json
import time

import pytest

ROOT = "/srv/shop"


def health(host):
    return json.loads(host.check_output("curl -fsS --max-time 2 http://127.0.0.1:3000/health"))


def pm2_apps(host):
    """{name: [status of each instance]} of the daemon's process list."""
    apps = {}
    for proc in json.loads(host.check_output("PM2_HOME=/root/.pm2 pm2 jlist")):
        apps.setdefault(proc["name"], []).append(proc["pm2_env"]["status"])
    return apps


def test_startup_unit_is_enabled_and_active(host):
    unit = host.service("pm2-root")
    assert unit.is_enabled
    assert unit.is_running
    assert host.file("/etc/systemd/system/pm2-root.service").contains("^Environment=PM2_HOME=/root/.pm2$")


def test_pm2_daemon_runs_inside_the_unit(host):
    pid = host.file("/root/.pm2/pm2.pid").content_string.strip()
    assert host.check_output("systemctl show -p MainPID --value pm2-root") == pid
    assert "pm2-root.service" in host.file("/proc/%s/cgroup" % pid).content_string


def test_current_points_at_r2(host):
    current = host.file(ROOT + "/current")
    assert current.is_symlink
    assert current.linked_to == ROOT + "/releases/r2"
    assert host.file(ROOT + "/releases/r1").is_directory


def test_two_workers_online(host):
    assert pm2_apps(host) == {"shop-web": ["online", "online"]}
    nodes = host.process.filter(comm="node")
    assert len([p for p in nodes if "dist/server.js" in p.args]) >= 2


def test_port_3000_listening(host):
    assert host.socket("tcp://127.0.0.1:3000").is_listening


def test_http_serves_version_2(host):
    body = health(host)
    assert body["status"] == "ok"
    assert body["version"] == "2.0.0"
    root = json.loads(host.check_output("curl -fsS http://127.0.0.1:3000/"))
    assert root["greeting"] == "hola from molecule"


def test_apps_resurrected_after_unit_restart(host):
    before = health(host)["pid"]
    host.run_expect([0], "systemctl restart pm2-root")
    for _attempt in range(40):
        try:
            body = health(host)
        except (AssertionError, ValueError):
            time.sleep(0.25)
            continue
        break
    else:
        pytest.fail("nothing answers on port 3000 after systemctl restart pm2-root")
    assert body["version"] == "2.0.0"
    assert body["pid"] != before
    assert host.service("pm2-root").is_running
    assert pm2_apps(host) == {"shop-web": ["online", "online"]}
