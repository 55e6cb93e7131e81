"""The node_pm2 role run by ansible-playbook, for the zero-downtime test and bench/switch.py.

RolePlay writes an inventory (localhost, local connection, the venv's Python: helpers.playbooks.Playbook
runs the playbooks), a vars file with the
role's variables for one app (cluster mode, `instances` workers on `port`, a private PM2_HOME) and
two playbooks: deploy.yml (action deploy of one artifact directory as one release id) and
switch.yml (one include_role per release id of a list, action switch: one ansible-playbook run for
all the switches). Every run's output is kept in the work directory."""

import json
import os

from helpers.node_apps import make_release
from helpers.playbooks import Playbook

DEPLOY = """\
---
- name: Deploy one release of the app
  hosts: app
  gather_facts: false
  vars_files:
    - vars.json
  tasks:
    - name: Deploy {{ deploy_release_id }}
      ansible.builtin.include_role:
        name: safeship.webapp.node_pm2
      vars:
        node_pm2_action: deploy
        node_pm2_release_id: "{{ deploy_release_id }}"
        node_pm2_artifact: "{{ deploy_artifact }}"
"""

SWITCH = """\
---
- name: Switch between releases built earlier, one after the other
  hosts: app
  gather_facts: false
  vars_files:
    - vars.json
  tasks:
    - name: Switch
      ansible.builtin.include_role:
        name: safeship.webapp.node_pm2
      vars:
        node_pm2_action: switch
        node_pm2_release_id: "{{ switch_release }}"
      loop: "{{ switch_order }}"
      loop_control:
        loop_var: switch_release
        index_var: switch_index
"""


class RolePlay(object):
    """One app under the node_pm2 role in workdir; pm2 runs with pm2_home (a helpers.node_apps.Pm2Home)."""

    def __init__(self, workdir, pm2_home, port, instances=2, name="zd"):
        self.workdir = str(workdir)
        self.pm2_home = pm2_home
        self.port = port
        self.name = name
        self.app_root = os.path.join(self.workdir, "app")
        self.artifacts = os.path.join(self.workdir, "artifacts")
        self.running = None
        os.makedirs(self.artifacts, exist_ok=True)
        # PM2_HOME left out: the role gets it as node_pm2_pm2_home; the output stays in the logs (bench/switch.py
        # prints its results on stdout)
        self.play = Playbook(self.workdir, echo=False, env=dict(
            NPM_CONFIG_UPDATE_NOTIFIER="false", NPM_CONFIG_CACHE=os.path.join(self.workdir, "npm-cache"),
            PM2_HOME=None))
        for playbook, text in (("deploy.yml", DEPLOY), ("switch.yml", SWITCH)):
            self.play.write(text, playbook)
        self.variables = dict(
            node_pm2_app_root=self.app_root,
            node_pm2_pm2_home=pm2_home.path,
            node_pm2_pm2_binary=pm2_home.binary,
            node_pm2_npm_ci_args=["--no-audit", "--no-fund", "--offline"],
            node_pm2_apps=[dict(name=name, script="dist/server.js", exec_mode="cluster", instances=instances,
                                port=port, wait_ready=True)],
        )
        with open(os.path.join(self.workdir, "vars.json"), "w") as handle:
            json.dump(self.variables, handle, indent=2)
        self.url = "http://127.0.0.1:%d/health" % port

    def artifact(self, version):
        """A release directory of the fixture app (sources, not built) for this version."""
        path = os.path.join(self.artifacts, version)
        if not os.path.isdir(path):
            make_release(path, version)
        return path

    def deploy(self, release_id, version, timeout=600):
        return self.playbook("deploy.yml", dict(deploy_release_id=release_id, deploy_artifact=self.artifact(version)),
                             timeout=timeout)

    def switch(self, order, timeout=1800):
        """One ansible-playbook run switching to each release id of order in turn."""
        return self.playbook("switch.yml", dict(switch_order=list(order)), timeout=timeout)

    def playbook(self, name, extra_vars, timeout):
        """Run a playbook; the CompletedProcess has .stdout (output) and .log (its file)."""
        self.running = self.play.start(os.path.join(self.workdir, name), extra_vars)
        try:
            return self.running.wait(timeout)
        finally:
            self.running = None

    def kill(self):
        """Stop a playbook still running (its whole process group)."""
        if self.running is not None:
            self.running.kill()
        self.running = None
