"""The notify role run by ansible-playbook (from the project's venv) against a real HTTP endpoint on
loopback: one message per target per play, a failing endpoint only warns (the play goes on and the
recap shows failed=0), check mode sends nothing, and no webhook URL secret appears in the output,
even at -vvv."""

import json

import pytest

from helpers.playbooks import Playbook, recap
from helpers.webhook_receiver import WebhookReceiver

SLACK_SECRET = "s3cr3t-xyz"
TEAMS_SECRET = "sig-teams-7a6b5c4d"
HOOK_SECRET = "s3cr3t-hook-0f1e2d"
TOKEN = "Bearer tok-1a2b3c4d5e"
SECRETS = (SLACK_SECRET, TEAMS_SECRET, HOOK_SECRET, TOKEN)

PLAYBOOK = """\
---
- name: A deploy that notifies
  hosts: app
  gather_facts: false
  tasks:
    - name: Notify the start
      ansible.builtin.include_role:
        name: safeship.webapp.notify
      vars:
        notify_event: start
        notify_app: shop
        notify_environment: production
        notify_version: "1.4.2"
        notify_deploy_id: "20240501T101500Z"
        notify_user: alice
        notify_retries: 0
        notify_timeout: 2

    - name: The deploy itself
      ansible.builtin.copy:
        dest: "{{ marker_dir }}/{{ inventory_hostname }}.deployed"
        content: "1.4.2\\n"
        mode: "0644"

    - name: Notify the success
      ansible.builtin.include_role:
        name: safeship.webapp.notify
      vars:
        notify_event: success
        notify_app: shop
        notify_environment: production
        notify_version: "1.4.2"
        notify_duration: 42.5
        notify_details:
          migrations: 3
        notify_retries: 0
        notify_timeout: 2

    - name: Reached after every notification
      ansible.builtin.copy:
        dest: "{{ marker_dir }}/{{ inventory_hostname }}.finished"
        content: "done\\n"
        mode: "0644"
"""


@pytest.fixture()
def receiver():
    with WebhookReceiver() as server:
        yield server


@pytest.fixture()
def workdir(tmp_path):
    (tmp_path / "markers").mkdir()
    return tmp_path


def run_playbook(workdir, extra_vars, *options):
    # localhost outside the play's group, two app hosts in it
    playbook = Playbook(workdir, groups={"ungrouped": ("localhost",), "app": ("app1", "app2")})
    return playbook.run(PLAYBOOK, dict(extra_vars, marker_dir=str(workdir / "markers")), *options, timeout=300)


def assert_no_secret(output):
    for secret in SECRETS:
        assert secret not in output, "secret %r in ansible-playbook output" % secret


def targets(receiver):
    return dict(
        notify_service="slack",
        notify_url=receiver.url("/services/T000/B000/" + SLACK_SECRET),
        notify_targets=[
            dict(service="teams", url=receiver.url("/workflows/1/invoke?sig=" + TEAMS_SECRET, mode="error")),
            dict(service="webhook", url=receiver.url("/hooks/" + HOOK_SECRET, mode="close"),
                 headers={"Authorization": TOKEN}),
            dict(service="mattermost", url=receiver.url("/hooks/mm-" + SLACK_SECRET),
                 channel="deploys", username="safeship"),
        ])


def test_role_posts_once_per_target_and_a_failing_endpoint_never_fails_the_play(receiver, workdir):
    proc = run_playbook(workdir, targets(receiver), "-vvv")
    output = proc.stdout
    assert proc.returncode == 0
    for host in ("app1", "app2"):
        assert recap(output, host)["failed"] == 0
        assert (workdir / "markers" / (host + ".finished")).exists()
    # two notifications (start, success) x four targets, once per play (run_once), not per host
    paths = [r.path for r in receiver.received()]
    assert len(paths) == 8
    slack = [r.json for r in receiver.received("/services/T000/B000/" + SLACK_SECRET)]
    assert [p["text"] for p in slack] == ["Deploy started: shop 1.4.2 (production)",
                                          "Deploy succeeded: shop 1.4.2 (production)"]
    assert "*By*\\nalice" in json.dumps(slack[0])
    teams = receiver.received("/workflows/1/invoke")
    assert len(teams) == 2 and teams[0].json["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    hook = receiver.received("/hooks/" + HOOK_SECRET)
    assert len(hook) == 2 and hook[0].headers["Authorization"] == TOKEN
    assert hook[0].json["deploy_id"] == "20240501T101500Z" and hook[0].json["user"] == "alice"
    assert hook[1].json["extra"] == {"migrations": 3} and hook[1].json["duration"] == 42.5
    mattermost = receiver.received("/hooks/mm-" + SLACK_SECRET)
    assert [m.json["channel"] for m in mattermost] == ["deploys", "deploys"]
    # the failing endpoints are warnings naming only scheme://host:port/…
    endpoint = "http://127.0.0.1:%d/…" % receiver.port
    assert "[WARNING]: the teams notification for event 'start' was not sent to %s: HTTP 500" % endpoint in output
    assert "[WARNING]: the webhook notification for event 'success' was not sent to %s: connection closed" % endpoint \
        in output
    # by default (notify_no_log) the results are hidden, but not the warnings
    assert "the output has been hidden due to the fact that 'no_log: true' was specified" in output
    assert_no_secret(output)


def test_role_in_check_mode_sends_nothing_and_shows_no_url_even_without_no_log(receiver, workdir):
    # notify_no_log: false shows every result in full at -vvv: the URLs must still not be there
    proc = run_playbook(workdir, dict(targets(receiver), notify_no_log=False), "--check", "-vvv")
    assert_no_secret(proc.stdout)
    assert proc.returncode == 0
    assert recap(proc.stdout, "app1")["failed"] == 0
    assert receiver.received() == []
    assert "changed: [app1 -> localhost] => (item=slack start) => {" in proc.stdout
    assert "the output has been hidden" not in proc.stdout
    assert '"text": "Deploy started: shop 1.4.2 (production)"' in proc.stdout  # the payload is shown
    assert '"endpoint": "http://127.0.0.1:%d/…"' % receiver.port in proc.stdout


def test_role_without_a_url_does_nothing(receiver, workdir):
    proc = run_playbook(workdir, {}, "-v")
    assert proc.returncode == 0
    summary = recap(proc.stdout, "app1")
    # only the deploy's own two files changed; both notification tasks were skipped
    assert summary["failed"] == 0 and summary["changed"] == 2 and summary["skipped"] == 2
    assert receiver.received() == []
    assert (workdir / "markers" / "app1.finished").exists()


def test_role_fail_on_error_fails_the_play_without_the_secret(receiver, workdir):
    extra = dict(notify_service="slack", notify_url=receiver.url("/services/T000/B000/" + SLACK_SECRET, mode="error"),
                 notify_fail_on_error=True)
    proc = run_playbook(workdir, extra, "-v")
    assert proc.returncode != 0
    assert recap(proc.stdout, "app1")["failed"] == 1
    assert "was not sent to http://127.0.0.1:%d/…: HTTP 500" % receiver.port in proc.stdout
    assert not (workdir / "markers" / "app1.deployed").exists()  # failed at the start notification
    assert len(receiver.received()) == 1
    assert_no_secret(proc.stdout)


def test_role_rejects_an_unknown_service_before_posting(receiver, workdir):
    extra = dict(notify_targets=[dict(service="discord", url=receiver.url("/hooks/" + HOOK_SECRET))])
    proc = run_playbook(workdir, extra)
    assert proc.returncode != 0
    assert "discord" in proc.stdout and "slack, mattermost, teams, webhook" in proc.stdout
    assert receiver.received() == []
    assert_no_secret(proc.stdout)
