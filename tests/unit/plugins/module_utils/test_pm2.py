"""pm2_app logic in-process: jlist parsing, the result whitelist, EADDRINUSE, ecosystem validation (with the real
node for JavaScript files), state planning, the wait for online-and-stable, pm2's event bus frames."""

import json
import os
import shutil
import socket
import struct
import subprocess
import time

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _pm2 as pm2
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._health import HealthFailure
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandRunner

BANNER = """
                        -------------

__/\\\\\\\\\\\\\\\\\\\\\\\\\\____/\\\\\\\\____________/\\\\\\\\____/\\\\\\\\\\\\\\\\\\_____
                          Runtime Edition
        PM2 is a Production Process Manager for Node.js applications
                     with a built-in Load Balancer.
                Load Balance 4 instances of api.js:
                $ pm2 start api.js -i 4
                        -------------

\x1b[32m[PM2] \x1b[39mSpawning PM2 daemon with pm2_home=/tmp/x/pm2
\x1b[32m[PM2] \x1b[39mPM2 Successfully daemonized
"""

SECRET = "s3cr3t-payments-key"


def proc(name="web", pm_id=0, pid=4242, status="online", restarts=0, mode="cluster_mode", **env):
    pm2_env = {
        "status": status, "restart_time": restarts, "unstable_restarts": 0, "exec_mode": mode,
        "pm_cwd": "/srv/app/current", "pm_exec_path": "/srv/app/current/dist/server.js", "version": "1.0.0",
        "node_version": "20.20.2", "pm_uptime": 1795440000000, "namespace": "default", "wait_ready": True,
        "listen_timeout": 8000, "kill_timeout": 5000, "exec_interpreter": "node",
        "pm_out_log_path": "/tmp/pm2/logs/%s-out-%d.log" % (name, pm_id),
        "pm_err_log_path": "/tmp/pm2/logs/%s-error-%d.log" % (name, pm_id),
        # what pm2 really carries besides: the app's whole environment
        "PAYMENTS_API_KEY": SECRET, "env": {"PAYMENTS_API_KEY": SECRET, "PORT": "3000"},
        "args": ["--token", SECRET], "axm_options": {"secret": SECRET}, "node_args": [],
    }
    pm2_env.update(env)
    return {"name": name, "pm_id": pm_id, "pid": pid, "pm2_env": pm2_env, "monit": {"memory": 1, "cpu": 0}}


# ---- jlist and the result whitelist -------------------------------------------------------------------

def test_jlist_is_parsed_after_the_banner_and_the_spawn_messages():
    listing = [proc(), proc(pm_id=1, pid=4243)]
    text = BANNER + json.dumps(listing) + "\n"
    assert pm2.parse_jlist(text) == listing


@pytest.mark.parametrize("text", ["[]", "\x1b[33m[PM2][WARN] something\n[]\n", "[PM2] x\n[] trailing"])
def test_empty_lists_with_noise(text):
    assert pm2.parse_jlist(text) == []


@pytest.mark.parametrize("text", ["", "[PM2] Spawning PM2 daemon\n", "{\"msg\": \"pong\"}", "[1, 2]"])
def test_output_without_a_process_list_is_an_error(text):
    with pytest.raises(SafeshipError) as err:
        pm2.parse_jlist(text)
    assert err.value.msg.startswith("pm2 jlist printed no process list")


def test_a_secret_in_pm2_env_never_reaches_the_result():
    item = pm2.describe_process(proc(), now=1795440010.0)
    dumped = json.dumps(item)
    assert SECRET not in dumped
    assert "PAYMENTS_API_KEY" not in dumped and "env" not in item and "args" not in item
    assert set(item) == set(["name", "pm_id", "pid", "exec_mode", "started_at", "uptime"]
                            + [key for key, dummy in pm2._RESULT_KEYS])
    assert item["status"] == "online" and item["exec_mode"] == "cluster" and item["restarts"] == 0
    assert item["script"] == "/srv/app/current/dist/server.js" and item["cwd"] == "/srv/app/current"
    assert item["started_at"] == "2026-11-23T13:20:00Z" and item["uptime"] == 10.0
    assert item["err_log"] == "/tmp/pm2/logs/web-error-0.log"


def test_whitelisted_keys_holding_objects_are_dropped_not_returned():
    item = pm2.describe_process(proc(version={"secret": SECRET}, pm_cwd=[SECRET], status="stopped", pid=0))
    assert SECRET not in json.dumps(item)
    assert item["version"] is None and item["cwd"] is None and item["uptime"] == 0 and item["pid"] == 0


def test_summary_per_app():
    groups = pm2.group_by_name([proc(pm_id=1, pid=11, restarts=2), proc(pm_id=0, pid=10, restarts=1),
                                proc("worker", 2, 0, "stopped", 5, "fork_mode")])
    pids, instances, restarts, modes = pm2.summarize(groups, ["web", "worker", "gone"])
    assert pids == {"web": [10, 11], "worker": [], "gone": []}
    assert instances == {"web": 2, "worker": 1, "gone": 0}
    assert restarts == {"web": 3, "worker": 5, "gone": 0}
    assert modes == {"web": "cluster", "worker": "fork"}
    assert pm2.app_status(groups["web"]) == "online"
    assert pm2.app_status([proc(), proc(status="errored")]) == "errored,online"
    assert pm2.app_status([]) == "absent"


# ---- EADDRINUSE and log excerpts ----------------------------------------------------------------------

FORK_EADDRINUSE = """Error: listen EADDRINUSE: address already in use 127.0.0.1:3921
    at Server.setupListenHandle [as _listen2] (node:net:1908:16)
    at doListen (node:net:2139:7) {
  code: 'EADDRINUSE',
  errno: -98,
  syscall: 'listen',
  address: '127.0.0.1',
  port: 3921
}"""


@pytest.mark.parametrize("text, expected", [
    (FORK_EADDRINUSE, (True, 3921)),
    ("Error: bind EADDRINUSE 127.0.0.1:4100\n    at listenOnPrimaryHandle (node:net:1989:18)", (True, 4100)),
    ("Error: listen EADDRINUSE: address already in use :::3000", (True, 3000)),
    ("Error: listen EADDRINUSE: address already in use ::1:8080", (True, 8080)),
    ("Error: listen EADDRINUSE 0.0.0.0:80", (True, 80)),
    ("\x1b[31mError: listen EADDRINUSE: address already in use\x1b[39m\n{\n  code: 'EADDRINUSE',\n  port: 5000\n}",
     (True, 5000)),
    ("Error: listen EADDRINUSE: address already in use /run/app.sock", (True, None)),
    ("Error: PAYMENTS_API_KEY is not set\n    at server.js:9:9", (False, None)),
    ("", (False, None)),
])
def test_port_in_use_is_found(text, expected):
    assert pm2.find_port_in_use(["unrelated\n", text]) == expected


def test_log_excerpt_starts_at_the_last_error_and_keeps_its_message_when_the_stack_is_long():
    stack = ["    at frame%d (file.js:%d:1)" % (n, n) for n in range(30)]
    text = "\n".join(["starting 1", "Error: first crash"] + stack[:3] + ["Error: second crash"] + stack)
    excerpt = pm2.log_excerpt(text).splitlines()
    assert excerpt[0] == "Error: second crash" and excerpt[1] == "..."
    assert len(excerpt) == pm2.LOG_LINES and excerpt[-1] == stack[-1]
    short = pm2.log_excerpt("old line\nTypeError: x is not a function\n    at y (z.js:1:1)\n").splitlines()
    assert short == ["TypeError: x is not a function", "    at y (z.js:1:1)"]
    plain = pm2.log_excerpt("\n".join("line %d" % n for n in range(50))).splitlines()
    assert plain[0] == "line 30" and len(plain) == 20


def test_failure_message_names_the_port_first_and_quotes_the_error_log(tmp_path):
    err_log = tmp_path / "web-error-0.log"
    err_log.write_text("old noise\n" + FORK_EADDRINUSE + "\n")
    procs = [proc(status="errored", restarts=15, pm_err_log_path=str(err_log),
                  pm_out_log_path=str(tmp_path / "missing.log"))]
    message = pm2.describe_failure("web", procs, "app web failed: instance 0 errored after 15 restarts.")
    assert message.startswith("port 3921 is already in use (EADDRINUSE): app web failed")
    assert "Last lines of its error log %s:\nError: listen EADDRINUSE" % err_log in message
    assert "old noise" not in message


def test_failure_message_adds_what_only_the_bus_saw(tmp_path):
    err_log = tmp_path / "web-error-0.log"
    err_log.write_text("")

    class Tap(object):
        def text(self, name, kind="err"):
            return "Error: PAYMENTS_API_KEY is not set: refusing to start\n    at server.js:9:9" if kind == "err" else ""

    message = pm2.describe_failure("web", [proc(status="errored", pm_err_log_path=str(err_log))], "failed.", Tap())
    assert "Its error log %s is empty." % err_log in message
    assert "during this task (in cluster mode pm2 does not write" in message
    assert message.endswith("Error: PAYMENTS_API_KEY is not set: refusing to start\n    at server.js:9:9")


# ---- names, env, instances -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["web", "shop-api", "orchestrator:backend", "api_v2.1", "_x", "a@b+c"])
def test_app_names(name):
    assert pm2.check_app_name(name) == name


@pytest.mark.parametrize("name", ["all", "3", "007", "-x", "--force", "a,b", "a b", "", "x" * 129, "a/b", None])
def test_names_pm2_would_misread_are_refused(name):
    with pytest.raises(SafeshipError) as err:
        pm2.check_app_name(name)
    assert "is not an app name this module can manage" in err.value.msg


def test_env_values_become_strings_and_bad_keys_are_refused():
    assert pm2.env_strings({"PORT": 3000, "DEBUG": True, "X": "y", "EMPTY": ""}) == {
        "PORT": "3000", "DEBUG": "true", "X": "y", "EMPTY": ""}
    for bad in ({"1X": "a"}, {"A-B": "a"}, {"A": None}, {"A": {"b": 1}}):
        with pytest.raises(SafeshipError) as err:
            pm2.env_strings(bad)
        assert err.value.msg.startswith("env ")
        with pytest.raises(SafeshipError) as err:
            pm2.env_strings(bad, "public_env")
        assert err.value.msg.startswith("public_env ")


@pytest.mark.parametrize("value, expected", [(None, 1), (1, 1), (3, 3), ("4", 4), ("max", 8), (0, 8), (-1, 7),
                                             (-20, 1), ("-2", 6), (2.0, 2)])
def test_desired_instances(value, expected):
    assert pm2.desired_instances(value, cpus=8) == expected


@pytest.mark.parametrize("value", ["lots", True, 2.5, [2]])
def test_bad_instances(value):
    with pytest.raises((TypeError, ValueError)):
        pm2.desired_instances(value, cpus=8)


# ---- planning -------------------------------------------------------------------------------------------

ONLINE2 = {"web": [proc(), proc(pm_id=1, pid=4243)]}
STOPPED = {"web": [proc(status="stopped", pid=0)]}
ERRORED = {"web": [proc(status="errored", pid=0), proc(pm_id=1)]}


@pytest.mark.parametrize("state, groups, desired, expected", [
    ("started", {}, 2, "start"),
    ("started", ONLINE2, 2, None),
    ("started", ONLINE2, None, None),
    ("started", ONLINE2, 3, "scale"),
    ("started", STOPPED, 1, "restart"),
    ("started", ERRORED, 2, "restart"),
    ("reloaded", {}, 2, "start"),
    ("reloaded", ONLINE2, 2, "reload"),
    ("reloaded", STOPPED, 1, "reload"),
    ("restarted", {}, 1, "start"),
    ("restarted", ONLINE2, 2, "restart"),
    ("stopped", ONLINE2, 2, "stop"),
    ("stopped", ERRORED, 2, "stop"),
    ("stopped", STOPPED, 1, None),
    ("stopped", {"web": [proc(status="errored", pid=0)]}, 1, None),
    ("stopped", {}, 1, None),
    ("absent", ONLINE2, 2, "delete"),
    ("absent", STOPPED, 1, "delete"),
    ("absent", {}, 1, None),
])
def test_plan(state, groups, desired, expected):
    assert pm2.plan(state, ["web"], groups, {"web": desired}, can_start=True) == {"web": expected}


@pytest.mark.parametrize("state", ["started", "reloaded", "restarted"])
def test_an_unknown_app_without_ecosystem_or_script_cannot_be_started(state):
    with pytest.raises(SafeshipError) as err:
        pm2.plan(state, ["web"], {}, {"web": None}, can_start=False)
    assert err.value.msg == ("app web is not known to pm2, so it cannot be %s: give ecosystem or script to start it."
                             % state)


def test_plan_for_every_app_of_a_file():
    groups = {"api": [proc("api")], "worker": [proc("worker", status="stopped", pid=0)]}
    assert pm2.plan("started", ["api", "worker", "cron"], groups, {"api": 1, "worker": 1, "cron": 1}, True) == {
        "api": None, "worker": "restart", "cron": "start"}


# ---- waiting for online and stable -------------------------------------------------------------------

class Clock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def polls(*listings):
    """poll() returning each listing in turn, the last one forever."""
    listings = list(listings)

    def poll():
        return listings.pop(0) if len(listings) > 1 else listings[0]
    return poll


def test_wait_returns_once_online_with_new_pids_and_stable():
    clock = Clock()
    old = [proc(pid=10), proc(pm_id=1, pid=11)]
    new = [proc(pid=20, restarts=1), proc(pm_id=1, pid=21, restarts=1)]
    poll = polls(old, [proc(pid=20, restarts=1), proc(pm_id=1, pid=11, status="online")], new)
    result = pm2.wait_until_stable(poll, {"web": {"count": 2, "old_pids": {10, 11}}}, 60, 2.0, clock, clock.sleep)
    assert result == new
    assert 2.0 <= clock.now <= 3.0


def test_wait_needs_the_instance_count():
    clock = Clock()
    poll = polls([proc()], [proc()], [proc(), proc(pm_id=1, pid=4300)])
    pm2.wait_until_stable(poll, {"web": {"count": 2, "old_pids": set()}}, 60, 1.0, clock, clock.sleep)
    assert clock.now >= 1.5


def test_errored_instance_fails_at_once():
    clock = Clock()
    poll = polls([proc(status="launching")], [proc(status="errored", restarts=15, pid=0)])
    with pytest.raises(pm2._WaitFailure) as err:
        pm2.wait_until_stable(poll, {"web": {"count": 1, "old_pids": set()}}, 60, 2.0, clock, clock.sleep)
    assert err.value.msg == "app web failed: instance 0 errored after 15 restarts."
    assert err.value.app == "web" and clock.now < 1


def test_climbing_restarts_are_a_crash_loop():
    clock = Clock()
    poll = polls([proc(restarts=3)], [proc(restarts=3)], [proc(restarts=5, pid=99)])
    with pytest.raises(pm2._WaitFailure) as err:
        pm2.wait_until_stable(poll, {"web": {"count": 1, "old_pids": set()}}, 60, 2.0, clock, clock.sleep)
    assert err.value.msg == ("app web is crash-looping: it restarted 2 times while the module waited for it "
                             "(instance 0 online after 5 restarts).")


def test_not_online_in_time():
    clock = Clock()
    poll = polls([proc(status="launching")])
    with pytest.raises(pm2._WaitFailure) as err:
        pm2.wait_until_stable(poll, {"web": {"count": 2, "old_pids": set()}}, 5, 2.0, clock, clock.sleep)
    assert err.value.msg == ("app web is not online and stable after 5 s: instance 0 launching after 0 restarts; "
                             "2 instances wanted.")
    assert 5 <= clock.now < 6


def test_old_pids_keep_it_waiting():
    clock = Clock()
    with pytest.raises(pm2._WaitFailure) as err:
        pm2.wait_until_stable(polls([proc(pid=10)]), {"web": {"count": 1, "old_pids": {10}}}, 3, 1.0, clock,
                              clock.sleep)
    assert "is not online and stable after 3 s" in err.value.msg


def test_watching_pids_polls_pm2_once_and_waits_out_the_stable_window():
    clock = Clock()
    calls = []
    listing = [proc(pid=20), proc(pm_id=1, pid=21)]

    def poll():
        calls.append(clock.now)
        return listing
    watched = []

    def alive(pids):
        watched.append(set(pids))
        return True
    result = pm2.wait_until_stable(poll, {"web": {"count": 2, "old_pids": set()}}, 60, 2.0, clock, clock.sleep,
                                   pids_alive=alive)
    assert result == listing
    # pids alive all through the window: no restart happened, and no second jlist is needed to say so
    assert calls == [0.0] and clock.now >= 2.0
    assert watched and all(pids == {20, 21} for pids in watched)


def test_a_watched_pid_that_dies_is_a_crash_found_by_the_next_poll():
    clock = Clock()
    poll = polls([proc(pid=20, restarts=0)], [proc(pid=30, restarts=1)])
    with pytest.raises(pm2._WaitFailure) as err:
        pm2.wait_until_stable(poll, {"web": {"count": 1, "old_pids": set()}}, 60, 2.0, clock, clock.sleep,
                              pids_alive=lambda pids: clock.now < 0.5)
    assert "crash-looping: it restarted 1 times" in err.value.msg
    assert clock.now < 2.0


class Probe(object):
    """The health checks' probe(): each answer in turn (True, False, or an exception), the last one forever."""

    def __init__(self, clock, *answers):
        self.clock = clock
        self.answers = list(answers)
        self.times = []

    def __call__(self):
        self.times.append(self.clock.now)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def pending(self):
        return "GET http://127.0.0.1:3000/health: connection refused by 127.0.0.1:3000 (nothing listening?)"


def test_health_probed_through_the_window_ends_it_only_once_the_window_has_passed():
    clock = Clock()
    probe = Probe(clock, True)
    listing = [proc(pid=20)]
    result = pm2.wait_until_stable(polls(listing), {"web": {"count": 1, "old_pids": set()}}, 60, 2.0, clock,
                                   clock.sleep, pids_alive=lambda pids: True, probe=probe, pending=probe.pending)
    assert result == listing and 2.0 <= clock.now < 2.5
    # probed again and again while the window runs, not once
    assert len(probe.times) >= 8 and probe.times[0] == 0.0


def test_a_check_that_has_not_passed_keeps_it_waiting_past_the_window():
    clock = Clock()
    probe = Probe(clock, *([False] * 20 + [True]))
    pm2.wait_until_stable(polls([proc(pid=20)]), {"web": {"count": 1, "old_pids": set()}}, 60, 2.0, clock,
                          clock.sleep, pids_alive=lambda pids: True, probe=probe, pending=probe.pending)
    assert clock.now >= 20 * pm2.POLL_INTERVAL > 2.0 and len(probe.times) >= 21


def test_a_check_that_never_passes_fails_at_the_timeout_saying_what_it_got():
    clock = Clock()
    probe = Probe(clock, False)
    with pytest.raises(pm2._WaitFailure) as err:
        pm2.wait_until_stable(polls([proc(pid=20)]), {"web": {"count": 1, "old_pids": set()}}, 10, 2.0, clock,
                              clock.sleep, pids_alive=lambda pids: True, probe=probe, pending=probe.pending)
    assert err.value.msg == ("app web is online, but its health checks did not pass within 10 s: GET "
                             "http://127.0.0.1:3000/health: connection refused by 127.0.0.1:3000 (nothing "
                             "listening?).")
    assert 10 <= clock.now < 11


def test_a_failing_probe_ends_the_wait_at_once():
    clock = Clock()
    probe = Probe(clock, False, False, HealthFailure("GET http://127.0.0.1:3000/health answered with status 500"))
    with pytest.raises(HealthFailure):
        pm2.wait_until_stable(polls([proc(pid=20)]), {"web": {"count": 1, "old_pids": set()}}, 60, 20.0, clock,
                              clock.sleep, pids_alive=lambda pids: True, probe=probe, pending=probe.pending)
    assert clock.now < 1.0 and len(probe.times) == 3


def test_health_is_not_probed_before_every_instance_is_up():
    clock = Clock()
    probe = Probe(clock, True)
    poll = polls([proc(status="launching")], [proc(status="launching")], [proc(pid=20)])
    pm2.wait_until_stable(poll, {"web": {"count": 1, "old_pids": set()}}, 60, 1.0, clock, clock.sleep,
                          probe=probe, pending=probe.pending)
    assert probe.times[0] >= 2 * pm2.POLL_INTERVAL


# ---- ecosystem files ----------------------------------------------------------------------------------

class LocalModule(object):
    """Enough of AnsibleModule to run the ecosystem loading for real (node included), in-process."""

    def __init__(self, tmp_path, **params):
        self.params = pm2.default_params(**params)
        self.check_mode = False
        self.tmpdir = str(tmp_path / "moduletmp")
        os.makedirs(self.tmpdir, exist_ok=True)

    def run_command(self, args, data=None, environ_update=None, expand_user_and_vars=False, cwd=None):
        env = dict(os.environ, **(environ_update or {}))
        done = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        return done.returncode, done.stdout, done.stderr

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return shutil.which(name)


PM2_BINARY = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", ".build", "node", "node_modules", ".bin",
                          "pm2")

GOOD_JS = """// comment
const base = {script: 'dist/server.js', cwd: __dirname, wait_ready: true};
module.exports = {
  apps: [
    Object.assign({name: 'api', instances: 2, exec_mode: 'cluster', env_production: {NODE_ENV: 'production'}}, base),
    Object.assign({name: 'worker', env_production: {}}, base),
  ],
};
"""
GOOD_JSON = {"apps": [{"name": "api", "script": "dist/server.js", "instances": "max", "exec_mode": "cluster_mode",
                       "env_production": {}},
                      {"name": "worker", "script": "worker.js", "env_production": {}}]}
GOOD_YAML = """apps:
  - name: api
    script: dist/server.js
    instances: 2
    exec_mode: cluster
    env_production: {NODE_ENV: production}
  - name: worker
    script: worker.js
    env_production: {}
"""


def load(tmp_path, filename, text, **params):
    path = tmp_path / filename
    path.write_text(text)
    module = LocalModule(tmp_path, ecosystem=str(path), **params)
    app = pm2.Pm2App(module, CommandRunner(module))
    return str(path), app, lambda: app.load_ecosystem(os.path.abspath(PM2_BINARY))


@pytest.mark.parametrize("filename, text", [
    ("ecosystem.config.js", GOOD_JS), ("apps.js", GOOD_JS), ("ecosystem.config.cjs", GOOD_JS),
    ("ecosystem.json", json.dumps(GOOD_JSON)), ("ecosystem.yaml", GOOD_YAML), ("pm2.yml", GOOD_YAML),
])
def test_good_ecosystems(tmp_path, filename, text):
    path, app, run = load(tmp_path, filename, text, env_name="production")
    apps = run()
    assert [a["name"] for a in apps] == ["api", "worker"]
    assert apps[0]["exec_mode"] == "cluster" and apps[1]["exec_mode"] is None and apps[1]["instances"] == 1
    assert apps[0]["instances"] == (os.cpu_count() if filename.endswith(".json") else 2)
    path, app, run = load(tmp_path, filename, text, name="worker")
    assert [a["name"] for a in run()] == ["worker"]


def test_js_syntax_error_is_reported_with_file_and_line(tmp_path):
    path, app, run = load(tmp_path, "ecosystem.config.js",
                          "module.exports = {\n  apps: [\n    { name: 'x' script: 'a.js' }\n  ]\n};\n")
    with pytest.raises(SafeshipError) as err:
        run()
    assert err.value.msg.startswith("ecosystem %s is invalid: SyntaxError: Unexpected identifier 'script' at %s:3\n"
                                    % (path, path))
    assert "{ name: 'x' script: 'a.js' }" in err.value.msg


def test_js_runtime_error_is_reported_with_file_line_and_column(tmp_path):
    path, app, run = load(tmp_path, "ecosystem.config.js", "const x = 1;\nmodule.exports = {apps: missing};\n")
    with pytest.raises(SafeshipError) as err:
        run()
    assert err.value.msg == ("ecosystem %s is invalid: ReferenceError: missing is not defined at %s:2:25"
                             % (path, path))


def test_js_sees_the_env_option(tmp_path):
    path, app, run = load(tmp_path, "ecosystem.config.js",
                          "module.exports = {apps: [{name: process.env.APP_NAME, script: 'a.js'}]};\n",
                          env={"APP_NAME": "from-env"})
    app.env = pm2.env_strings(app.params["env"])
    assert [a["name"] for a in run()] == ["from-env"]


@pytest.mark.parametrize("filename, text, problem", [
    ("e.json", '{"apps": [{"name": "a", "script": "a.js"},]}',
     "{path}:1:43: not valid JSON: Expecting value"),
    ("e.yaml", "apps:\n  - name: a\n    script: [a.js\n", "{path}:4:1: not valid YAML: expected ',' or ']'"),
    ("e.yml", "apps:\n  - name: a\n  script: a.js\n", "{path}:3:3: not valid YAML: expected <block end>"),
    ("e.json", "[]", "it must declare 'apps', a list of apps (module.exports = {{apps: [...]}})."),
    ("e.json", '{"apps": []}', "'apps' must be a non-empty list of apps."),
    ("e.json", '{"apps": "web"}', "'apps' must be a non-empty list of apps."),
    ("e.json", '{"apps": [["web"]]}', "apps[0] is not a mapping."),
    ("e.json", '{"apps": [{"script": "a.js"}]}', "apps[0] has no 'name'."),
    ("e.yaml", "apps:\n  - name: web\n", "app web (apps[0]) has no 'script'."),
    ("e.json", '{"apps": [{"name": "a", "script": "a.js"}, {"name": "a", "script": "b.js"}]}',
     "it declares app a twice."),
    ("e.json", '{"apps": [{"name": "all", "script": "a.js"}]}', "name 'all' is not an app name"),
    ("e.json", '{"apps": [{"name": "a", "script": "a.js", "instances": "lots"}]}',
     "app a: instances 'lots' is not a number, 'max' or -N."),
    ("e.config.js", "module.exports = {apps: [{name: 'a', script: 'a.js'}]};", "it has no app named web (it declares: a)."),
    ("e.config.js", "module.exports = 42;", "it must declare 'apps'"),
    ("e.config.js", "throw new Error('config needs DB_URL');", "Error: config needs DB_URL at {path}:1:7"),
    ("e.toml", "apps = []", "its name must end in .config.js, .js, .cjs, .json, .yml or .yaml."),
])
def test_bad_ecosystems(tmp_path, filename, text, problem):
    name = "web" if "no app named" in problem else None
    path, app, run = load(tmp_path, filename, text, name=name)
    with pytest.raises(SafeshipError) as err:
        run()
    assert err.value.msg.startswith("ecosystem %s is invalid: " % path)
    assert problem.format(path=path) in err.value.msg


def test_env_name_needs_its_block(tmp_path):
    path, app, run = load(tmp_path, "e.json", json.dumps(GOOD_JSON), env_name="staging")
    with pytest.raises(SafeshipError) as err:
        run()
    assert err.value.msg == ("ecosystem %s is invalid: app api has no env_staging block, which env_name=staging "
                             "asks for." % path)


def test_missing_ecosystem(tmp_path):
    module = LocalModule(tmp_path, ecosystem=str(tmp_path / "nope.config.js"))
    app = pm2.Pm2App(module, CommandRunner(module))
    with pytest.raises(SafeshipError) as err:
        app.load_ecosystem(PM2_BINARY)
    assert err.value.msg == "ecosystem %s is invalid: the file does not exist." % (tmp_path / "nope.config.js")


@pytest.mark.parametrize("path, kind", [
    ("/srv/app/ecosystem.config.js", "js"), ("/srv/app/apps.js", None), ("/srv/app/e.cjs", None),
    ("/srv/app/e.config.cjs", "js"), ("/srv/app/e.json", "json"), ("/srv/app.json.d/e.config.js", "json"),
    ("/srv/app/e.yml", "yaml"),
])
def test_what_pm2_takes_a_file_for(path, kind):
    assert pm2.pm2_reads_as(path) == kind


def test_pm2_gets_the_users_file_when_it_can_read_it_as_it_is(tmp_path):
    path, app, run = load(tmp_path, "ecosystem.config.js", GOOD_JS)
    run()
    assert app.command_ecosystem() == path


def test_other_js_names_and_env_go_through_a_wrapper_holding_no_value(tmp_path):
    path, app, run = load(tmp_path, "apps.js", GOOD_JS, env={"PAYMENTS_API_KEY": SECRET, "PORT": 3999},
                          env_name="production")
    app.env = pm2.env_strings(app.params["env"])
    run()
    wrapper = app.command_ecosystem()
    assert wrapper.endswith(".config.js") and os.path.dirname(wrapper) == app.module.tmpdir
    assert oct(os.stat(wrapper).st_mode & 0o777) == "0o600"
    text = open(wrapper).read()
    assert SECRET not in text and "3999" not in text and '["PAYMENTS_API_KEY", "PORT"]' in text
    # what pm2 would load: the user's apps with the values from the environment merged in
    out = subprocess.run(["node", "-e", "console.log(JSON.stringify(require(process.argv[1])))", wrapper],
                         env=dict(os.environ, PAYMENTS_API_KEY=SECRET, PORT="3999"), check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    config = json.loads(out)
    assert [a["name"] for a in config["apps"]] == ["api", "worker"]
    assert config["apps"][0]["env"] == {"PAYMENTS_API_KEY": SECRET, "PORT": "3999"}
    assert config["apps"][0]["env_production"] == {"NODE_ENV": "production", "PAYMENTS_API_KEY": SECRET,
                                                   "PORT": "3999"}
    assert config["apps"][0]["cwd"] == str(tmp_path)


def test_yaml_wrapper_carries_the_parsed_file(tmp_path):
    path, app, run = load(tmp_path, "pm2.yaml", GOOD_YAML, env={"GREETING": "hi"})
    app.env = pm2.env_strings(app.params["env"])
    run()
    out = subprocess.run(["node", "-e", "console.log(JSON.stringify(require(process.argv[1])))",
                          app.command_ecosystem()], env=dict(os.environ, GREETING="hi"), check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    config = json.loads(out)
    assert config["apps"][0]["env"] == {"GREETING": "hi"} and config["apps"][1]["script"] == "worker.js"


# ---- the daemon, without calling pm2 -------------------------------------------------------------------

def test_daemon_running_needs_a_live_pm2_pid_and_the_socket(tmp_path):
    home = str(tmp_path)
    assert pm2.daemon_running(home) is False
    (tmp_path / "pm2.pid").write_text("%d" % os.getpid())
    assert pm2.daemon_running(home) is False  # no rpc.sock
    (tmp_path / "rpc.sock").write_text("")
    assert pm2.daemon_running(home) is False  # a live pid, but python's, not pm2's
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "pm2.pid").write_text("%d" % dead.pid)
    assert pm2.daemon_running(home) is False
    (tmp_path / "pm2.pid").write_text("garbage")
    assert pm2.daemon_running(home) is False


def test_daemon_running_recognises_a_pm2_process(tmp_path):
    fake = subprocess.Popen(["bash", "-c", "exec -a 'PM2 v7.0.4: God Daemon (/x)' sleep 30"])
    try:
        for dummy in range(500):  # until bash has exec'd
            with open("/proc/%d/cmdline" % fake.pid, "rb") as handle:
                if handle.read().startswith(b"PM2 "):
                    break
            time.sleep(0.01)
        (tmp_path / "pm2.pid").write_text("%d\n" % fake.pid)
        (tmp_path / "rpc.sock").write_text("")
        assert pm2.daemon_running(str(tmp_path)) is True
    finally:
        fake.kill()
        fake.wait()


def test_pm2_home_defaults_like_pm2(monkeypatch, tmp_path):
    monkeypatch.setenv("PM2_HOME", str(tmp_path / "h"))
    assert pm2.resolve_home(None) == str(tmp_path / "h")
    assert pm2.resolve_home(str(tmp_path / "given")) == str(tmp_path / "given")
    monkeypatch.delenv("PM2_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert pm2.resolve_home(None) == str(tmp_path / ".pm2")


# ---- pm2's event bus -----------------------------------------------------------------------------------

def frame(*args):
    out = bytearray([(1 << 4) | len(args)])
    for arg in args:
        out += struct.pack(">I", len(arg)) + arg
    return bytes(out)


def event(kind, name, data):
    return frame(b"s:" + kind.encode(), b"j:" + json.dumps({"at": 1, "data": data, "process": {
        "pm_id": 0, "name": name, "env": {"PAYMENTS_API_KEY": SECRET}}}).encode())


def test_bus_tap_keeps_only_the_log_lines_of_its_apps(tmp_path):
    path = str(tmp_path / "pub.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    tap = pm2.BusTap(path, ["web"])
    conn, dummy = server.accept()
    try:
        stream = (event("process:event", "web", {"event": "online", "env": {"KEY": SECRET}})
                  + event("log:err", "web", "\nError: PAYMENTS_API_KEY is not set\n    at x.js:9:9\n")
                  + event("log:err", "other", "Error: not mine\n")
                  + event("log:out", "web", "\x1b[32mlistening\x1b[39m on 3000\n")
                  + frame(b"s:log:PM2", b"j:{\"data\": \"App [web:0] online\"}"))
        # split mid-frame, as a socket may deliver it
        conn.sendall(stream[:37])
        _drain_until(tap, lambda: len(tap.buf) > 0 or tap.sock is None)
        conn.sendall(stream[37:])
        _drain_until(tap, lambda: tap.text("web", "out"))
        assert tap.text("web") == "Error: PAYMENTS_API_KEY is not set\n    at x.js:9:9"
        assert tap.text("web", "out") == "listening on 3000"
        assert SECRET not in repr(tap.lines) and "not mine" not in repr(tap.lines)
        conn.sendall(b"\x27garbage")  # not amp version 1: the tap stops instead of misreading
        _drain_until(tap, lambda: tap.sock is None)
        assert tap.sock is None and tap.text("web").startswith("Error")
    finally:
        conn.close()
        server.close()
        tap.close()


def _drain_until(tap, condition, tries=200):
    for dummy in range(tries):
        tap.drain()
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def test_bus_tap_without_a_socket_is_harmless(tmp_path):
    tap = pm2.BusTap(str(tmp_path / "none.sock"), ["web"])
    tap.drain()
    assert tap.sock is None and tap.text("web") == ""
