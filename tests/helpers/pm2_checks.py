"""What the pm2_app integration tests share: the module bound to one PM2_HOME, ecosystem files in every format,
built fixture releases behind a `current` symlink, what a live process really has (environment, umask), and a
client that keeps requesting while an app is reloaded."""

import json
import os
import threading
import time
import urllib.error
import urllib.request

import yaml

from helpers.node_apps import PM2, built_release, get_json


class Pm2Task(object):
    """pm2_app with pm2_home and pm2_binary set (override them in args)."""

    def __init__(self, run_module, home):
        self.run_module = run_module
        self.home = home

    def __call__(self, check_mode=False, diff=False, **args):
        args.setdefault("pm2_home", self.home.path)
        args.setdefault("pm2_binary", PM2)
        args.setdefault("stable_seconds", 1)
        return self.run_module("pm2_app", args, check_mode=check_mode, diff=diff)

    def ok(self, check_mode=False, diff=False, **args):
        result = self(check_mode=check_mode, diff=diff, **args)
        assert not result.get("failed"), result.get("msg")
        return result

    def fails(self, **args):
        result = self(**args)
        assert result.get("failed") is True, result
        return result


def write_ecosystem(path, apps):
    """An ecosystem declaring apps, in the format the file name asks for."""
    config = {"apps": apps}
    if path.endswith((".yaml", ".yml")):
        text = yaml.safe_dump(config, default_flow_style=False)
    elif path.endswith(".json"):
        text = json.dumps(config, indent=2)
    else:
        text = "'use strict';\n// written by the pm2_app tests\nmodule.exports = %s;\n" % json.dumps(config, indent=2)
    with open(path, "w") as handle:
        handle.write(text)
    return path


class Releases(object):
    """Built releases of the fixture app (built once per test file) and a `current` link per test."""

    def __init__(self, base):
        self.base = base
        self.paths = {}

    def get(self, version, variant="good"):
        key = (version, variant)
        if key not in self.paths:
            self.paths[key] = built_release(os.path.join(self.base, "%s-%s" % (variant, version)), version, variant)
        return self.paths[key]

    def switch(self, link, version, variant="good"):
        """Point link (a `current` symlink) at a release, atomically."""
        tmp = link + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.get(version, variant), tmp)
        os.rename(tmp, link)
        return link


def daemon_files(home):
    """The files a pm2 daemon leaves in its home: none of them means no daemon was ever spawned there."""
    return sorted(name for name in ("pm2.pid", "rpc.sock", "pub.sock") if os.path.lexists(os.path.join(home, name)))


def daemons_of(home):
    """Pids of live pm2 daemons serving home (their title names it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if cmdline.startswith(b"PM2 ") and (b"(%s)" % home.encode()) in cmdline:
            found.append(int(entry))
    return found


def proc_environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as handle:
        items = handle.read().split(b"\0")
    return dict(item.decode("utf-8", "replace").split("=", 1) for item in items if b"=" in item)


def proc_umask(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    raise AssertionError("no Umask in /proc/%d/status" % pid)


def without_invocation(result):
    """The module's result as JSON text, minus what Ansible echoes of the arguments."""
    data = dict(result)
    data.pop("invocation", None)
    return json.dumps(data, sort_keys=True)


def serves(port, version, timeout=20.0):
    """The version / answers with, once it is `version` (or the last answer)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = get_json("http://127.0.0.1:%d/" % port)
            if last[0] == 200 and last[1].get("version") == version:
                return last[1]
        except OSError as err:
            last = str(err)
        time.sleep(0.1)
    raise AssertionError("port %d did not serve %s: last answer %r" % (port, version, last))


def refused(port):
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=2).read()
    except urllib.error.URLError as err:
        return isinstance(err.reason, ConnectionRefusedError)
    except ConnectionRefusedError:
        return True
    return False


class Requester(threading.Thread):
    """GETs / on a port every `interval` seconds until stopped; records every answer (version) or failure."""

    def __init__(self, port, interval=0.02):
        super(Requester, self).__init__(daemon=True)
        self.url = "http://127.0.0.1:%d/" % port
        self.interval = interval
        self.versions = []
        self.failures = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                status, body = get_json(self.url, timeout=5)
                if status == 200:
                    self.versions.append(body["version"])
                else:
                    self.failures.append("HTTP %s" % status)
            except Exception as err:  # every failure counts, whatever its kind
                self.failures.append(repr(err))
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(10)
        return self
