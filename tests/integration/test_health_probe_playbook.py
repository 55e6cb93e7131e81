"""health_probe in a real ansible-playbook run (localhost, the project's venv) against the test web app:
the smoke flow passes, a failing step is reported with the token masked, Ansible's own output (at -vvv)
never shows the captured token or the login password, and run_in_check_mode: false makes the task
skipped in check mode while the others still probe."""

import json

import pytest

from helpers.http_app import PASSWORD, App
from helpers.playbooks import Playbook, recap

PLAYBOOK = """\
---
- name: Verify a release
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Health and smoke flow
      safeship.webapp.health_probe:
        url: "{{ base }}/health"
        json_expect:
          status: ok
          version: "1.2.3"
        consecutive_successes: 2
        delay: 0.01
        samples: 3
        steps:
          - name: login
            url: /api/login
            method: POST
            json_body:
              email: smoke@example.test
              password: "{{ smoke_password }}"
            capture:
              token: access_token
          - name: profile
            url: /api/me
            bearer: token
            json_expect:
              user: smoke
          - name: tenant
            url: /api/tenant
            bearer: token
            headers:
              Host: acme.example.test
            json_expect:
              tenant: acme
      register: smoke

    - name: The flow's results are usable
      ansible.builtin.assert:
        that:
          - smoke is not changed
          - smoke.steps | length == 3
          - smoke.steps[2].json.tenant == 'acme'
          - smoke.latency.count == 3
        quiet: true

    - name: A step that fails with the token in its body
      safeship.webapp.health_probe:
        url: "{{ base }}/health"
        steps:
          - name: login
            url: /api/login
            method: POST
            json_body:
              email: smoke@example.test
              password: "{{ smoke_password }}"
            capture:
              token: access_token
          - name: leak
            url: /api/leak
            bearer: token
      register: leak
      ignore_errors: true

    - name: The failure says what came back, token masked
      ansible.builtin.assert:
        that:
          - leak is failed
          - leak is not changed
          - "'status 500, expected 200' in leak.msg"
          - "'handling token ******** for user smoke' in leak.msg"
        quiet: true

    - name: Probe only outside check mode
      safeship.webapp.health_probe:
        url: "{{ base }}/health"
        run_in_check_mode: false
      register: outside_check

    - name: Record whether the last probe was skipped
      ansible.builtin.copy:
        dest: "{{ out_dir }}/outside_check.json"
        content: "{{ outside_check | to_json }}"
        mode: "0600"
      check_mode: false
      changed_when: false
"""


@pytest.fixture()
def app():
    server = App()
    yield server
    server.close()


def run_playbook(workdir, app, *options):
    return Playbook(workdir).run(PLAYBOOK, dict(base=app.url(""), smoke_password=PASSWORD, out_dir=str(workdir)),
                                 "-vvv", *options, timeout=300)


@pytest.mark.parametrize("check_mode", [False, True], ids=["real", "check"])
def test_health_probe_in_a_playbook(app, tmp_path, check_mode):
    proc = run_playbook(tmp_path, app, *(["--check"] if check_mode else []))
    output = proc.stdout
    assert proc.returncode == 0
    counts = recap(output)
    assert counts["failed"] == 0 and counts["ignored"] == 1 and counts["changed"] == 0
    assert app.token not in output and PASSWORD not in output
    assert "********" in output
    outside_check = json.loads((tmp_path / "outside_check.json").read_text())
    if check_mode:
        assert outside_check.get("skipped") is True and counts["skipped"] == 1
    else:
        assert not outside_check.get("skipped") and outside_check["status"] == 200 and counts["skipped"] == 0
    # every probe but the skipped one reached the app
    assert app.hits["/health"] == 2 + 3 + 1 + (0 if check_mode else 1)
