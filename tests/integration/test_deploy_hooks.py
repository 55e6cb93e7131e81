"""deploy.yml's ansistrano-style hooks and notifications, for real (Node fixture app, pm2, PostgreSQL): the
user's task files run at every point of the deploy, in order, with the release id, app root and previous
release; a hook that fails after the switch rolls the deploy back; the notify role posts the outcome
(success, then rollback) without ever showing the webhook's URL; bad hook settings are refused before
anything changes."""

import json
import os

import pytest

from helpers.deploy_site import NodeSite
from helpers.releases import current_of
from helpers.webhook_receiver import WebhookReceiver

from . import seed

POINTS = ["preflight", "lock", "backup", "build", "migrate", "switch", "verify", "finish"]
SECRET_PATH = "/services/T000/B000/hook-s3cr3t"

HOOK = """\
---
- name: Hook | Note the point
  ansible.builtin.lineinfile:
    path: "{{ hook_log }}"
    line: "{{ deploy_hook_point }} {{ deploy_hook_release_id }} {{ deploy_hook_previous | default('-', true) }}"
    create: true
    mode: "0600"
"""

FAILING_HOOK = """\
---
- name: Hook | The smoke test of this team fails
  ansible.builtin.fail:
    msg: "custom smoke test: /checkout answered 500"
"""


@pytest.fixture()
def site(tmp_path, postgres_server, unique_name):
    seed.seed_postgres(postgres_server, unique_name, users=5, orders=5, invoices=1)
    site = NodeSite(tmp_path, postgres_server, unique_name)
    yield site
    site.close()


def test_hooks_run_at_every_point_and_a_failing_one_rolls_back(site, tmp_path):
    hook, failing, log = tmp_path / "hook.yml", tmp_path / "failing.yml", str(tmp_path / "hooks.log")
    hook.write_text(HOOK)
    failing.write_text(FAILING_HOOK)
    hooks = dict(("%s_%s" % (when, point), [str(hook)]) for point in POINTS for when in ("before", "after"))

    with WebhookReceiver() as receiver:
        notify = dict(deploy_notify=True, notify_service="slack", notify_url=receiver.url(SECRET_PATH))
        ok = site.deploy("r1", "1.0.0", deploy_hooks=hooks, hook_log=log, **notify)
        assert ok.returncode == 0, ok.stdout[-4000:]
        with open(log) as handle:
            lines = handle.read().split("\n")
        points = [line.split()[0] for line in lines if line]
        expected = [w + "_" + p for p in POINTS for w in ("before", "after")]
        assert points == expected
        assert all(line.split()[1:] == ["r1", "-"] for line in lines[:2] if line)

        # r2: a team's hook after the switch fails - the deploy goes back to r1 by itself
        bad = site.deploy("r2", "2.0.0", deploy_hooks=dict(after_switch=[str(failing)]), **notify)
        assert bad.returncode != 0
        assert "custom smoke test: /checkout answered 500" in bad.stdout
        assert current_of(site.roots["localhost"]) == "r1" and site.served() == (200, "1.0.0")
        assert site.last_report()["status"] == "rolled_back"

        events = [r.json for r in receiver.requests if r.json]
        texts = [json.dumps(e) for e in events]
        assert len(events) == 2
        assert "r1" in texts[0] and "success" in texts[0].lower()
        assert "r2" in texts[1] and "roll" in texts[1].lower()
    assert "hook-s3cr3t" not in ok.stdout + bad.stdout


@pytest.mark.parametrize("hooks, message", [
    (dict(before_deploy=["/x.yml"]), "unknown points: before_deploy"),
    (dict(after_build="/x.yml"), "each value must be a list of paths"),
])
def test_bad_hook_settings_are_refused_before_anything_changes(site, hooks, message):
    proc = site.deploy("r1", "1.0.0", deploy_hooks=hooks)
    assert proc.returncode != 0 and message in proc.stdout
    assert not os.path.exists(site.roots["localhost"])


def test_a_host_pattern_that_matches_nothing_fails_instead_of_doing_nothing(site):
    proc = site.deploy("r1", "1.0.0", deploy_hosts="shop_ap")
    assert proc.returncode != 0 and "shop_ap matches no host of the inventory" in proc.stdout
    assert not os.path.exists(site.roots["localhost"])
