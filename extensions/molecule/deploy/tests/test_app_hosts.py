"""app1 and app2 after converge: the web stack real systemd units, v1 (the last deploy) live and served
through nginx, the queue worker under supervisor running in that release."""

import json

import pytest

testinfra_hosts = ["app1", "app2"]

ROOT = "/srv/shop"
LIVE = ("v1", "1.0.0")


@pytest.mark.parametrize("unit", ["php8.2-fpm", "nginx", "supervisor"])
def test_the_web_stack_runs_as_enabled_units(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


def test_current_points_at_the_live_release(host):
    current = host.file(ROOT + "/current")
    assert current.is_symlink
    assert current.linked_to == "%s/releases/%s" % (ROOT, LIVE[0])


def test_nginx_serves_the_live_version(host):
    answer = json.loads(host.check_output("curl -fsS http://127.0.0.1/up"))
    assert answer["status"] == "ok" and answer["version"] == LIVE[1]


def test_the_worker_runs_in_the_live_release(host):
    status = host.check_output("supervisorctl status shop-worker:shop-worker_00")
    assert "RUNNING" in status, status
    pid = host.check_output("supervisorctl pid shop-worker:shop-worker_00")
    assert host.check_output("readlink /proc/%s/cwd" % pid) == "%s/releases/%s" % (ROOT, LIVE[0])
    command = host.file("/proc/%s/cmdline" % pid).content.split(b"\0")
    assert command[:3] == [b"php", b"artisan", b"queue:work"]
    assert host.process.get(pid=int(pid)).user == "www-data"
