"""Run a playbook with the project's ansible-playbook against localhost, the way the role tests do.

Playbook(workdir) writes an inventory whose hosts all use the local connection and the venv's
Python (interpreter discovery finds a broken pyenv shim here); run(text, extra_vars, *options)
writes the playbook and a 0600 vars file, runs it and returns the finished process, whose stdout is
also kept in workdir/ansible-playbook-N.log and echoed (pytest shows it when an assertion fails).
run_file(path, extra_vars, *options) runs a playbook where it is (the project's own, with its
templates/)."""

import json
import os
import re
import subprocess
import sys

from helpers.modules import REPO, ensure_collection_path

VENV_BIN = os.path.join(REPO, ".venv", "bin")
PYTHON = os.path.join(VENV_BIN, "python")


class Playbook(object):
    def __init__(self, workdir, hosts=("localhost",), group="app"):
        self.workdir = str(workdir)
        self.runs = 0
        os.makedirs(self.workdir, exist_ok=True)
        self.inventory = os.path.join(self.workdir, "inventory.ini")
        lines = ["[%s]" % group]
        lines += ["%s ansible_connection=local ansible_python_interpreter=%s" % (host, PYTHON) for host in hosts]
        with open(self.inventory, "w") as handle:
            handle.write("\n".join(lines) + "\n")

    def env(self):
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=ensure_collection_path(), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
                   ANSIBLE_LOCAL_TEMP=os.path.join(self.workdir, "tmp"),
                   ANSIBLE_HOME=os.path.join(self.workdir, "ansible-home"),
                   PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
        env.pop("ANSIBLE_CONFIG", None)
        return env

    def run(self, text, extra_vars=None, *options, **kwargs):
        """Write text as a playbook in workdir and run it."""
        playbook = os.path.join(self.workdir, "playbook-%d.yml" % (self.runs + 1))
        with open(playbook, "w") as handle:
            handle.write(text)
        return self.run_file(playbook, extra_vars, *options, **kwargs)

    def run_file(self, playbook, extra_vars=None, *options, **kwargs):
        """Run a playbook where it is (the project's own, beside its templates/)."""
        self.runs += 1
        vars_file = os.path.join(self.workdir, "vars-%d.json" % self.runs)
        fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(extra_vars or {}, handle)
        proc = subprocess.run(
            [os.path.join(VENV_BIN, "ansible-playbook"), "-i", self.inventory, playbook, "-e", "@" + vars_file]
            + list(options), cwd=self.workdir, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            universal_newlines=True, timeout=kwargs.get("timeout", 600), check=False)
        with open(os.path.join(self.workdir, "ansible-playbook-%d.log" % self.runs), "w") as handle:
            handle.write(proc.stdout)
        sys.stdout.write(proc.stdout[-8000:])
        return proc


def recap(output, host="localhost"):
    """The PLAY RECAP counters of host: {'ok': 5, 'changed': 1, 'failed': 0, ...}."""
    match = re.search(r"^%s\s+:\s+(.*)$" % re.escape(host), output, re.MULTILINE)
    assert match, "no PLAY RECAP line for %s" % host
    return dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1)))


def succeeded(proc):
    """proc, after asserting the playbook exited 0 (its output's tail in the message otherwise)."""
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc


def failed(proc):
    """proc, after asserting the playbook exited non-zero."""
    assert proc.returncode != 0, proc.stdout[-6000:]
    return proc
