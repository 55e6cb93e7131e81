"""pm2_app for real: pm2 7 from tools/node in a private PM2_HOME per test, built releases of the fixture app,
real HTTP. Every state four ways (check, real, again, again in check)."""

import json
import os
import shlex
import stat

import pytest

from helpers.node_apps import PM2
from helpers.pm2_checks import (
    Requester,
    daemon_files,
    proc_environ,
    proc_umask,
    refused,
    serves,
    without_invocation,
    write_ecosystem,
)
from helpers.ports import free_port


def cluster_app(name, current, port, instances=2, **extra):
    app = {"name": name, "script": "dist/server.js", "cwd": current, "exec_mode": "cluster", "instances": instances,
           "wait_ready": True, "listen_timeout": 8000, "kill_timeout": 3000, "env": {"PORT": port}}
    app.update(extra)
    return app


def live_pids(result, name):
    pids = result["pids_after"][name]
    for pid in pids:
        os.kill(pid, 0)  # raises when the process is gone
    return pids


def test_started_four_ways(task, pm2_home, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    eco = write_ecosystem(str(tmp_path / "ecosystem.config.js"), [cluster_app("web", current, port)])

    check = task.ok(check_mode=True, diff=True, ecosystem=eco, stable_seconds=2)
    assert check["changed"] is True and check["actions"] == {"web": "start"}
    assert check["diff"] == {"before": {"web": {"status": "absent", "instances": 0}},
                             "after": {"web": {"status": "online", "instances": 2}}}
    assert daemon_files(pm2_home.path) == [], "check mode spawned a pm2 daemon"
    assert refused(port)

    real = task.ok(ecosystem=eco, diff=True, stable_seconds=2)
    assert real["changed"] is True and real["actions"] == {"web": "start"}
    assert real["instances"] == {"web": 2} and real["exec_mode"] == {"web": "cluster"}
    assert real["pids_before"] == {"web": []} and len(set(live_pids(real, "web"))) == 2
    assert [(a["name"], a["status"], a["exec_mode"], a["version"], a["cwd"]) for a in real["apps"]] == [
        ("web", "online", "cluster", "1.0.0", current)] * 2
    assert real["diff"]["after"] == {"web": {"status": "online", "instances": 2}}
    assert serves(port, "1.0.0")["app"] == "safeship-node-fixture"
    assert "%s start %s --only web" % (PM2, eco) in real["executed_commands"]

    again = task.ok(ecosystem=eco)
    assert again["changed"] is False and again["actions"] == {"web": "none"}
    assert again["pids_after"] == again["pids_before"] == real["pids_after"]
    assert again["restarts"] == {"web": 0}

    check_again = task.ok(check_mode=True, ecosystem=eco)
    assert check_again["changed"] is False and check_again["pids_after"] == real["pids_after"]
    assert pm2_home.apps()["web"] == [(pid, "online", 0) for pid in real["pids_after"]["web"]]


def test_stopped_four_ways(task, pm2_home, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    eco = write_ecosystem(str(tmp_path / "ecosystem.json"), [cluster_app("web", current, port, instances=1)])
    task.ok(ecosystem=eco)
    serves(port, "1.0.0")

    check = task.ok(check_mode=True, diff=True, ecosystem=eco, state="stopped")
    assert check["changed"] is True and check["actions"] == {"web": "stop"}
    assert check["diff"]["after"] == {"web": {"status": "stopped", "instances": 1}}
    assert serves(port, "1.0.0")

    real = task.ok(ecosystem=eco, state="stopped")
    assert real["changed"] is True and real["pids_after"] == {"web": []}
    assert [a["status"] for a in real["apps"]] == ["stopped"]
    assert refused(port)

    again = task.ok(name="web", state="stopped")
    assert again["changed"] is False and again["actions"] == {"web": "none"}
    assert task.ok(check_mode=True, ecosystem=eco, state="stopped")["changed"] is False
    assert pm2_home.apps() == {"web": [(0, "stopped", 0)]}

    # and started again: a stopped app is restarted, not started a second time
    back = task.ok(ecosystem=eco)
    assert back["actions"] == {"web": "restart"} and back["instances"] == {"web": 1}
    assert serves(port, "1.0.0")


def test_absent_four_ways(task, pm2_home, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    task.ok(name="api", script="dist/server.js", cwd=current, env={"PORT": str(port)})
    serves(port, "1.0.0")

    check = task.ok(check_mode=True, diff=True, name="api", state="absent")
    assert check["changed"] is True and check["actions"] == {"api": "delete"}
    assert check["diff"] == {"before": {"api": {"status": "online", "instances": 1}},
                             "after": {"api": {"status": "absent", "instances": 0}}}
    assert serves(port, "1.0.0")

    real = task.ok(name="api", state="absent")
    assert real["changed"] is True and real["apps"] == [] and real["instances"] == {"api": 0}
    assert refused(port) and "api" not in pm2_home.apps()

    assert task.ok(name="api", state="absent")["changed"] is False
    assert task.ok(check_mode=True, name="api", state="absent")["changed"] is False


def test_reloaded_onto_a_new_build(task, pm2_home, releases, tmp_path):
    """cwd on a `current` link: switch it, reload, and the new version is served - with no failed request."""
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    eco = write_ecosystem(str(tmp_path / "ecosystem.config.js"), [cluster_app("web", current, port)])
    first = task.ok(ecosystem=eco)
    serves(port, "1.0.0")
    releases.switch(current, "2.0.0")

    check = task.ok(check_mode=True, ecosystem=eco, name="web", state="reloaded")
    assert check["changed"] is True and check["actions"] == {"web": "reload"}
    assert check["pids_after"] == first["pids_after"] and serves(port, "1.0.0")

    client = Requester(port)
    client.start()
    real = task.ok(ecosystem=eco, name="web", state="reloaded")
    client.stop()
    assert real["changed"] is True and not real.get("warnings")
    assert real["pids_before"] == first["pids_after"]
    assert not set(live_pids(real, "web")) & set(real["pids_before"]["web"]) and len(real["pids_after"]["web"]) == 2
    assert [a["version"] for a in real["apps"]] == ["2.0.0", "2.0.0"]
    assert serves(port, "2.0.0")
    assert client.failures == [] and len(client.versions) >= 20
    assert client.versions[0] == "1.0.0" and client.versions[-1] == "2.0.0"

    again = task.ok(ecosystem=eco, name="web", state="reloaded")
    assert again["changed"] is True and not set(again["pids_after"]["web"]) & set(real["pids_after"]["web"])
    assert again["restarts"]["web"] > real["restarts"]["web"]

    check_again = task.ok(check_mode=True, ecosystem=eco, name="web", state="reloaded")
    assert check_again["changed"] is True and check_again["pids_after"] == again["pids_after"]


def test_restarted_four_ways(task, pm2_home, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    args = dict(name="api", script="dist/server.js", cwd=current, env={"PORT": str(port)}, state="restarted")

    check = task.ok(check_mode=True, **args)
    assert check["changed"] is True and check["actions"] == {"api": "start"}
    assert daemon_files(pm2_home.path) == []

    real = task.ok(**args)
    assert real["changed"] is True and real["actions"] == {"api": "start"} and serves(port, "1.0.0")
    assert real["exec_mode"] == {"api": "fork"} and real["apps"][0]["script"] == os.path.join(current, "dist/server.js")

    again = task.ok(**args)
    assert again["changed"] is True and again["actions"] == {"api": "restart"}
    assert again["pids_before"] == real["pids_after"] and not set(live_pids(again, "api")) & set(real["pids_after"]["api"])
    assert "%s restart api --update-env" % PM2 in again["executed_commands"]

    check_again = task.ok(check_mode=True, **args)
    assert check_again["changed"] is True and check_again["pids_after"] == again["pids_after"]
    assert serves(port, "1.0.0")


def test_fork_mode_reload_warns_that_it_is_a_restart(task, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    task.ok(name="cand", script="dist/server.js", cwd=current, exec_mode="fork", wait_ready=True,
            listen_timeout=5000, env={"PORT": str(port)})
    releases.switch(current, "2.0.0")
    result = task.ok(name="cand", state="reloaded")
    assert result["changed"] is True and result["pids_after"]["cand"] != result["pids_before"]["cand"]
    warnings = [w if isinstance(w, str) else json.dumps(w) for w in result.get("warnings", [])]
    assert any("cand runs in fork mode, where pm2 reload is a restart" in w and "cluster mode with wait_ready" in w
               for w in warnings), warnings
    assert serves(port, "2.0.0")


@pytest.mark.parametrize("filename", ["ecosystem.config.js", "ecosystem.json", "ecosystem.yaml", "apps.cjs"])
def test_ecosystem_formats(task, releases, tmp_path, filename):
    """Relative cwd and script, resolved against the ecosystem's directory; two apps, both started."""
    ports = free_port(), free_port()
    releases.switch(str(tmp_path / "current"), "1.0.0")
    eco = write_ecosystem(str(tmp_path / filename), [
        {"name": "front", "script": "dist/server.js", "cwd": "current", "env": {"PORT": ports[0]}},
        {"name": "back", "script": "current/dist/server.js", "env": {"PORT": ports[1]}}])
    result = task.ok(ecosystem=eco)
    assert result["actions"] == {"front": "start", "back": "start"} and result["instances"] == {"front": 1, "back": 1}
    assert serves(ports[0], "1.0.0") and serves(ports[1], "1.0.0")
    started = [c for c in result["executed_commands"] if " start " in c]
    if filename == "apps.cjs":  # pm2 would run apps.cjs as a script: a generated *.config.js loads it
        assert len(started) == 1 and "/pm2-app.config.js --only front,back" in started[0]
    else:
        assert started == ["%s start %s --only front,back" % (PM2, shlex.quote(eco))]
    assert task.ok(ecosystem=eco)["changed"] is False
    assert task.ok(ecosystem=eco, name="back", state="absent")["actions"] == {"back": "delete"}
    assert refused(ports[1]) and serves(ports[0], "1.0.0")


def test_a_secret_in_env_reaches_the_app_and_nothing_else(task, pm2_home, releases, tmp_path):
    port = free_port()
    secret, rotated = "sekrit-greeting-4f1c9e", "rotated-greeting-77ab02"
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    eco = write_ecosystem(str(tmp_path / "ecosystem.config.js"), [cluster_app("web", current, port, instances=1)])

    started = task.ok(ecosystem=eco, env={"GREETING": secret})
    assert serves(port, "1.0.0")["greeting"] == secret
    # pm2 keeps it in the app's environment, so the result's whitelist is what keeps it out
    assert secret in json.dumps(pm2_home.jlist())
    for result in (started, task.ok(ecosystem=eco, env={"GREETING": secret})):
        text = without_invocation(result)
        assert secret not in result.stdout and secret not in result.stderr
        assert "GREETING" not in text and "********" not in text and "NO_LOG" not in text
        assert all(secret not in command for command in result["executed_commands"])

    # reloading through the ecosystem, pm2 alone would drop the command's environment: the new value arrives
    reloaded = task.ok(ecosystem=eco, env={"GREETING": rotated}, state="reloaded")
    assert serves(port, "1.0.0")["greeting"] == rotated
    assert rotated not in without_invocation(reloaded).replace("********", "")
    assert rotated not in reloaded.stdout

    # update_env=false: reloaded by name, pm2 keeps what it recorded
    kept = task.ok(ecosystem=eco, env={"GREETING": "ignored-value-1234"}, state="reloaded", update_env=False)
    assert "%s reload web" % PM2 in kept["executed_commands"]
    assert serves(port, "1.0.0")["greeting"] == rotated


def test_save_after_a_change_only(task, pm2_home, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    dump = os.path.join(pm2_home.path, "dump.pm2")
    args = dict(name="api", script="dist/server.js", cwd=current, env={"PORT": str(port)}, save=True)
    task.ok(check_mode=True, **args)
    assert not os.path.exists(dump)

    task.ok(**args)
    assert [proc["name"] for proc in json.load(open(dump))] == ["api"]
    assert stat.S_IMODE(os.stat(dump).st_mode) == 0o600
    saved_at = os.stat(dump).st_mtime_ns

    unchanged = task.ok(**args)
    assert unchanged["changed"] is False and os.stat(dump).st_mtime_ns == saved_at
    assert not any(" save" in c for c in unchanged["executed_commands"])

    task.ok(name="api", state="absent", save=True)
    assert json.load(open(dump)) == []


def test_instance_count_follows_the_ecosystem(task, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    path = str(tmp_path / "ecosystem.config.js")
    write_ecosystem(path, [cluster_app("web", current, port, instances=1)])
    assert task.ok(ecosystem=path)["instances"] == {"web": 1}

    write_ecosystem(path, [cluster_app("web", current, port, instances=3)])
    scaled = task.ok(ecosystem=path)
    assert scaled["changed"] is True and scaled["actions"] == {"web": "scale"} and scaled["instances"] == {"web": 3}
    assert len(set(live_pids(scaled, "web"))) == 3

    write_ecosystem(path, [cluster_app("web", current, port, instances=2)])
    reloaded = task.ok(ecosystem=path, state="reloaded")
    assert reloaded["instances"] == {"web": 2} and "%s scale web 2" % PM2 in reloaded["executed_commands"]
    assert not set(live_pids(reloaded, "web")) & set(scaled["pids_after"]["web"])


def test_apps_get_the_callers_locale_and_umask(task, pm2_home, releases, tmp_path, monkeypatch):
    """pm2 passes its daemon's environment and umask on to cluster workers, and records the command's environment
    into the app: the module must not hand them its LANG=C or its private umask."""
    port = free_port()
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LANGUAGE", raising=False)
    caller_umask = os.umask(0o022)
    os.umask(caller_umask)
    assert caller_umask != 0o077
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    eco = write_ecosystem(str(tmp_path / "ecosystem.config.js"), [cluster_app("web", current, port, instances=1)])
    result = task.ok(ecosystem=eco)
    assert daemon_files(pm2_home.path), "the module should have spawned the daemon"
    pid = result["pids_after"]["web"][0]
    env = proc_environ(pid)
    assert env.get("LANG") == "C.UTF-8" and "LC_ALL" not in env and "LANGUAGE" not in env
    assert proc_umask(pid) == caller_umask


def test_pm2_found_on_path(task, releases, tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("PATH", os.path.dirname(PM2) + os.pathsep + os.environ["PATH"])
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    result = task.ok(pm2_binary=None, name="api", script="dist/server.js", cwd=current, env={"PORT": str(port)})
    assert result["executed_commands"][0] == "%s ping" % PM2
    assert serves(port, "1.0.0")
