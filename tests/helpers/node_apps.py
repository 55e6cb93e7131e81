"""Releases of the Node fixture app (tests/fixtures/node_app) and a pm2 home per test.

make_release(dest, version, variant) copies the app, overlays a broken variant's src/ and sets the
version; build_release() runs what a deploy runs (npm ci, npm run build) so the result starts under
pm2 as it is. Pm2Home runs the pm2 that scripts/test installs into .build/node with its own
PM2_HOME, and kills its daemon (and so every app it started) on close."""

import json
import os
import shutil
import subprocess
import time

from helpers.modules import REPO
# free_port is imported from here by bench/switch.py
from helpers.ports import free_port  # noqa: F401 pylint: disable=unused-import

FIXTURES = os.path.join(REPO, "tests", "fixtures")
APP = os.path.join(FIXTURES, "node_app")
VARIANTS = {"good": None, "unhealthy": "node_app_unhealthy", "crash": "node_app_crash"}
PM2 = os.path.join(REPO, ".build", "node", "node_modules", ".bin", "pm2")


def make_release(dest, version, variant="good"):
    """Copy the fixture app to dest (node_modules and dist left out) as `version`."""
    shutil.copytree(APP, dest, ignore=shutil.ignore_patterns("node_modules", "dist"), symlinks=True)
    overlay = VARIANTS[variant]
    if overlay:
        shutil.copytree(os.path.join(FIXTURES, overlay, "src"), os.path.join(dest, "src"), dirs_exist_ok=True)
    set_version(dest, version)
    return dest


def set_version(path, version):
    """Set the version of the Node app in path (package.json and package-lock.json)."""
    for name in ("package.json", "package-lock.json"):
        file_path = os.path.join(path, name)
        with open(file_path) as handle:
            data = json.load(handle)
        data["version"] = version
        if name == "package-lock.json":
            data["packages"][""]["version"] = version
        with open(file_path, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")


def build_release(path):
    """npm ci + npm run build, offline (the fixture's only dependency is a local file)."""
    for argv in (["npm", "ci", "--no-audit", "--no-fund", "--offline"], ["npm", "run", "build"]):
        subprocess.run(argv, cwd=path, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return path


def built_release(dest, version, variant="good"):
    return build_release(make_release(dest, version, variant))


def get_json(url, timeout=2.0):
    """(status, parsed JSON body or None) of a GET, without following anything."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read().decode() or "null")
    except urllib.error.HTTPError as err:
        body = err.read().decode()
        try:
            return err.code, json.loads(body)
        except ValueError:
            return err.code, None


def wait_for_version(url, version, timeout=20.0):
    """Poll url until it answers 200 with this version; the last answer otherwise (for the assert)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = get_json(url)
            if last[0] == 200 and last[1] and last[1].get("version") == version:
                return last
        except OSError as err:
            last = (None, str(err))
        time.sleep(0.2)
    return last


class Pm2Home(object):
    """A private PM2_HOME; run() calls pm2 with it; close() kills its daemon."""

    def __init__(self, path):
        if not os.access(PM2, os.X_OK):
            raise RuntimeError("%s is missing: scripts/test installs pm2 from tools/node" % PM2)
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.binary = PM2
        self.env = dict(os.environ, PM2_HOME=path)

    def run(self, *args, check=True):
        return subprocess.run([PM2] + list(args), env=self.env, check=check, universal_newlines=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def jlist(self):
        """pm2's process list; `pm2 ping` first, since the first call of a new home prints a banner."""
        self.run("ping")
        out = self.run("jlist").stdout
        return json.loads(out[out.index("["):])

    def apps(self):
        """{name: [(pid, status, restarts), ...]} from jlist."""
        found = {}
        for proc in self.jlist():
            env = proc.get("pm2_env", {})
            found.setdefault(proc["name"], []).append((proc.get("pid"), env.get("status"), env.get("restart_time")))
        return found

    def close(self):
        if os.path.exists(os.path.join(self.path, "pm2.pid")):
            self.run("kill", check=False)
