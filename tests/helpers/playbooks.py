"""The tests' one way to run Ansible's commands: the environment, the inventory, ansible-playbook.

ansible_variables(workdir) are the variables every test run of an Ansible command sets: the checkout as
the collection (ANSIBLE_COLLECTIONS_PATH), no colour, no retry files, no host key prompt, the venv's bin
first on PATH, module processes reusing compiled code (helpers/bytecode_cache, on PYTHONPATH), and with a
workdir a private ANSIBLE_HOME and ANSIBLE_LOCAL_TEMP in it. ansible_env(workdir)
is the caller's environment with them (and without ANSIBLE_CONFIG); helpers.runner hands the same
variables to ansible-runner, as AWX's env/envvars.

local_inventory(groups) is an INI inventory whose hosts all use the local connection and the venv's Python
(interpreter discovery finds a broken pyenv shim here).

Playbook(workdir) writes that inventory (or uses one given) and runs ansible-playbook against it:
run(text, extra_vars, *options) writes the playbook and runs it, run_file(path, extra_vars, *options) runs
a playbook where it is (the project's own, beside its templates/), start(...) starts it in the background
(a RunningPlaybook: its pid, poll(), wait(), kill()). The extra vars go through a 0600 JSON file; each
run's output (stdout and stderr) is kept in workdir/ansible-playbook-N.log and its tail echoed (pytest
shows it when an assertion fails). recap(), succeeded() and failed() read the outcome."""

import json
import os
import re
import signal
import subprocess
import sys

from helpers.modules import ensure_collection_path
from helpers.paths import BYTECODE_CACHE, BYTECODE_SITE, PYTHON, REPO, VENV_BIN, venv_tool

# The deepest a task of playbooks/deploy.yml may run in dynamic includes (issue 21: the roles read like the
# runbook, not six levels of forwarding). tests/callback_plugins/include_depth.py measures every test's runs.
DEPLOY_PLAYBOOK = os.path.join(REPO, "playbooks", "deploy.yml")
MAX_DEPLOY_INCLUDE_DEPTH = 3


def ansible_variables(workdir=None):
    """{name: value} of what every Ansible command the tests run sets in its environment."""
    variables = dict(ANSIBLE_COLLECTIONS_PATH=ensure_collection_path(), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                     ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_HOST_KEY_CHECKING="0",
                     ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "tests", "callback_plugins"),
                     ANSIBLE_CALLBACKS_ENABLED="include_depth",
                     PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
                     PYTHONPATH=os.pathsep.join(filter(None, [BYTECODE_SITE, os.environ.get("PYTHONPATH")])),
                     SAFESHIP_TEST_BYTECODE_CACHE=BYTECODE_CACHE)
    if workdir is not None:
        variables.update(ANSIBLE_HOME=os.path.join(str(workdir), "ansible-home"),
                         ANSIBLE_LOCAL_TEMP=os.path.join(str(workdir), "tmp"))
    return variables


def ansible_env(workdir=None, isolated=False, **more):
    """The caller's environment (read now) with ansible_variables(workdir), no ANSIBLE_CONFIG, and `more`
    (a None value removes that variable). isolated drops every ANSIBLE_* variable of the caller first."""
    env = {key: value for key, value in os.environ.items() if not (isolated and key.startswith("ANSIBLE_"))}
    env.pop("ANSIBLE_CONFIG", None)
    env.update(ansible_variables(workdir))
    for key, value in more.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def local_inventory(groups):
    """INI inventory text: {group: hosts} (or (group, hosts) pairs), every host with the local connection and
    the venv's Python. A host may be in several groups; "ungrouped" and "all" are groups too."""
    lines = []
    for group, hosts in (groups.items() if hasattr(groups, "items") else groups):
        lines.append("[%s]" % group)
        lines += ["%s ansible_connection=local ansible_python_interpreter=%s" % (host, PYTHON) for host in hosts]
        lines.append("")
    return "\n".join(lines)


def include_depths(path):
    """[{depth, task, path}] of a run's include_depth file, deepest first (empty when there is none)."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return sorted(rows, key=lambda row: -row["depth"])


def write_private(path, text):
    """Write text to path, readable by its owner only (extra vars carry passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class RunningPlaybook(object):
    """An ansible-playbook started by Playbook.start(), in a session of its own (a Ctrl-C reaches the test,
    which stops the whole run itself)."""

    def __init__(self, argv, log, echo=True, **popen):
        self.argv = argv
        self.log = log
        self.echo = echo
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        universal_newlines=True, start_new_session=True, **popen)
        self.pid = self.process.pid

    def poll(self):
        return self.process.poll()

    def wait(self, timeout=600):
        """The finished run as a CompletedProcess (.stdout: its output, .log: the file it is kept in); on a
        timeout (or any interruption) the run is stopped and the exception raised."""
        try:
            out = self.process.communicate(timeout=timeout)[0]
        except BaseException:
            self.kill()
            raise
        with open(self.log, "w") as handle:
            handle.write(out)
        if self.echo:
            sys.stdout.write(out[-8000:])
        proc = subprocess.CompletedProcess(self.argv, self.process.returncode, out)
        proc.log = self.log
        proc.include_depths = include_depths(self.log[:-len(".log")] + ".include-depth.jsonl")
        if DEPLOY_PLAYBOOK in self.argv:
            deepest = [row for row in proc.include_depths if row["depth"] > MAX_DEPLOY_INCLUDE_DEPTH]
            assert not deepest, "tasks more than %d includes deep from playbooks/deploy.yml: %s" % (
                MAX_DEPLOY_INCLUDE_DEPTH, deepest)
        return proc

    def kill(self):
        """Stop the run if it still runs (its whole process group: ansible-playbook, its workers, modules)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                self.process.wait()


class Playbook(object):
    """ansible-playbook runs from workdir against an inventory: hosts in group (or groups: {group: hosts}),
    all local, written to workdir/inventory.ini (host_vars/ and group_vars/ beside it apply); or the
    inventory path given. env: variables set on top of ansible_env(workdir) (None removes one); isolated:
    none of the caller's ANSIBLE_* variables; echo=False: the output is not copied to stdout (a caller that
    prints its own results there), only kept in the logs."""

    def __init__(self, workdir, hosts=("localhost",), group="app", groups=None, inventory=None, env=None,
                 isolated=False, echo=True):
        self.workdir = str(workdir)
        self.runs = 0
        self.extra_env = dict(env or {})
        self.isolated = isolated
        self.echo = echo
        os.makedirs(self.workdir, exist_ok=True)
        if inventory is None:
            self.inventory = os.path.join(self.workdir, "inventory.ini")
            with open(self.inventory, "w") as handle:
                handle.write(local_inventory(groups if groups is not None else {group: hosts}))
        else:
            self.inventory = str(inventory)

    def env(self):
        """The environment of a run (read when it starts: a caller may change os.environ between runs)."""
        return ansible_env(self.workdir, self.isolated, **self.extra_env)

    def write(self, text, name=None):
        """Write text as a playbook in workdir (named name, or playbook-N.yml) and return its path."""
        path = os.path.join(self.workdir, name or "playbook-%d.yml" % (self.runs + 1))
        with open(path, "w") as handle:
            handle.write(text)
        return path

    def run(self, text, extra_vars=None, *options, **kwargs):
        """Write text as a playbook in workdir and run it."""
        return self.run_file(self.write(text), extra_vars, *options, **kwargs)

    def run_file(self, playbook, extra_vars=None, *options, **kwargs):
        """Run a playbook where it is (the project's own, beside its templates/); the CompletedProcess has
        .stdout (stdout and stderr) and .log. timeout (s, default 600) stops a run that hangs."""
        return self.start(playbook, extra_vars, *options).wait(kwargs.get("timeout", 600))

    def start(self, playbook, extra_vars=None, *options):
        """Start ansible-playbook in the background and return the RunningPlaybook."""
        self.runs += 1
        vars_file = os.path.join(self.workdir, "vars-%d.json" % self.runs)
        write_private(vars_file, json.dumps(extra_vars or {}))
        argv = [venv_tool("ansible-playbook"), "-i", self.inventory, str(playbook), "-e", "@" + vars_file]
        log = os.path.join(self.workdir, "ansible-playbook-%d.log" % self.runs)
        env = dict(self.env(), SAFESHIP_INCLUDE_DEPTH_FILE=log[:-len(".log")] + ".include-depth.jsonl")
        return RunningPlaybook(argv + list(options), log, echo=self.echo, cwd=self.workdir, env=env)


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
