"""The option names renamed for one meaning per name across the collection still work, with Ansible's
deprecation (removal in 2.0.0): migration_status and prisma_migrate `environment` (now `env`), tenant_migrate's
`environment` alias of `env`, notify's `retry_delay` (now `delay`) - run as Ansible runs a module, and through
ansible-playbook with module_defaults of the action groups, where a playbook written for the old names keeps
running and says what to change."""

import pytest

from helpers.playbooks import Playbook, succeeded
from helpers.ports import free_port as closed_port

REMOVED_IN = "2.0.0"


def deprecations(result):
    """[(message, version, collection)] of a module result (ansible-core 2.19's shape, or the flat one before)."""
    found = []
    for item in result.get("deprecations") or []:
        message = (item.get("event") or item).get("msg")
        collection = (item.get("deprecator") or {}).get("resolved_name") or item.get("collection_name")
        found.append((message, item.get("version"), collection))
    return found


def alias_deprecated(name):
    return [("Alias '%s' is deprecated. See the module docs for more information" % name, REMOVED_IN,
             "safeship.webapp")]


@pytest.fixture()
def app(tmp_path):
    """A release directory with a Prisma CLI stand-in that prints what its environment got."""
    cli = tmp_path / "node_modules" / ".bin" / "prisma"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\necho \"Prisma schema loaded from prisma/schema.prisma (FLAVOUR=$FLAVOUR)\"\n"
                   "echo 'No migration found in prisma/migrations'\necho 'Database schema is up to date!'\n")
    cli.chmod(0o755)
    return str(tmp_path)


def migration_status_args(app, **env):
    return dict(tool="command", chdir=app, command=["sh", "-c", "echo PENDING_$FLAVOUR"],
                pending_regex=r"^PENDING_(?P<name>\S+)", **env)


def test_migration_status_environment_is_env(app, run_module):
    old = run_module("migration_status", migration_status_args(app, environment={"FLAVOUR": "vanilla"}))
    assert not old.get("failed"), old.get("msg")
    assert old["state"] == "pending" and old["pending"] == ["********"]  # env values are masked, as before
    assert deprecations(old) == alias_deprecated("environment")
    new = run_module("migration_status", migration_status_args(app, env={"FLAVOUR": "vanilla"}))
    assert new["state"] == "pending" and deprecations(new) == []
    both = run_module("migration_status", migration_status_args(app, env={"FLAVOUR": "a"}, environment={"FLAVOUR": "b"}))
    assert "Both option env and its alias environment are set." in [
        (item.get("event") or {}).get("msg", item) for item in both["warnings"]]


def test_prisma_migrate_environment_is_env(app, run_module):
    old = run_module("prisma_migrate", dict(chdir=app, command="status", environment={"FLAVOUR": "vanilla"}))
    assert not old.get("failed"), old.get("msg")
    assert old["state"] == "up_to_date" and "FLAVOUR=********" in old["stdout_tail"]
    assert deprecations(old) == alias_deprecated("environment")
    new = run_module("prisma_migrate", dict(chdir=app, command="status", env={"FLAVOUR": "vanilla"}))
    assert new["state"] == "up_to_date" and deprecations(new) == []


def test_tenant_migrate_environment_is_env(tmp_path, run_module):
    args = dict(tenants=["a"], database_template="app_{tenant}", command=["sh", "-c", "echo db=$DB_DATABASE"])
    old = run_module("tenant_migrate", dict(args, environment={"DB_DATABASE": "{database}"}))
    assert not old.get("failed"), old.get("msg")
    assert old["results"][0]["output_tail"] == "db=app_a"
    assert deprecations(old) == alias_deprecated("environment")
    new = run_module("tenant_migrate", dict(args, env={"DB_DATABASE": "{database}"}))
    assert new["results"][0]["output_tail"] == "db=app_a" and deprecations(new) == []


def test_notify_retry_delay_is_delay(run_module):
    args = dict(service="webhook", url="http://127.0.0.1:%d/hook" % closed_port(), event="start", retries=2)
    old = run_module("notify", dict(args, retry_delay=0.01))
    assert old["sent"] is False and old["tries"] == 3 and "connection refused" in old["error"]
    assert deprecations(old) == alias_deprecated("retry_delay")
    new = run_module("notify", dict(args, delay=0.01, timeout=2.5))
    assert new["tries"] == 3 and deprecations(new) == []
    assert old["executed_commands"] == new["executed_commands"] == []


def test_a_playbook_with_the_old_names_in_module_defaults_runs_and_says_what_to_change(app, tmp_path):
    """module_defaults of group/safeship.webapp.migrations set the old `environment` for all three migration
    modules; group/safeship.webapp.http sets timeout for both HTTP modules."""
    port = closed_port()
    playbook = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/safeship.webapp.migrations:
      chdir: %(app)s
      environment:
        FLAVOUR: vanilla
    group/safeship.webapp.http:
      timeout: 1.5
  tasks:
    - name: Status with the old option name
      safeship.webapp.migration_status:
        tool: command
        command: [sh, -c, "echo PENDING_$FLAVOUR"]
        pending_regex: '^PENDING_(\\S+)'
        fail_on: []
      register: status

    - name: Prisma with the old option name
      safeship.webapp.prisma_migrate:
        command: status
      register: prisma

    - name: Tenants with the old option name
      safeship.webapp.tenant_migrate:
        tenants: [a, b]
        command: [sh, -c, "echo {tenant}-$FLAVOUR"]
      register: tenants

    - name: A notification with the old option name
      safeship.webapp.notify:
        service: webhook
        url: http://127.0.0.1:%(port)d/hook
        event: start
        retries: 1
        retry_delay: 0.01
      register: note

    - name: Every module did its work
      ansible.builtin.assert:
        that:
          - status.state == 'pending'
          - prisma.state == 'up_to_date'
          - tenants.summary.ok == 2
          - note.tries == 2 and not note.sent
""" % dict(app=app, port=port)
    proc = succeeded(Playbook(tmp_path / "play").run(playbook))
    text = " ".join(proc.stdout.split())
    # (Ansible shows a deprecation once per run, however many tasks trigger it)
    for alias in ("environment", "retry_delay"):
        assert ("[DEPRECATION WARNING]: Alias '%s' is deprecated. See the module docs for more information. This "
                "feature will be removed from collection 'safeship.webapp' version 2.0.0." % alias) in text
