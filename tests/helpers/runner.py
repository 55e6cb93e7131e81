"""Run a project playbook the way AWX does: through ansible-runner, from a private data dir.

AWX's control node writes a private data dir (``project/`` - a copy of the project checkout,
``inventory/hosts``, ``env/extravars``, ``env/envvars``, ``env/settings``, ``env/cmdline``), then
sends it to an execution node through ansible-runner's streaming interface: ``transmit`` packs the
directory and the run's arguments, ``worker`` unpacks them into a directory of its own and runs
ansible-playbook (in the execution environment), ``process`` reads the worker's event stream back into
the control node's directory. run_with_runner() does the same three steps in one process, so a
playbook that reaches outside ``project/`` fails here as it would in AWX.

What differs from AWX, and why: no container (no engine runs here) - the worker runs the venv's
ansible-playbook with ANSIBLE_COLLECTIONS_PATH at the checkout's .build/collections, where the EE
would have the collection installed; hosts use the local connection with the venv's Python
(interpreter discovery finds a broken pyenv shim on these machines): the environment and the inventory
are helpers.playbooks' (ansible_variables, local_inventory), as for the tests that run ansible-playbook.

Like AWX, the extra vars file marks every string !unsafe (AWX does so for launch-time and survey
values), so a playbook that only works when it can template a survey answer fails here too."""

import json
import os
import shutil
import sys
import uuid

import yaml

from helpers.paths import REPO
from helpers.playbooks import ansible_variables, local_inventory, write_private

# ansible_runner is imported by the functions, not here: a missing ansible-runner fails the test
# that uses it (with the import error), it never skips it or breaks collection of the other tests.


def localhost_inventory(*groups):
    """inventory/hosts text: localhost in each group, local connection, the venv's Python."""
    return local_inventory([(group, ("localhost",)) for group in groups or ("all",)])


class _UnsafeDumper(yaml.SafeDumper):
    pass


def _unsafe_str(dumper, value):
    return dumper.represent_scalar("!unsafe", value)


_UnsafeDumper.add_representer(str, _unsafe_str)


# What AWX adds to every job's extra vars (plus tower_* twins); the playbooks may use them (the notify
# role names awx_user_name as the one who deployed).
AWX_JOB_VARS = {
    "awx_job_id": 4242,
    "awx_job_launch_type": "manual",
    "awx_job_template_id": 7,
    "awx_job_template_name": "safeship test",
    "awx_user_id": 3,
    "awx_user_name": "ops-alice",
    "awx_inventory_id": 2,
    "awx_inventory_name": "test",
    "awx_project_revision": "0000000000000000000000000000000000000000",
}


def awx_extravars_yaml(extravars, job_vars=None):
    """env/extravars as AWX writes it: YAML, the launch-time values (extravars) with every string
    !unsafe, AWX's own job variables (job_vars) as they are."""
    parts = []
    if extravars:
        parts.append(yaml.dump(extravars, Dumper=_UnsafeDumper, default_flow_style=False, sort_keys=True))
    if job_vars:
        parts.append(yaml.safe_dump(job_vars, default_flow_style=False, sort_keys=True))
    return "".join(parts) or "{}\n"


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_private(path, text)


def private_data_dir(tmp_path, extravars, inventory_text, cmdline="", job_timeout=600, job_vars=None, name=None):
    """Write an AWX-style private data dir under tmp_path and return its path."""
    pdd = os.path.join(str(tmp_path), name or "awx-job-%s" % uuid.uuid4().hex[:8])
    os.makedirs(pdd)
    # AWX copies the whole project checkout; the playbooks (and their templates/) are what a job
    # template points at, the roles and modules come from the collection (the EE's, here the checkout)
    shutil.copytree(os.path.join(REPO, "playbooks"), os.path.join(pdd, "project", "playbooks"))
    _write(os.path.join(pdd, "inventory", "hosts"), inventory_text)
    _write(os.path.join(pdd, "env", "extravars"), awx_extravars_yaml(extravars, job_vars))
    # the tests' Ansible environment (helpers.playbooks): the collection, a private ANSIBLE_HOME and local
    # temp, and ansible-playbook and the tools the modules find on PATH, as in the EE
    envvars = ansible_variables(pdd)
    if "ANSIBLE_CONFIG" in os.environ:
        # runner extends the caller's environment and cannot drop a variable: an empty config instead
        envvars["ANSIBLE_CONFIG"] = os.devnull
    _write(os.path.join(pdd, "env", "envvars"), json.dumps(envvars, indent=2))
    # AWX sets the job template's timeout; a hung play ends the test instead of the CI job
    _write(os.path.join(pdd, "env", "settings"), json.dumps({"job_timeout": job_timeout}))
    if cmdline:
        _write(os.path.join(pdd, "env", "cmdline"), cmdline)
    return pdd


def run_with_runner(tmp_path, playbook, extravars=None, inventory_text=None, cmdline="", job_timeout=600,
                    job_vars=None):
    """Run project playbook `playbook` (relative to the checkout, e.g. 'playbooks/backup.yml') through
    ansible-runner's transmit / worker / process pipeline, as AWX does. cmdline adds ansible-playbook
    options, as the job type and launch options do (AWX's "Check" job type is '--check'); job_vars are
    the awx_* variables AWX adds (None: AWX_JOB_VARS; {} for none).

    Returns (status, rc, stdout, events): runner's status ('successful', 'failed', 'timeout', ...),
    the playbook's exit code, its stdout (the events' stdout joined: what AWX shows as the job's output)
    and the event dicts, in order."""
    import ansible_runner  # a missing ansible-runner fails here, with the import error

    if inventory_text is None:
        inventory_text = localhost_inventory("all")
    pdd = private_data_dir(tmp_path, extravars, inventory_text, cmdline=cmdline, job_timeout=job_timeout,
                           job_vars=AWX_JOB_VARS if job_vars is None else job_vars)
    worker_dir = os.path.join(os.path.dirname(pdd), os.path.basename(pdd) + "-worker")
    os.makedirs(worker_dir)
    ident = uuid.uuid4().hex

    # the streams go through files, as they go through receptor's work units in AWX
    streams = os.path.dirname(pdd)
    events = []

    def event_handler(event):
        events.append(event)
        return True

    with open(os.path.join(streams, ident + ".transmit"), "w+b") as transmitted, \
            open(os.path.join(streams, ident + ".worker"), "w+b") as worked:
        # control node: the directory and the arguments, packed
        ansible_runner.run(streamer="transmit", _output=transmitted, private_data_dir=pdd, playbook=playbook,
                           ident=ident, quiet=True)
        transmitted.seek(0)
        # execution node: unpacked into a directory of its own and run
        ansible_runner.run(streamer="worker", _input=transmitted, _output=worked, private_data_dir=worker_dir,
                           quiet=True)
        worked.seek(0)
        # control node: the event stream read back, each event handed over as AWX stores job events
        processed = ansible_runner.run(streamer="process", _input=worked, private_data_dir=pdd, ident=ident,
                                       event_handler=event_handler, quiet=True)
    # the worker's artifacts (rc, stdout, status) come back in the stream, into artifacts/<ident>/;
    # the process step itself knows the status only, the exit code is in the rc file
    artifacts = os.path.join(pdd, "artifacts", ident)
    rc = processed.rc
    if os.path.exists(os.path.join(artifacts, "rc")):
        with open(os.path.join(artifacts, "rc")) as handle:
            rc = int(handle.read().strip())
    stdout = "\n".join(event["stdout"] for event in events if event.get("stdout"))
    sys.stdout.write(stdout[-8000:] + "\n")
    return processed.status, rc, stdout, events


def failed_events(events):
    """The task results that failed the play (not those ignore_errors let pass): [(task, host, msg)]."""
    # a loop's item events do not carry ignore_errors; the task's own failed event after them does
    ignored = set(event["event_data"].get("task_uuid") for event in events
                  if event.get("event") == "runner_on_failed" and event.get("event_data", {}).get("ignore_errors"))
    out = []
    for event in events:
        if event.get("event") in ("runner_on_failed", "runner_item_on_failed", "runner_on_unreachable"):
            data = event.get("event_data", {})
            if data.get("ignore_errors") or data.get("task_uuid") in ignored:
                continue
            res = data.get("res", {})
            out.append((data.get("task", ""), data.get("host", ""), res.get("msg", "")))
    return out
