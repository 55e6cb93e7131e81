# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: pm2 apps (the pm2_app module).

Private: the interface may change without notice; only this collection's modules use it.

What pm2 7 does, measured, and what this code does about it:

* Any pm2 command spawns the daemon when none runs. stopped/absent and check mode therefore look at
  PM2_HOME (pm2.pid with a live pid, rpc.sock) first and call pm2 only when a daemon is up.
* The first command of a new PM2_HOME prints a banner, and the daemon's spawn messages start with
  "[PM2]": `pm2 ping` comes first, and jlist's output is parsed from the first '[' that opens a JSON list.
* pm2 records the CLI's whole environment into the app on start, and a daemon spawned by a command passes
  its own environment and umask on to cluster workers. So commands that may start the daemon or an app run
  with the caller's locale and umask (not LANG=C, not the module's 077), and O(env) is given only to the
  commands acting on the app. jlist and the ecosystem loader, whose output is parsed, run with LANG=C.
* `pm2 start FILE` on an app that is online restarts it; `pm2 start SCRIPT --name N` on a known but stopped
  app creates a second app N. Known apps are therefore only ever restarted/reloaded by name or through the
  ecosystem, never started again.
* Through an ecosystem file, reload/restart replace the app's recorded env with the file's `env` (and
  `env_<env_name>`): variables in the CLI's environment are dropped. O(env) is therefore merged into the
  apps by a small generated `*.config.js` that loads the user's file. pm2 also reads a file as an ecosystem
  only when its path contains .json/.yml/.yaml/.config.js/.config.cjs, so other `.js`/`.cjs` files go
  through the same wrapper. Relative paths in an ecosystem are resolved by pm2 against its working
  directory: commands run in the ecosystem's directory.
* Reload/restart through a file keeps the instance count and the exec mode: the count is fixed with
  `pm2 scale`; a different exec mode is reported.
* In cluster mode an exception thrown while the app starts never reaches the error log file (the worker
  exits before the write): it is only sent on pm2's bus. The module listens on PM2_HOME/pub.sock while it
  acts, so a failure message can show it.
* `pm2 save` refuses an empty list without --force (the dump would then resurrect deleted apps).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import json
import os
import re
import select
import socket
import struct
import time

from ansible.module_utils.common.warnings import warn

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError, iso, pid_alive
from ansible_collections.safeship.webapp.plugins.module_utils._health import HealthFailure, Watch
from ansible_collections.safeship.webapp.plugins.module_utils._redact import Redactor
from ansible_collections.safeship.webapp.plugins.module_utils._runner import C_LOCALE

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is optional on managed hosts
    yaml = None
    HAS_YAML = False

STATES = ("started", "reloaded", "restarted", "stopped", "absent")
EXEC_MODES = ("fork", "cluster")
INSTALL_HINT = "install it (npm install -g pm2) or set pm2_binary to its path"

# How the module recognises an ecosystem file, by the end of its name.
ECOSYSTEM_SUFFIXES = ((".config.js", "js"), (".config.cjs", "js"), (".cjs", "js"), (".js", "js"),
                      (".json", "json"), (".yaml", "yaml"), (".yml", "yaml"))
# How pm2 recognises one (lib/Common.js knonwConfigFileExtensions): a substring anywhere in the path, in this order.
_PM2_DETECTION = ((".json", "json"), (".yml", "yaml"), (".yaml", "yaml"), (".config.js", "js"),
                  (".config.cjs", "js"), (".config.mjs", "mjs"))

ONLINE = "online"
# Statuses of an instance that is not running and will not run by itself.
DOWN = ("stopped", "errored")
POLL_INTERVAL = 0.25
LOG_LINES = 20
_LOG_TAIL_BYTES = 64 * 1024
_BUS_LINES = 60
_BUS_MAX_FRAME = 64 * 1024 * 1024
_PM2_PROGRAMS = (b"pm2", b"pm2-runtime", b"pm2-docker")

# Names pm2 would read as something else: 'all' (every app), a number (a pm_id), options, lists (--only a,b).
_APP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,127}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EADDRINUSE_ADDR = re.compile(r"EADDRINUSE.*:(\d{1,5})\b")
_EADDRINUSE_PORT = re.compile(r"\bport:\s*(\d{1,5})\b")
_ERROR_START = re.compile(r"^\s*(Uncaught\s+)?([A-Z][A-Za-z]*)?Error\b")

# The only pm2_env keys a result may carry (pm2_env also holds the app's whole environment: secrets).
_RESULT_KEYS = (
    ("status", "status"),
    ("restarts", "restart_time"),
    ("unstable_restarts", "unstable_restarts"),
    ("namespace", "namespace"),
    ("cwd", "pm_cwd"),
    ("script", "pm_exec_path"),
    ("interpreter", "exec_interpreter"),
    ("version", "version"),
    ("node_version", "node_version"),
    ("wait_ready", "wait_ready"),
    ("listen_timeout", "listen_timeout"),
    ("kill_timeout", "kill_timeout"),
    ("out_log", "pm_out_log_path"),
    ("err_log", "pm_err_log_path"),
)

# Loads a JS ecosystem the way pm2 does (require) and prints it as JSON, or where loading failed.
_JS_LOADER = r"""
'use strict';
// Written by safeship.webapp.pm2_app: node LOADER FILE prints FILE's config as JSON, or where loading failed.
var file = process.argv[2];
function out(obj) { process.stdout.write(JSON.stringify(obj)); }
var config;
try {
  config = require(file);
} catch (err) {
  var stack = String((err && err.stack) || err);
  var lines = stack.split('\n');
  var where = null, snippet = null;
  var first = /^(.*):(\d+)$/.exec(lines[0]);
  if (first && first[1] === file) {
    where = lines[0];
    snippet = lines.slice(1, 3).join('\n');
  } else {
    for (var i = 0; i < lines.length; i++) {
      var at = lines[i].indexOf(file + ':');
      if (at >= 0) {
        var m = /^(.*?:\d+(:\d+)?)/.exec(lines[i].slice(at));
        if (m) { where = m[1]; break; }
      }
    }
  }
  var what = (err && err.name && err.message !== undefined) ? err.name + ': ' + err.message : String(err);
  out({error: what, where: where, snippet: snippet});
  process.exit(0);
}
out({config: config === undefined ? null : config});
"""

# YAML through the js-yaml that pm2 itself uses, for hosts without PyYAML.
_YAML_LOADER = r"""
'use strict';
// Written by safeship.webapp.pm2_app: node LOADER FILE PM2_DIR prints the YAML FILE as JSON (pm2's js-yaml).
var file = process.argv[2], from = process.argv[3];
var yaml;
try { yaml = require(require.resolve('js-yaml', {paths: [from]})); }
catch (err) { process.stdout.write(JSON.stringify({missing: String(err.message)})); process.exit(0); }
try {
  var text = require('fs').readFileSync(file, 'utf8');
  process.stdout.write(JSON.stringify({config: yaml.load(text)}));
} catch (err) {
  var where = err.mark ? file + ':' + (err.mark.line + 1) + ':' + (err.mark.column + 1) : null;
  process.stdout.write(JSON.stringify({error: err.reason || err.message, where: where}));
}
"""


def _health_check_options():
    return dict(
        url=dict(type="str", required=True),
        status_code=dict(type="list", elements="int", default=[200]),
        json_expect=dict(type="dict", default={}),
        headers=dict(type="dict", default={}, no_log=True),
        timeout=dict(type="float", default=5.0),
    )


def argument_spec():
    return dict(
        name=dict(type="str"),
        ecosystem=dict(type="path"),
        script=dict(type="str"),
        cwd=dict(type="path"),
        args=dict(type="list", elements="str"),
        instances=dict(type="int"),
        exec_mode=dict(type="str", choices=list(EXEC_MODES)),
        wait_ready=dict(type="bool"),
        listen_timeout=dict(type="int"),
        kill_timeout=dict(type="int"),
        interpreter=dict(type="str"),
        env=dict(type="dict", no_log=True),
        public_env=dict(type="dict"),
        env_name=dict(type="str"),
        update_env=dict(type="bool", default=True),
        state=dict(type="str", default="started", choices=list(STATES)),
        pm2_home=dict(type="path"),
        pm2_binary=dict(type="path"),
        wait_online_timeout=dict(type="float", default=60.0),
        stable_seconds=dict(type="float", default=2.0),
        health_checks=dict(type="list", elements="dict", default=[], options=_health_check_options()),
        save=dict(type="bool", default=False),
    )


REQUIRED_ONE_OF = [("name", "ecosystem")]
MUTUALLY_EXCLUSIVE = [("ecosystem", "script")]
_SCRIPT_OPTIONS = ("cwd", "args", "instances", "exec_mode", "wait_ready", "listen_timeout", "kill_timeout",
                   "interpreter")
REQUIRED_BY = dict([("script", ("name",)), ("env_name", ("ecosystem",))]
                   + [(option, ("script",)) for option in _SCRIPT_OPTIONS])


def default_params(**params):
    """Module parameters with the argument spec's defaults: for calling the logic in-process."""
    result = dict((name, spec.get("default")) for name, spec in argument_spec().items())
    result.update(params)
    return result


# ---- small pure helpers -----------------------------------------------------------------------------

def strip_ansi(text):
    return _ANSI.sub("", text or "")


def tail_text(text, lines=LOG_LINES):
    kept = [line.rstrip() for line in strip_ansi(text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def check_app_name(name, what="name"):
    if not isinstance(name, str) or not _APP_NAME.match(name) or name == "all" or name.isdigit():
        raise SafeshipError(
            "%s %r is not an app name this module can manage: use letters, digits, '_', '-', '.', ':', '@' or '+' "
            "(at most 128, starting with a letter, digit or '_'), not a number and not 'all' (pm2 would read those "
            "as a pm_id or as every app)." % (what, name))
    return name


def env_strings(env, option="env"):
    """O(env) or O(public_env) as {str: str}; keys must be environment variable names."""
    result = {}
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not _ENV_KEY.match(key):
            raise SafeshipError("%s key %r is not an environment variable name: use letters, digits and '_', not "
                                "starting with a digit." % (option, key))
        if value is None:
            raise SafeshipError("%s %s has no value: give a string (an empty one if you mean empty)." % (option, key))
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            raise SafeshipError("%s %s must be a string, not a %s." % (option, key, type(value).__name__))
        result[key] = str(value)
    return result


def parse_jlist(text):
    """pm2 jlist's list, whatever noise (banner, '[PM2] ...' lines, colours) comes before it."""
    decoder = json.JSONDecoder()
    text = text or ""
    start = text.find("[")
    while start >= 0:
        try:
            value, dummy = decoder.raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return value
        start = text.find("[", start + 1)
    raise SafeshipError("pm2 jlist printed no process list: %s" % (tail_text(text, 5) or "nothing"))


def exec_mode_of(proc):
    mode = (proc.get("pm2_env") or {}).get("exec_mode") or "fork_mode"
    return "cluster" if str(mode).startswith("cluster") else "fork"


def status_of(proc):
    return (proc.get("pm2_env") or {}).get("status")


def restarts_of(proc):
    value = (proc.get("pm2_env") or {}).get("restart_time")
    return value if isinstance(value, int) else 0


def pid_of(proc):
    pid = proc.get("pid")
    return pid if isinstance(pid, int) and pid > 0 else 0


def group_by_name(procs):
    """{name: [proc, ...]} in pm_id order."""
    groups = collections.OrderedDict()
    for proc in sorted(procs, key=lambda p: (p.get("pm_id") if isinstance(p.get("pm_id"), int) else 0)):
        groups.setdefault(proc.get("name"), []).append(proc)
    return groups


def _scalar(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, str)):
        return value
    return None


def describe_process(proc, now=None):
    """One instance for the result, built only from whitelisted keys (never env, args or anything else)."""
    env = proc.get("pm2_env") or {}
    now = time.time() if now is None else now
    item = {
        "name": _scalar(proc.get("name")),
        "pm_id": _scalar(proc.get("pm_id")),
        "pid": pid_of(proc),
        "exec_mode": exec_mode_of(proc),
    }
    for key, source in _RESULT_KEYS:
        item[key] = _scalar(env.get(source))
    started = env.get("pm_uptime")
    if isinstance(started, (int, float)) and not isinstance(started, bool) and started > 0:
        started_at = started / 1000.0
        item["started_at"] = iso(_utc_from_timestamp(started_at))
        item["uptime"] = round(max(0.0, now - started_at), 1) if item["status"] == ONLINE else 0
    else:
        item["started_at"] = None
        item["uptime"] = 0
    return item


def _utc_from_timestamp(ts):
    import datetime
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


def summarize(groups, names):
    """pids, instance counts, restart totals and exec modes of the apps in names."""
    pids, instances, restarts, modes = {}, {}, {}, {}
    for name in names:
        procs = groups.get(name, [])
        pids[name] = [pid_of(p) for p in procs if pid_of(p)]
        instances[name] = len(procs)
        restarts[name] = sum(restarts_of(p) for p in procs)
        if procs:
            modes[name] = exec_mode_of(procs[0])
    return pids, instances, restarts, modes


def app_status(procs):
    """'online', 'stopped', 'absent' or e.g. 'errored,online' for mixed instances."""
    if not procs:
        return "absent"
    return ",".join(sorted(set(str(status_of(p)) for p in procs)))


def find_port_in_use(texts):
    """(True, port or None) when one of the texts shows EADDRINUSE, (False, None) otherwise."""
    found = False
    for text in texts:
        lines = strip_ansi(text).splitlines()
        for index, line in enumerate(lines):
            if "EADDRINUSE" not in line:
                continue
            found = True
            match = _EADDRINUSE_ADDR.search(line)
            if match:
                return True, int(match.group(1))
            for following in lines[index + 1:index + 12]:
                match = _EADDRINUSE_PORT.search(following)
                if match:
                    return True, int(match.group(1))
    return found, None


def desired_instances(value, cpus=None):
    """The instance count an ecosystem's `instances` asks for (pm2: 0/'max' = CPUs, -N = CPUs - N)."""
    cpus = cpus or os.cpu_count() or 1
    if value is None:
        return 1
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "max":
            return cpus
        value = int(text)
    if isinstance(value, float) and value == int(value):
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(value)
    if value == 0:
        return cpus
    if value < 0:
        return max(1, cpus + value)
    return value


def plan(state, names, groups, desired, can_start):
    """What to do per app: {name: action}, action one of start, restart, reload, scale, stop, delete or None.

    groups: the apps pm2 knows ({name: [proc]}); desired: {name: instance count or None (keep)};
    can_start: whether an unknown app can be started (an ecosystem or a script was given).
    """
    actions = collections.OrderedDict()
    for name in names:
        procs = groups.get(name, [])
        want = desired.get(name)
        if state in ("stopped", "absent"):
            if not procs:
                actions[name] = None
            elif state == "absent":
                actions[name] = "delete"
            else:
                actions[name] = "stop" if any(status_of(p) not in DOWN for p in procs) else None
            continue
        if not procs:
            if not can_start:
                raise SafeshipError(
                    "app %s is not known to pm2, so it cannot be %s: give ecosystem or script to start it."
                    % (name, state))
            actions[name] = "start"
        elif state == "started":
            if any(status_of(p) != ONLINE for p in procs):
                actions[name] = "restart"
            elif want is not None and want != len(procs):
                actions[name] = "scale"
            else:
                actions[name] = None
        elif state == "reloaded":
            actions[name] = "reload"
        else:
            actions[name] = "restart"
    return actions


# ---- ecosystem files ----------------------------------------------------------------------------------

def ecosystem_kind(path):
    name = os.path.basename(path)
    for suffix, kind in ECOSYSTEM_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return kind
    return None


def pm2_reads_as(path):
    """What pm2 itself would take the file for (None: a script to run, not an ecosystem)."""
    for pattern, kind in _PM2_DETECTION:
        if pattern in path:
            return kind
    return None


def _invalid(path, problem):
    return SafeshipError("ecosystem %s is invalid: %s" % (path, problem), ecosystem=path)


def parse_json_ecosystem(path, text):
    try:
        return json.loads(text)
    except ValueError as exc:
        line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        where = "%s:%s:%s: " % (path, line, col) if line else ""
        raise _invalid(path, "%snot valid JSON: %s" % (where, getattr(exc, "msg", exc)))


def parse_yaml_ecosystem(path, text):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "%s:%d:%d: " % (path, mark.line + 1, mark.column + 1) if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise _invalid(path, "%snot valid YAML: %s" % (where, problem))


def _from_loader(path, out, what):
    try:
        data = json.loads(out)
    except ValueError:
        raise _invalid(path, "%s printed no JSON: %s" % (what, tail_text(out, 5) or "nothing"))
    if "error" in data:
        where = data.get("where")
        message = data["error"] + (" at %s" % where if where else "")
        if data.get("snippet"):
            message += "\n" + data["snippet"]
        raise _invalid(path, message)
    return data.get("config")


def validate_config(path, config, name=None, env_name=None, cpus=None):
    """The apps to manage from a loaded ecosystem: [{'name', 'script', 'instances', 'exec_mode'}]."""
    if not isinstance(config, dict) or "apps" not in config:
        raise _invalid(path, "it must declare 'apps', a list of apps (module.exports = {apps: [...]}).")
    apps = config["apps"]
    if isinstance(apps, dict):
        apps = [apps]
    if not isinstance(apps, list) or not apps:
        raise _invalid(path, "'apps' must be a non-empty list of apps.")
    found = collections.OrderedDict()
    for index, app in enumerate(apps):
        if not isinstance(app, dict):
            raise _invalid(path, "apps[%d] is not a mapping." % index)
        app_name, script = app.get("name"), app.get("script")
        if not isinstance(app_name, str) or not app_name:
            raise _invalid(path, "apps[%d] has no 'name'." % index)
        if not isinstance(script, str) or not script:
            raise _invalid(path, "app %s (apps[%d]) has no 'script'." % (app_name, index))
        if app_name in found:
            raise _invalid(path, "it declares app %s twice." % app_name)
        found[app_name] = app
    if name is not None and name not in found:
        raise _invalid(path, "it has no app named %s (it declares: %s)." % (name, ", ".join(found)))
    selected = [name] if name is not None else list(found)
    result = []
    for app_name in selected:
        app = found[app_name]
        try:
            check_app_name(app_name, "app name")
        except SafeshipError as exc:
            raise _invalid(path, exc.msg)
        if env_name and not isinstance(app.get("env_" + env_name), dict):
            raise _invalid(path, "app %s has no env_%s block, which env_name=%s asks for."
                           % (app_name, env_name, env_name))
        try:
            count = desired_instances(app.get("instances"), cpus)
        except (TypeError, ValueError):
            raise _invalid(path, "app %s: instances %r is not a number, 'max' or -N."
                           % (app_name, app.get("instances")))
        mode = app.get("exec_mode")
        mode = None if mode is None else ("cluster" if str(mode).startswith("cluster") else "fork")
        result.append({"name": app_name, "script": app["script"], "instances": count, "exec_mode": mode})
    return result


# ---- pm2 -----------------------------------------------------------------------------------------------

def resolve_home(pm2_home):
    if pm2_home:
        return os.path.abspath(pm2_home)
    if os.environ.get("PM2_HOME"):
        return os.path.abspath(os.environ["PM2_HOME"])
    return os.path.join(os.path.expanduser("~"), ".pm2")


def daemon_running(home):
    """Whether a pm2 daemon serves this PM2_HOME, judged without calling pm2 (which would spawn one)."""
    try:
        with open(os.path.join(home, "pm2.pid")) as handle:
            pid = int(handle.read().strip() or "0")
    except (IOError, OSError, ValueError):
        return False
    if pid <= 0 or not pid_alive(pid) or not os.path.exists(os.path.join(home, "rpc.sock")):
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read()
    except (IOError, OSError):
        return True  # no /proc here: trust the pid file
    # A pid reused by another program after an unclean daemon death is not the daemon, whose title is
    # "PM2 v7.0.4: God Daemon (PM2_HOME)" (or, without a daemon, `node .../pm2 ... --no-daemon`).
    argv = cmdline.split(b"\0")
    return argv[0].startswith(b"PM2 ") or any(os.path.basename(arg) in _PM2_PROGRAMS for arg in argv[:2])


def current_umask():
    value = os.umask(0o022)
    os.umask(value)
    return value


class Pm2(object):
    """The pm2 command line for one PM2_HOME."""

    def __init__(self, runner, binary, home, umask=None):
        self.runner = runner
        self.binary = binary
        self.home = home
        self.umask = umask
        self.pinged = False

    def run(self, args, cwd=None, env=None, parse=False, what=None, check=True):
        update = {"PM2_HOME": self.home}
        if parse:
            update.update(C_LOCALE)
        update.update(env or {})
        self.runner.env_update = update
        previous = os.umask(self.umask) if self.umask is not None else None
        try:
            rc, out, err = self.runner.run([self.binary] + list(args), check=False, cwd=cwd)
        finally:
            if previous is not None:
                os.umask(previous)
        if check and rc != 0:
            output = tail_text(err, 15) or tail_text(out, 15)
            raise SafeshipError("%s failed (exit code %s)%s"
                                % (what or "pm2 %s" % args[0], rc, (": " + output) if output else ""),
                                rc=rc, stderr=strip_ansi(err)[-4000:])
        return rc, out, err

    def ping(self):
        self.run(["ping"])
        self.pinged = True

    def jlist(self):
        if not self.pinged:
            self.ping()
        rc, out, err = self.run(["jlist"], parse=True)
        return parse_jlist(out)


class BusTap(object):
    """Collects what the apps write, from pm2's event bus (PM2_HOME/pub.sock, axon/amp frames).

    Only the text of log:err / log:out events of the named apps is kept (the last lines of each); every other
    event, some of which carry the app's environment, is dropped unread. Best effort: without the socket the
    module still works from the log files.
    """

    def __init__(self, path, names, keep=_BUS_LINES):
        self.names = set(names)
        self.lines = dict((name, {"err": collections.deque(maxlen=keep), "out": collections.deque(maxlen=keep)})
                          for name in names)
        self.buf = bytearray()
        self.sock = None
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(1.0)
            sock.connect(path)
            sock.setblocking(False)
            self.sock = sock
        except (OSError, IOError, socket.error):
            self.sock = None

    def drain(self):
        while self.sock is not None:
            try:
                ready = select.select([self.sock], [], [], 0)[0]
                if not ready:
                    break
                chunk = self.sock.recv(262144)
            except (OSError, IOError, socket.error) as exc:
                if getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                self.close()
                break
            if not chunk:
                self.close()
                break
            self.buf.extend(chunk)
            self._parse()

    def _parse(self):
        while self.buf:
            meta = self.buf[0]
            if meta >> 4 != 1:
                self.close()  # not the protocol we know: stop listening rather than misread
                return
            argc, offset, args = meta & 0x0F, 1, []
            for dummy in range(argc):
                if len(self.buf) < offset + 4:
                    return
                size = struct.unpack(">I", bytes(self.buf[offset:offset + 4]))[0]
                if size > _BUS_MAX_FRAME:
                    self.close()
                    return
                offset += 4
                if len(self.buf) < offset + size:
                    return
                args.append(bytes(self.buf[offset:offset + size]))
                offset += size
            del self.buf[:offset]
            if len(args) >= 2 and args[0] in (b"s:log:err", b"s:log:out"):
                self._keep("err" if args[0] == b"s:log:err" else "out", args[1])

    def _keep(self, kind, payload):
        if not payload.startswith(b"j:"):
            return
        try:
            packet = json.loads(payload[2:].decode("utf-8", "replace"))
            name = packet["process"]["name"]
            data = packet["data"]
        except (ValueError, KeyError, TypeError):
            return
        if name in self.names and isinstance(data, str):
            self.lines[name][kind].extend(line for line in strip_ansi(data).splitlines() if line.strip())

    def text(self, name, kind="err"):
        return "\n".join(self.lines.get(name, {}).get(kind, ()))

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except (OSError, IOError, socket.error):
                pass
            self.sock = None


def read_tail(path):
    """The end of a log file as text ('' when there is none)."""
    if not path or not isinstance(path, str) or path == "/dev/null":
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return ""


def log_excerpt(text, lines=LOG_LINES):
    """The last lines of a log, starting at the last error's first line when it is among them; when that line
    scrolled out, it comes first anyway (followed by '...')."""
    kept = [line.rstrip() for line in strip_ansi(text).splitlines() if line.strip()]
    starts = [index for index, line in enumerate(kept) if _ERROR_START.search(line)]
    window = max(0, len(kept) - lines)
    if not starts:
        return "\n".join(kept[window:])
    last = starts[-1]
    if last >= window:
        return "\n".join(kept[last:])
    return "\n".join([kept[last], "..."] + kept[window + 2:])


def describe_failure(name, procs, problem, tap=None):
    """One message: EADDRINUSE first (with the port), what is wrong, the error log's last lines."""
    failing = [p for p in procs if status_of(p) != ONLINE] or procs
    env = (failing[0].get("pm2_env") or {}) if failing else {}
    err_path, out_path = env.get("pm_err_log_path"), env.get("pm_out_log_path")
    err_tail = log_excerpt(read_tail(err_path))
    out_tail = log_excerpt(read_tail(out_path))
    bus_err = log_excerpt(tap.text(name, "err")) if tap else ""
    bus_out = log_excerpt(tap.text(name, "out")) if tap else ""
    in_use, port = find_port_in_use([err_tail, bus_err, out_tail, bus_out])
    parts = []
    if in_use:
        parts.append(("port %d is already in use (EADDRINUSE): " % port) if port else
                     "an address app %s needs is already in use (EADDRINUSE): " % name)
    parts.append(problem)
    if err_tail:
        parts.append("\nLast lines of its error log %s:\n%s" % (err_path, err_tail))
    elif err_path:
        parts.append("\nIts error log %s is empty." % err_path)
    if bus_err and bus_err.splitlines()[-1].strip() not in err_tail:
        parts.append("\nWhat it wrote to stderr during this task (in cluster mode pm2 does not write an exception "
                     "thrown at start to the error log):\n%s" % bus_err)
    return "".join(parts)


def instance_states(procs):
    return ", ".join("instance %s %s after %d restarts" % (p.get("pm_id"), status_of(p), restarts_of(p))
                     for p in procs) or "no instance"


def wait_until_stable(poll, targets, timeout, stable_seconds, clock=time.monotonic, sleep=time.sleep,
                      on_poll=None, pids_alive=None, probe=None, pending=None):
    """Poll until every target app is online, has its instance count and (for reload/restart) only new pids,
    with restart counts unchanged for stable_seconds. Returns the last list. Raises _WaitFailure (naming the app)
    when an instance is errored or stopped, when restart counts climb (a crash loop), or at the timeout.

    targets: {name: {'count': int or None, 'old_pids': set of the pids a reload/restart must replace}}.
    A restart count is watched from the first time its instance runs a new process (old pids are still being
    replaced by the reload itself).

    pids_alive(pids) -> bool, when given, watches the instances during the stable window instead of polling:
    every jlist starts a node process, which on a small host competes with the app starting. A crash shows
    as a dead pid (pm2 restarts it under a new one), so instances whose pids all lived through the window
    have not restarted: the poll that opened the window is returned without another one.

    probe() -> bool, when given, is called again and again once every instance is up (the health checks):
    the wait ends when the window has passed and probe() has returned True (after the window, up to the
    timeout); an exception it raises ends the wait at once. pending() says, at the timeout, what it waits for.
    """
    deadline = clock() + timeout
    baseline = {}
    stable_since = None
    while True:
        procs = poll()
        if on_poll is not None:
            on_poll()
        groups = group_by_name(procs)
        ready = True
        for name, want in targets.items():
            mine = groups.get(name, [])
            old_pids = want.get("old_pids", ())
            if any(status_of(p) in DOWN for p in mine):
                raise _WaitFailure(name, mine, "app %s failed: %s." % (name, instance_states(mine)))
            climbed = 0
            for p in mine:
                if pid_of(p) in old_pids and pid_of(p):
                    continue
                key = (name, p.get("pm_id"))
                baseline.setdefault(key, restarts_of(p))
                climbed += max(0, restarts_of(p) - baseline[key])
            if climbed:
                raise _WaitFailure(name, mine, "app %s is crash-looping: it restarted %d times while the module "
                                               "waited for it (%s)." % (name, climbed, instance_states(mine)))
            count = want.get("count")
            if not mine or any(status_of(p) != ONLINE for p in mine):
                ready = False
            elif count is not None and len(mine) != count:
                ready = False
            elif any(pid_of(p) in old_pids for p in mine):
                ready = False
        if ready:
            if stable_since is None:
                stable_since = clock()
            healthy = probe() if probe is not None else True
            if clock() - stable_since >= stable_seconds and healthy:
                return procs
            if pids_alive is not None:
                watched = set(pid_of(p) for name in targets for p in groups.get(name, []))
                while clock() < deadline and pids_alive(watched):
                    if clock() - stable_since >= stable_seconds and healthy:
                        return procs
                    sleep(POLL_INTERVAL)
                    if probe is not None:
                        healthy = probe()
        else:
            stable_since = None
        if clock() >= deadline:
            name = list(targets)[0]
            for candidate in targets:
                mine = groups.get(candidate, [])
                if not mine or any(status_of(p) != ONLINE for p in mine):
                    name = candidate
                    break
            mine = groups.get(name, [])
            if ready and pending is not None:
                raise _WaitFailure(name, mine, "app %s is online, but its health checks did not pass within %s s: "
                                               "%s." % (", ".join(targets), _seconds(timeout), pending()))
            count = targets[name].get("count")
            detail = instance_states(mine)
            if count is not None and len(mine) != count:
                detail += "; %d instances wanted" % count
            raise _WaitFailure(name, mine, "app %s is not online and stable after %s s: %s."
                               % (name, _seconds(timeout), detail))
        sleep(POLL_INTERVAL)


def _all_alive(pids):
    return all(pid and pid_alive(pid) for pid in pids)


def _seconds(value):
    return ("%d" % value) if float(value).is_integer() else ("%.1f" % value)


class _WaitFailure(SafeshipError):
    def __init__(self, name, procs, msg):
        super(_WaitFailure, self).__init__(msg)
        self.app = name
        self.procs = procs


# ---- the module's work -------------------------------------------------------------------------------

class Pm2App(object):
    def __init__(self, module, runner, umask=None):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.diff = getattr(module, "_diff", False)
        self.runner = runner
        self.umask = umask
        self.watch = None
        # O(env) values are not registered as runner secrets: they mix secrets with plain settings
        # (NODE_ENV=production next to --env production would trip the argv guard); they reach pm2 only
        # through the environment by construction, and the tests check argv and results for them.
        self.env = {}
        self.home = resolve_home(self.params.get("pm2_home"))
        self.pm2 = None
        self.ecosystem = None
        self.ecosystem_kind = None
        self.config = None
        self.apps = []  # [{'name', 'script', 'instances', 'exec_mode'}] in scope
        self.command_file = None
        self.acted = False

    # -- input ------------------------------------------------------------------------------------

    def _check_numbers(self):
        p = self.params
        if p["wait_online_timeout"] < 0:
            raise SafeshipError("wait_online_timeout must be 0 or more seconds, not %s." % p["wait_online_timeout"])
        if p["stable_seconds"] < 0:
            raise SafeshipError("stable_seconds must be 0 or more, not %s." % p["stable_seconds"])
        if p.get("health_checks") and p["state"] not in ("started", "reloaded", "restarted"):
            raise SafeshipError("health_checks are probed after a start, reload or restart: they need state "
                                "started, reloaded or restarted, not %s." % p["state"])
        if p.get("instances") is not None and p["instances"] < 1:
            raise SafeshipError("instances must be 1 or more, not %s." % p["instances"])
        for option in ("listen_timeout", "kill_timeout"):
            if p.get(option) is not None and p[option] < 0:
                raise SafeshipError("%s must be 0 or more milliseconds, not %s." % (option, p[option]))
        if p.get("env_name") is not None and not _ENV_KEY.match(p["env_name"]):
            raise SafeshipError("env_name %r is not valid: use letters, digits and '_' (it selects env_NAME in the "
                                "ecosystem)." % p["env_name"])

    def find_binary(self):
        given = self.params.get("pm2_binary")
        if given:
            if not os.path.isfile(given) or not os.access(given, os.X_OK):
                raise SafeshipError("pm2_binary %s does not exist or is not executable: %s." % (given, INSTALL_HINT))
            return given
        found = self.module.get_bin_path("pm2")
        if not found:
            raise SafeshipError("pm2 was not found in PATH (%s): %s." % (os.environ.get("PATH", ""), INSTALL_HINT))
        return found

    def find_node(self, pm2_binary):
        beside = os.path.join(os.path.dirname(pm2_binary), "node")
        if os.path.isfile(beside) and os.access(beside, os.X_OK):
            return beside
        found = self.module.get_bin_path("node")
        if not found:
            raise SafeshipError("node was not found in PATH or beside %s: pm2 needs it; install Node.js or add it "
                                "to PATH." % pm2_binary)
        return found

    def load_ecosystem(self, pm2_binary):
        path = os.path.abspath(self.params["ecosystem"])
        kind = ecosystem_kind(path)
        if kind is None:
            raise _invalid(path, "its name must end in .config.js, .js, .cjs, .json, .yml or .yaml.")
        if not os.path.isfile(path):
            raise _invalid(path, "the file does not exist." if not os.path.exists(path) else "it is not a file.")
        self.ecosystem, self.ecosystem_kind = path, kind
        if kind == "json":
            with open(path, "rb") as handle:
                config = parse_json_ecosystem(path, handle.read().decode("utf-8", "replace"))
        elif kind == "yaml" and HAS_YAML:
            with open(path, "rb") as handle:
                config = parse_yaml_ecosystem(path, handle.read().decode("utf-8", "replace"))
        else:
            node = self.find_node(pm2_binary)
            if kind == "js":
                argv = [node, self._private_file("pm2-load-ecosystem.js", _JS_LOADER), path]
            else:
                argv = [node, self._private_file("pm2-load-yaml.js", _YAML_LOADER), path,
                        os.path.dirname(os.path.realpath(pm2_binary))]
            self.runner.env_update = dict(self.env, **C_LOCALE)
            rc, out, err = self.runner.run(argv, check=False, cwd=os.path.dirname(path))
            if rc != 0:
                raise _invalid(path, "node could not load it (exit code %s): %s" % (rc, tail_text(err, 10)))
            data = json.loads(out) if out.strip().startswith("{") else {}
            if "missing" in data:
                raise SafeshipError("cannot read YAML ecosystem %s: PyYAML is not installed and pm2's js-yaml was not "
                                    "found (%s)." % (path, data["missing"]))
            config = _from_loader(path, out, "loading it with node")
        self.apps = validate_config(path, config, self.params.get("name"), self.params.get("env_name"))
        self.config = config
        return self.apps

    def command_ecosystem(self):
        """The file pm2 is given: the user's own, or a wrapper (see the module docstring)."""
        if self.command_file:
            return self.command_file
        path = self.ecosystem
        if not self.env and pm2_reads_as(path) == self.ecosystem_kind:
            self.command_file = path
            return path
        if self.ecosystem_kind == "js":
            source = "require(%s)" % json.dumps(path)
        else:
            source = json.dumps(self.config)  # as parsed and validated
        wrapper = (
            "'use strict';\n"
            "// Written by safeship.webapp.pm2_app for one task: %s, plus the values of the variables below\n"
            "// (read from this process's environment, never written here) in every app's env.\n"
            "var config = %s;\n"
            "var keys = %s;\n"
            "var envName = %s;\n"
            "var extra = {};\n"
            "keys.forEach(function (key) { if (key in process.env) extra[key] = process.env[key]; });\n"
            "var apps = Array.isArray(config.apps) ? config.apps : [config.apps];\n"
            "apps.forEach(function (app) {\n"
            "  if (!keys.length) return;\n"
            "  app.env = Object.assign({}, app.env, extra);\n"
            "  if (envName && app['env_' + envName]) app['env_' + envName] = Object.assign({}, app['env_' + envName], extra);\n"
            "});\n"
            "module.exports = config;\n"
            % (path, source, json.dumps(sorted(self.env)), json.dumps(self.params.get("env_name"))))
        self.command_file = self._private_file("pm2-app.config.js", wrapper)
        return self.command_file

    def _private_file(self, name, text):
        """A file of ours in the module's private temporary directory (removed when the module exits)."""
        target = os.path.join(self.module.tmpdir, name)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return target

    # -- planning ---------------------------------------------------------------------------------

    def scope(self):
        p = self.params
        if p.get("ecosystem"):
            return [app["name"] for app in self.apps]
        return [check_app_name(p["name"])]

    def desired(self):
        p = self.params
        if p.get("ecosystem"):
            return dict((app["name"], app["instances"]) for app in self.apps)
        if p.get("script"):
            return {p["name"]: p.get("instances") or 1}
        return {p["name"]: None}

    def warnings_for(self, actions, groups):
        p = self.params
        for name, action in actions.items():
            procs = groups.get(name, [])
            if not procs or action not in ("reload", "restart", "scale", None):
                continue
            running = exec_mode_of(procs[0])
            if action == "reload" and running == "fork":
                warn("pm2_app: %s runs in fork mode, where pm2 reload is a restart: the old process stops before the "
                     "new one starts, so requests fail meanwhile. Run it in cluster mode with wait_ready (and "
                     "process.send('ready') once listening) for a reload without downtime." % name)
            elif action == "reload" and not (procs[0].get("pm2_env") or {}).get("wait_ready"):
                warn("pm2_app: %s has no wait_ready, so its reload goes on as soon as a new worker listens, not when "
                     "it is ready: set wait_ready (and process.send('ready')) for a reload without downtime." % name)
            wanted = None
            if p.get("ecosystem"):
                wanted = dict((a["name"], a["exec_mode"]) for a in self.apps).get(name)
            elif p.get("script"):
                wanted = p.get("exec_mode") or "fork"
                recorded = (procs[0].get("pm2_env") or {}).get("pm_exec_path")
                wanted_script = os.path.join(p.get("cwd") or os.getcwd(), p["script"]) \
                    if not os.path.isabs(p["script"]) else p["script"]
                if recorded and os.path.normpath(recorded) != os.path.normpath(wanted_script):
                    warn("pm2_app: %s runs %s, not %s: pm2 keeps the script an app was started with; use state=absent "
                         "first to start it from the new script." % (name, recorded, wanted_script))
            if wanted and wanted != running:
                warn("pm2_app: %s runs in %s mode but %s mode is asked for: pm2 keeps the mode an app was started "
                     "with; use state=absent first to start it in %s mode." % (name, running, wanted, wanted))

    # -- acting -----------------------------------------------------------------------------------

    def _file_args(self, action, names):
        args = [action, self.command_ecosystem(), "--only", ",".join(names)]
        if self.params.get("env_name"):
            args += ["--env", self.params["env_name"]]
        if action in ("reload", "restart"):
            args.append("--update-env")
        return args

    def _script_args(self):
        p = self.params
        mode = p.get("exec_mode") or "fork"
        args = ["start", p["script"], "--name", p["name"], "-i", str(p.get("instances") or 1)]
        if mode == "fork":
            args.append("-x")
        if p.get("cwd"):
            args += ["--cwd", p["cwd"]]
        if p.get("wait_ready"):
            args.append("--wait-ready")
        if p.get("listen_timeout") is not None:
            args += ["--listen-timeout", str(p["listen_timeout"])]
        if p.get("kill_timeout") is not None:
            args += ["--kill-timeout", str(p["kill_timeout"])]
        if p.get("interpreter"):
            args += ["--interpreter", p["interpreter"]]
        if p.get("args"):
            args += ["--"] + list(p["args"])
        return args

    def _by_name(self, action, name):
        args = [action, name]
        if action in ("reload", "restart") and self.params["update_env"]:
            args.append("--update-env")
        return args

    def act(self, actions, desired, counts_before):
        p = self.params
        by = collections.defaultdict(list)
        for name, action in actions.items():
            if action:
                by[action].append(name)
        use_file = bool(p.get("ecosystem"))
        cwd = os.path.dirname(self.ecosystem) if use_file else (p.get("cwd") or None)
        app_env = self.env

        def run(args, env=None):
            self.acted = True
            self.pm2.run(args, cwd=cwd, env=env, what="pm2 %s" % " ".join(args[:2]))

        if by["start"]:
            if use_file:
                run(self._file_args("start", by["start"]), app_env)
            else:
                run(self._script_args(), app_env)
        for action in ("restart", "reload"):
            if not by[action]:
                continue
            if use_file and p["update_env"]:
                run(self._file_args(action, by[action]), app_env)
            else:
                for name in by[action]:
                    run(self._by_name(action, name), app_env if p["update_env"] else None)
        for name in by["stop"]:
            run(["stop", name])
        for name in by["delete"]:
            run(["delete", name])
        # reload/restart keep the instance count pm2 has: bring it to the one asked for
        for name in actions:
            want = desired.get(name)
            if actions[name] in ("reload", "restart", "scale") and want is not None and want != counts_before.get(name):
                run(["scale", name, str(want)])

    # -- main -------------------------------------------------------------------------------------

    def run(self):
        p = self.params
        self._check_numbers()
        # one environment for the app: public_env, then env (secret) over it
        self.env = env_strings(p.get("public_env"), "public_env")
        self.env.update(env_strings(p.get("env")))
        if p.get("name") is not None:
            check_app_name(p["name"])
        if p.get("health_checks"):
            # an app that says it is ready and answers 5xx is broken: no need to wait out the window
            self.watch = Watch(p["health_checks"], Redactor(module=self.module), fail_fast=range(500, 600))
        binary = self.find_binary()
        self.pm2 = Pm2(self.runner, binary, self.home, self.umask)
        if p.get("ecosystem"):
            self.load_ecosystem(binary)
        names = self.scope()
        desired = self.desired()
        state = p["state"]

        # No daemon means no apps; only a real start/reload/restart may spawn one.
        alive = daemon_running(self.home)
        # pm2 ping only matters when it spawns the daemon; a running one answers jlist as it is
        self.pm2.pinged = alive
        may_spawn = not self.check_mode and state in ("started", "reloaded", "restarted")
        before = self.pm2.jlist() if (alive or may_spawn) else []
        groups = group_by_name(before)
        actions = plan(state, names, groups, desired, can_start=bool(p.get("ecosystem") or p.get("script")))
        changed = any(actions.values())
        self.warnings_for(actions, groups)
        pids_before, counts_before, dummy, dummy = summarize(groups, names)

        result = {
            "changed": changed,
            "state": state,
            "pm2_home": self.home,
            "actions": dict((name, action or "none") for name, action in actions.items()),
            "pids_before": pids_before,
            "daemon_was_running": alive,
            "health": {},
        }
        if self.check_mode or not changed:
            self._fill(result, groups, names)
            if self.diff:
                result["diff"] = {"before": self._diff_state(groups, names),
                                  "after": self._predicted(actions, groups, names, desired)}
            return result

        acting = [name for name, action in actions.items() if action in ("start", "restart", "reload", "scale")]
        tap = BusTap(os.path.join(self.home, "pub.sock"), acting) if acting else None
        settled = None
        try:
            self.act(actions, desired, counts_before)
            if acting:
                settled = self._wait(acting, actions, desired, counts_before, pids_before, tap)
                result["health"] = self.watch.results() if self.watch else {}
            if p["save"]:
                self.pm2.run(["save", "--force"])
                self._protect_dump()
        except SafeshipError as exc:
            raise self._with_state(exc, names)
        finally:
            if tap is not None:
                tap.close()
        # the wait's last poll came after every action (pm2 save changes no process); without a wait, ask pm2
        after = group_by_name(settled if settled is not None else self.pm2.jlist())
        self._fill(result, after, names)
        if self.diff:
            result["diff"] = {"before": self._diff_state(groups, names), "after": self._diff_state(after, names)}
        return result

    def _wait(self, acting, actions, desired, counts_before, pids_before, tap):
        targets = {}
        for name in acting:
            old = set(pids_before.get(name, ())) if actions[name] in ("restart", "reload") else set()
            count = desired.get(name)
            if count is None:
                count = counts_before.get(name) or None
            targets[name] = {"count": count, "old_pids": old}
        p = self.params
        first_poll = len(self.runner.executed_commands)
        watch = self.watch
        if watch is not None:
            watch.begin()
        try:
            return wait_until_stable(self.pm2.jlist, targets, p["wait_online_timeout"], p["stable_seconds"],
                                     on_poll=tap.drain if tap else None, pids_alive=_all_alive,
                                     probe=watch.probe if watch else None,
                                     pending=watch.pending if watch else None)
        except _WaitFailure as exc:
            if tap is not None:
                tap.drain()
            raise SafeshipError("pm2_app: " + describe_failure(exc.app, exc.procs, exc.msg, tap),
                                health=watch.results() if watch else {})
        except HealthFailure as exc:
            raise SafeshipError("pm2_app: app %s is broken: %s (health_checks; not waiting out the %s s of "
                                "stable_seconds)." % (", ".join(acting), exc.msg, _seconds(p["stable_seconds"])),
                                health=watch.results())
        finally:
            # the polls are one jlist after another: executed_commands shows one
            del self.runner.executed_commands[first_poll + 1:]

    def _with_state(self, exc, names):
        """The error, with the apps as they are now (whitelisted) and changed=True once pm2 acted."""
        details = dict(exc.details)
        details["changed"] = self.acted
        try:
            extra = {}
            self._fill(extra, group_by_name(self.pm2.jlist()), names)
            details.update(extra)
        except SafeshipError:
            pass
        return SafeshipError(exc.msg, **details)

    def _fill(self, result, groups, names):
        now = time.time()
        result["apps"] = [describe_process(proc, now) for name in names for proc in groups.get(name, [])]
        pids, instances, restarts, modes = summarize(groups, names)
        result["pids_after"] = pids
        result["instances"] = instances
        result["restarts"] = restarts
        result["exec_mode"] = modes

    def _diff_state(self, groups, names):
        return dict((name, {"status": app_status(groups.get(name, [])), "instances": len(groups.get(name, []))})
                    for name in names)

    def _predicted(self, actions, groups, names, desired):
        after = self._diff_state(groups, names)
        for name in names:
            action = actions.get(name)
            count = desired.get(name) or len(groups.get(name, [])) or 1
            if action in ("start", "restart", "reload", "scale"):
                after[name] = {"status": ONLINE, "instances": count}
            elif action == "stop":
                after[name] = {"status": "stopped", "instances": len(groups.get(name, []))}
            elif action == "delete":
                after[name] = {"status": "absent", "instances": 0}
        return after

    def _protect_dump(self):
        """pm2's dump holds every app's environment (secrets): owner-only, like the module's other files."""
        for name in ("dump.pm2", "dump.pm2.bak"):
            path = os.path.join(self.home, name)
            if os.path.isfile(path) and not os.path.islink(path):
                os.chmod(path, 0o600)


def run(module, runner, umask=None):
    """The pm2_app module's action. umask: the caller's, which pm2 hands on to the daemon and the apps."""
    return Pm2App(module, runner, umask).run()
