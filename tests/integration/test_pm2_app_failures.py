"""pm2_app failing for real, with one clear message and nothing changed that need not be: crashing releases (fork and
cluster), a port already taken, pm2 missing, invalid ecosystems, a home without a daemon."""

import os
import re

import pytest

from helpers.node_apps import PM2
from helpers.pm2_checks import daemon_files, daemons_of, serves, write_ecosystem
from helpers.ports import free_port, listening


def no_daemon(home):
    return daemon_files(home.path) == [] and daemons_of(home.path) == []


def test_crashing_candidate_in_fork_mode(task, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "3.0.0", "crash")
    result = task.fails(name="candidate", script="dist/server.js", cwd=current, exec_mode="fork", wait_ready=True,
                        listen_timeout=3000, env={"PORT": str(port)})
    assert result["changed"] is True
    assert result["msg"].startswith("pm2_app: app candidate ")
    assert "Error: PAYMENTS_API_KEY is not set: refusing to start" in result["msg"]
    assert "Last lines of its error log %s" % result["apps"][0]["err_log"] in result["msg"]
    assert result["apps"][0]["name"] == "candidate"


def test_crashing_release_reloaded_in_cluster_mode(task, releases, tmp_path):
    """pm2 writes no error log for this one: the message has it from pm2's bus."""
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    eco = write_ecosystem(str(tmp_path / "ecosystem.config.js"), [{
        "name": "web", "script": "dist/server.js", "cwd": current, "exec_mode": "cluster", "instances": 2,
        "wait_ready": True, "listen_timeout": 2000, "kill_timeout": 2000, "env": {"PORT": port}}])
    task.ok(ecosystem=eco)
    serves(port, "1.0.0")
    releases.switch(current, "3.0.0", "crash")

    result = task.fails(ecosystem=eco, state="reloaded")
    assert result["changed"] is True
    # caught while it crash-loops, or once pm2 gave up on it (errored), depending on how fast the machine is
    assert re.match(r"pm2_app: app web (failed: instance 0 errored after \d+ restarts|is crash-looping: it restarted "
                    r"\d+ times while the module waited for it)", result["msg"]), result["msg"]
    assert "(in cluster mode pm2 does not write an exception thrown at start to the error log):\n" \
           "Error: PAYMENTS_API_KEY is not set: refusing to start" in result["msg"]
    assert len(result["apps"]) == 2 and result["apps"][0]["version"] == "3.0.0"


@pytest.mark.parametrize("how", ["ecosystem", "public_env", "env"])
def test_port_already_in_use_is_named(task, releases, tmp_path, how):
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    with listening() as holder:  # the port stays taken while the app starts
        port = holder.getsockname()[1]
        if how == "ecosystem":
            eco = write_ecosystem(str(tmp_path / "ecosystem.yaml"), [
                {"name": "api", "script": "dist/server.js", "cwd": current, "env": {"PORT": port}}])
            args = {"ecosystem": eco}
        else:
            args = {"name": "api", "script": "dist/server.js", "cwd": current, how: {"PORT": str(port)}}
        result = task.fails(wait_online_timeout=20, **args)
    # a port given in env (no_log) is masked by Ansible wherever it appears; public_env keeps it readable
    shown = "********" if how == "env" else str(port)
    assert result["msg"].startswith("pm2_app: port %s is already in use (EADDRINUSE): app api " % shown)
    assert "address already in use 127.0.0.1:%s" % shown in result["msg"]
    assert result["changed"] is True


@pytest.mark.parametrize("state", ["started", "stopped", "absent"])
def test_pm2_binary_pointing_nowhere(task, pm2_home, tmp_path, state):
    missing = str(tmp_path / "nowhere" / "pm2")
    result = task.fails(name="api", state=state, pm2_binary=missing)
    assert result["msg"] == ("pm2_binary %s does not exist or is not executable: install it (npm install -g pm2) or set "
                             "pm2_binary to its path." % missing)
    assert result["changed"] is False and result["executed_commands"] == [] and no_daemon(pm2_home)


def test_pm2_not_on_path(task, pm2_home, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink("/usr/bin/node", str(bin_dir / "node"))
    monkeypatch.setenv("PATH", str(bin_dir))
    result = task.fails(name="api", script="server.js", pm2_binary=None)
    assert result["msg"] == ("pm2 was not found in PATH (%s): install it (npm install -g pm2) or set pm2_binary to its "
                             "path." % bin_dir)
    assert no_daemon(pm2_home)


def test_syntax_error_in_the_ecosystem_changes_nothing(task, pm2_home, tmp_path):
    eco = tmp_path / "ecosystem.config.js"
    eco.write_text("module.exports = {\n  apps: [\n    {name: 'web', script: 'server.js'\n  ]\n};\n")
    for check_mode in (True, False):
        result = task(check_mode=check_mode, ecosystem=str(eco), state="reloaded")
        assert result["failed"] is True and result["changed"] is False
        assert result["msg"].startswith("ecosystem %s is invalid: SyntaxError: " % eco)
        assert " at %s:4\n" % eco in result["msg"]
    assert no_daemon(pm2_home), "an invalid ecosystem spawned a pm2 daemon"


def test_app_missing_from_the_ecosystem_changes_nothing(task, pm2_home, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    eco = write_ecosystem(str(tmp_path / "ecosystem.json"), [
        {"name": "web", "script": "dist/server.js", "cwd": current, "env": {"PORT": port}}])
    task.ok(ecosystem=eco)
    before = pm2_home.apps()
    for state in ("reloaded", "absent"):
        result = task(ecosystem=eco, name="wbe", state=state)
        assert result["failed"] is True and result["changed"] is False
        assert result["msg"] == "ecosystem %s is invalid: it has no app named wbe (it declares: web)." % eco
        assert not any(" reload " in c or " delete " in c for c in result["executed_commands"])
    assert pm2_home.apps() == before and serves(port, "1.0.0")


def test_unknown_app_by_name_is_not_started(task, pm2_home, releases, tmp_path):
    port = free_port()
    current = releases.switch(str(tmp_path / "current"), "1.0.0")
    task.ok(name="web", script="dist/server.js", cwd=current, env={"PORT": str(port)})
    result = task.fails(name="api", state="reloaded")
    assert result["msg"] == ("app api is not known to pm2, so it cannot be reloaded: give ecosystem or script to "
                             "start it.")
    assert result["changed"] is False and set(pm2_home.apps()) == {"web"}


@pytest.mark.parametrize("state", ["stopped", "absent"])
def test_stopped_and_absent_never_spawn_a_daemon(task, pm2_home, tmp_path, state):
    eco = write_ecosystem(str(tmp_path / "ecosystem.config.js"), [{"name": "web", "script": "server.js"}])
    for check_mode in (True, False):
        for args in ({"name": "web"}, {"ecosystem": eco}):
            result = task.ok(check_mode=check_mode, state=state, **args)
            assert result["changed"] is False and result["daemon_was_running"] is False
            assert result["actions"] == {"web": "none"} and result["apps"] == []
            assert not any(PM2 in c for c in result["executed_commands"])
    assert no_daemon(pm2_home)


def test_check_mode_never_spawns_a_daemon(task, pm2_home, tmp_path):
    for state in ("started", "reloaded", "restarted"):
        result = task.ok(check_mode=True, name="web", script="server.js", state=state)
        assert result["changed"] is True and result["actions"] == {"web": "start"}
        assert result["executed_commands"] == []
    assert no_daemon(pm2_home)
