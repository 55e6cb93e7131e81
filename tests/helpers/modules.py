"""Run a collection module exactly as Ansible runs it on a host: a separate Python process reading
its arguments from a JSON file and printing its result as JSON."""

import json
import os
import subprocess
import sys
import tempfile

from helpers.paths import COLLECTIONS, REPO


def ensure_collection_path():
    """.build/collections/ansible_collections/safeship/webapp -> the checkout."""
    link = os.path.join(COLLECTIONS, "ansible_collections", "safeship", "webapp")
    if os.path.realpath(link) != REPO:
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(REPO, link)
    return COLLECTIONS


class ModuleResult(dict):
    """The module's JSON result, plus what it printed and its exit code."""

    def __init__(self, data, stdout, stderr, rc):
        super(ModuleResult, self).__init__(data)
        self.stdout = stdout
        self.stderr = stderr
        self.rc = rc


def parse_result(name, stdout, stderr, rc):
    # the JSON document is the last line that parses; anything before it would be a module bug
    for line in reversed(stdout.strip().splitlines() or [""]):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            return ModuleResult(data, stdout, stderr, rc)
    raise AssertionError("module %s printed no JSON result (rc=%s)\nstdout:\n%s\nstderr:\n%s"
                         % (name, rc, stdout[-4000:], stderr[-4000:]))


def no_secret(result, *secrets):
    """Assert that no secret appears in a module's result, nor in what it printed (stdout, stderr)."""
    text = json.dumps(result) + result.stdout + result.stderr
    for secret in secrets:
        assert secret not in text


class RunningModule(object):
    def __init__(self, name, process, cleanup):
        self.name = name
        self.process = process
        self.pid = process.pid
        self._cleanup = cleanup

    def poll(self):
        return self.process.poll()

    def wait(self, timeout=None):
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is not None:
                self._cleanup()

    def wait_result(self, timeout=None):
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        finally:
            self._cleanup()
        return parse_result(self.name, stdout, stderr, self.process.returncode)


class ModuleRunner(object):
    def __init__(self, workdir):
        self.workdir = workdir
        self.collections = ensure_collection_path()

    def _launch(self, name, args, check_mode=False, diff=False):
        payload = dict(args)
        payload["_ansible_check_mode"] = check_mode
        payload["_ansible_diff"] = diff
        payload["_ansible_remote_tmp"] = os.path.join(self.workdir, "remote_tmp")
        fd, path = tempfile.mkstemp(prefix="args-", suffix=".json", dir=self.workdir)
        with os.fdopen(fd, "w") as handle:  # 0600 from mkstemp: it holds passwords
            json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
        env = dict(os.environ, PYTHONPATH=self.collections)
        process = subprocess.Popen(
            [sys.executable, "-m", "ansible_collections.safeship.webapp.plugins.modules." + name, path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env,
            cwd=self.workdir)

        def cleanup():
            if os.path.exists(path):
                os.unlink(path)
        return process, cleanup

    def __call__(self, name, args, check_mode=False, diff=False, timeout=900):
        process, cleanup = self._launch(name, args, check_mode, diff)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            cleanup()
        return parse_result(name, stdout, stderr, process.returncode)

    def start(self, name, args, check_mode=False):
        process, cleanup = self._launch(name, args, check_mode)
        return RunningModule(name, process, cleanup)
