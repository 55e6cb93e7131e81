"""The example inventories (inventories/prod, inventories/staging) and the demo's: they parse with
ansible-inventory into the groups and hosts their comments describe, every variable they set is one the
collection documents (a role option, an Ansible connection variable, a vault_* secret or a playbook
variable of a short explicit list), no secret is written in plain text, and each application group has
the shape it is there to show. The checks also run on broken copies, so a typo'd variable or a plain
password is proven to fail them."""

import concurrent.futures
import glob
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from helpers.modules import REPO, ensure_collection_path
from helpers.paths import venv_tool
from helpers.playbooks import Playbook, ansible_env

INVENTORIES = os.path.join(REPO, "inventories")

# Variables of the playbooks themselves (not of a role), which an inventory may set: grep
# playbooks/*.yml for `| default(` on names no argument spec has. Each must still appear in playbooks/.
PLAYBOOK_VARIABLES = {
    "scheduled_backup_label",  # backup.yml
    "restore_confirm_environments",  # restore.yml
    "restore_drill_databases", "restore_drill_connection", "restore_drill_backup_dest",  # restore_drill.yml
    "restore_drill_label", "restore_drill_report_file",
    "staging_refresh_source", "staging_refresh_target", "staging_refresh_backup",  # staging_refresh.yml
    "staging_refresh_backup_dir", "staging_refresh_backup_label", "staging_refresh_keep",
    "staging_refresh_tables", "staging_refresh_tolerance", "staging_refresh_release_dir",
    "staging_refresh_database_url", "staging_refresh_prisma_environment", "staging_refresh_no_owner",
    "staging_refresh_jobs", "staging_refresh_report_dir",
}

# Documented variables that must not be set in an inventory: a play's `hosts:` and `serial:` are
# resolved before inventory variables are read (a value here would be ignored, and the deploy plan
# would print it as if it applied), and the rest are per-run answers - a confirmation or a release id
# written in group_vars would confirm every future run.
NOT_IN_AN_INVENTORY = {
    "deploy_hosts": "the play's hosts: (give it with -e)",
    "backup_hosts": "the play's hosts: (give it with -e)",
    "restore_drill_hosts": "the play's hosts: (give it with -e)",
    "staging_refresh_hosts": "the play's hosts: (give it with -e)",
    "deploy_serial": "the play's serial: (give it with -e)",
    "deploy_release_id": "one release per run (-e)",
    "confirm": "a per-run confirmation (-e)",
    "restore_names": "a per-run choice (-e)",
    "restore_backup": "a per-run choice (-e)",
    "staging_refresh_confirm": "a per-run confirmation (-e)",
    "rollback_confirm": "a per-run confirmation (-e confirm=)",
    "restore_confirm": "a per-run confirmation (-e confirm=)",
    "rollback_restore_db": "a per-run decision (-e)",
    "rollback_to": "a per-run choice (-e)",
    "rollback_from": "a per-run choice (-e)",
}

# The demo inventory's own variables (playbooks/demo_restore.yml, and demo_dir under which everything
# of the demo lives); allowed in inventories/demo only.
DEMO_VARIABLES = {"demo_dir", "demo_sample_sql", "demo_database", "demo_backup_dir", "demo_critical_tables",
                  "demo_backup_keep"}

# group -> every host in it (children included)
EXPECTED = {
    "prod": {
        "shop": {"app1", "app2", "db1"}, "shop_app": {"app1", "app2"}, "shop_db": {"db1"},
        "billing": {"billing-app1", "billing-app2", "billing-db1"},
        "billing_app": {"billing-app1", "billing-app2"}, "billing_db": {"billing-db1"},
        "ledger": {"ledger-app1", "ledger-app2", "ledger-db1"},
        "ledger_app": {"ledger-app1", "ledger-app2"}, "ledger_db": {"ledger-db1"},
        "portal": {"portal1-api", "portal2-api", "portal1-web", "portal2-web", "portal-db1"},
        "portal_backend": {"portal1-api", "portal2-api", "portal-db1"},
        "portal_api": {"portal1-api", "portal2-api"}, "portal_web": {"portal1-web", "portal2-web"},
        "portal_db": {"portal-db1"},
        "db": {"db1", "billing-db1", "ledger-db1", "portal-db1"},
    },
    "staging": {
        "shop": {"app1", "db1"}, "shop_app": {"app1"}, "shop_db": {"db1"},
        "billing": {"billing-app1", "billing-db1"}, "billing_app": {"billing-app1"}, "billing_db": {"billing-db1"},
        "ledger": {"ledger-app1", "ledger-db1"}, "ledger_app": {"ledger-app1"}, "ledger_db": {"ledger-db1"},
        "portal": {"portal1-api", "portal1-web", "portal-db1"}, "portal_backend": {"portal1-api", "portal-db1"},
        "portal_api": {"portal1-api"}, "portal_web": {"portal1-web"}, "portal_db": {"portal-db1"},
        "db": {"db1", "billing-db1", "ledger-db1", "portal-db1"},
    },
    # the deploy demo (app) and the restore demo (demo), both on this machine
    "demo": {"app": {"localhost"}, "demo": {"localhost"}},
}
APP_GROUPS = {"shop_app": "laravel", "billing_app": "laravel", "ledger_app": "prisma", "portal_api": "node",
              "portal_web": "node"}
ENVIRONMENT = {"prod": "production", "staging": "staging"}

SECRET_WORDS = re.compile(r"password|passwd|secret|token|key", re.I)
# names that hold the word but no secret: lists of env key names, a config key, paths to key files
NOT_SECRETS = {"deploy_required_env_keys", "preflight_env_keys", "preflight_required_env_keys",
               "laravel_version_config_key", "ssl_key", "ansible_ssh_private_key_file", "ansible_private_key_file"}
VAULT_REFERENCE = re.compile(r"^\{\{\s*vault_[a-z0-9_]+\s*(\|[^{}]*)?\}\}$")
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@", re.I)
VAR_FILE_SUFFIXES = ("", ".yml", ".yaml", ".json")
ENCRYPTED = "(an inline !vault value)"


class _Loader(yaml.SafeLoader):
    """YAML as Ansible reads inventory files, with its !vault and !unsafe tags."""


_Loader.add_constructor("!vault", lambda loader, node: ENCRYPTED)
_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def _load(path):
    with open(path) as handle:
        text = handle.read()
    if text.startswith("$ANSIBLE_VAULT;"):
        return None  # an encrypted vault file: its values cannot be read here
    return yaml.load(text, Loader=_Loader) or {}


def argument_specs():
    """option name -> its argument spec (every role, every entry point)."""
    options = {}
    for path in sorted(glob.glob(os.path.join(REPO, "roles", "*", "meta", "argument_specs.yml"))):
        with open(path) as handle:
            for entry in yaml.safe_load(handle)["argument_specs"].values():
                for name, spec in (entry.get("options") or {}).items():
                    options.setdefault(name, spec)
    return options


OPTIONS = argument_specs()


def variable_files(inventory):
    """The group_vars and host_vars files Ansible loads (vault.yml.example is not one: no such suffix)."""
    found = []
    for kind in ("group_vars", "host_vars"):
        for path in sorted(glob.glob(os.path.join(inventory, kind, "**"), recursive=True)):
            if os.path.isfile(path) and os.path.splitext(path)[1] in VAR_FILE_SUFFIXES:
                found.append(path)
    return found


def _inline_variables(node, where):
    """(where, name, value) of the variables written in hosts.yml: hosts' and groups' vars."""
    for host, variables in ((node or {}).get("hosts") or {}).items():
        for name, value in (variables or {}).items():
            yield "%s host %s" % (where, host), name, value
    for name, value in ((node or {}).get("vars") or {}).items():
        yield where, name, value
    for group, child in ((node or {}).get("children") or {}).items():
        yield from _inline_variables(child, "%s group %s" % (where, group))


def defined_variables(inventory):
    """(where, name, value) of every variable the inventory sets, file by file."""
    found = []
    for path in sorted(glob.glob(os.path.join(inventory, "*.yml")) + glob.glob(os.path.join(inventory, "*.yaml"))):
        for _group, node in (_load(path) or {}).items():
            found.extend(_inline_variables(node, os.path.relpath(path, REPO)))
    for path in variable_files(inventory):
        data = _load(path)
        if data is None:
            continue
        assert isinstance(data, dict), "%s: not a mapping of variables" % path
        found.extend((os.path.relpath(path, REPO), name, value) for name, value in data.items())
    return found


def undocumented(inventory, name_of_inventory):
    """'file: name (why)' of each variable that is not documented, or not for an inventory."""
    allowed = set(OPTIONS) | PLAYBOOK_VARIABLES | (DEMO_VARIABLES if name_of_inventory == "demo" else set())
    problems = []
    for where, name, _value in defined_variables(inventory):
        if name in NOT_IN_AN_INVENTORY:
            problems.append("%s: %s is %s, not an inventory variable" % (where, name, NOT_IN_AN_INVENTORY[name]))
        elif not (name in allowed or name.startswith("ansible_") or name.startswith("vault_")):
            problems.append("%s: %s is no role option, playbook variable, ansible_* or vault_* name" % (where, name))
    return problems


def _walk(value, key=None, path=""):
    """(path, key, scalar) of every scalar in a value, with the nearest mapping key above it."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _walk(item, str(name), "%s.%s" % (path, name) if path else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, key, "%s[%d]" % (path, index))
    else:
        yield path, key, value


def plain_secrets(inventory):
    """'file: path' of each value that looks like a secret and is not a vault reference."""
    problems = []
    for where, name, value in defined_variables(inventory):
        for path, key, scalar in _walk(value, name, name):
            if isinstance(scalar, bool) or scalar is None:
                continue
            text = str(scalar)
            vaulted = VAULT_REFERENCE.match(text) or text == ENCRYPTED
            if key not in NOT_SECRETS and SECRET_WORDS.search(key) and not vaulted:
                problems.append("%s: %s is not a {{ vault_... }} reference" % (where, path))
            for password in URL_CREDENTIALS.findall(text):
                if "vault_" not in password:
                    problems.append("%s: %s holds a URL with a password that is no vault reference" % (where, path))
    return problems


def vault_references(inventory):
    names = set()
    for _where, _name, value in defined_variables(inventory):
        for _path, _key, scalar in _walk(value):
            names.update(re.findall(r"\bvault_[a-z0-9_]+", str(scalar)))
    return names


def wrong_types(hostvars):
    """'host: error' for each role option whose value is not what its argument spec takes (types,
    choices, suboptions - a typo'd key inside node_pm2_apps, say). A value that is a template, or a
    template inside a value where the spec wants a number or a boolean, is left to the roles at run
    time (their message quotes the template)."""
    problems = []
    for host, variables in sorted(hostvars.items()):
        for name, value in sorted(variables.items()):
            if name not in OPTIONS or (isinstance(value, str) and "{{" in value):
                continue
            spec = {key: item for key, item in OPTIONS[name].items() if key not in ("required", "default")}
            result = ArgumentSpecValidator({name: spec}).validate({name: value})
            problems.extend("%s: %s" % (host, message) for message in result.error_messages if "{{" not in message)
    return problems


def ansible_inventory(inventory):
    env = ansible_env(ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true")
    # --list does not template, so the vault_* variables may stay undefined (no vault.yml is committed)
    argv = [venv_tool("ansible-inventory"), "-i", inventory, "--list"]
    process = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert process.returncode == 0, "ansible-inventory -i %s: %s" % (inventory, process.stderr)
    return json.loads(process.stdout)


def members(listing):
    """group -> every host in it, children included."""
    def hosts_of(group, seen=()):
        node = listing.get(group, {})
        found = set(node.get("hosts", []))
        for child in node.get("children", []):
            if child not in seen:
                found |= hosts_of(child, seen + (group,))
        return found
    return {group: hosts_of(group) for group in listing if group != "_meta"}


_LISTINGS = {}


def listing(name):
    if name not in _LISTINGS:
        ensure_collection_path()
        _LISTINGS[name] = ansible_inventory(os.path.join(INVENTORIES, name))
    return _LISTINGS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_it_parses_into_the_groups_and_hosts_it_describes(name):
    groups = members(listing(name))
    for group, hosts in EXPECTED[name].items():
        assert groups.get(group) == hosts, "%s: group %s has %s, expected %s" % (name, group, groups.get(group), hosts)
    if name != "demo":
        # no `app` group: a playbook run without -e deploy_hosts matches no host rather than every app
        assert "app" not in groups
        assert set(groups) - {"all", "ungrouped"} == set(EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_variable_is_documented(name):
    assert undocumented(os.path.join(INVENTORIES, name), name) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_secret_in_plain_text(name):
    assert plain_secrets(os.path.join(INVENTORIES, name)) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_role_options_have_the_types_and_choices_of_their_specs(name):
    assert wrong_types(listing(name)["_meta"]["hostvars"]) == []


@pytest.mark.parametrize("name", sorted(ENVIRONMENT))
def test_the_vault_example_names_every_secret_and_only_fake_values(name):
    inventory = os.path.join(INVENTORIES, name)
    example = _load(os.path.join(inventory, "group_vars", "all", "vault.yml.example"))
    assert set(example) == vault_references(inventory)
    assert [key for key, value in example.items() if "CHANGE-ME" not in str(value)] == []
    # the example is documentation, never loaded: no host gets its fake values
    assert [host for host, variables in listing(name)["_meta"]["hostvars"].items()
            if any(key.startswith("vault_") for key in variables)] == []


def test_the_lists_of_playbook_variables_name_variables_that_exist():
    playbooks = ""
    for path in glob.glob(os.path.join(REPO, "playbooks", "**", "*.yml"), recursive=True):
        with open(path) as handle:
            playbooks += handle.read()
    demo = ""
    for path in glob.glob(os.path.join(INVENTORIES, "demo", "**", "*.yml"), recursive=True):
        with open(path) as handle:
            demo += handle.read()
    missing = [name for name in sorted(PLAYBOOK_VARIABLES | set(NOT_IN_AN_INVENTORY))
               if name not in OPTIONS and not re.search(r"\b%s\b" % name, playbooks)]
    missing += [name for name in sorted(DEMO_VARIABLES)
                if not re.search(r"\b%s\b" % name, playbooks) and not re.search(r"\{\{[^}]*\b%s\b" % name, demo)]
    assert missing == []
    assert PLAYBOOK_VARIABLES & set(OPTIONS) == set()


@pytest.mark.parametrize("name", sorted(ENVIRONMENT))
def test_each_application_group_has_its_shape(name):
    hostvars = listing(name)["_meta"]["hostvars"]
    groups = members(listing(name))

    def each(group):
        return [hostvars[host] for host in sorted(groups[group])]

    def one(group, variable):
        values = {json.dumps(host.get(variable), sort_keys=True) for host in each(group)}
        assert len(values) == 1, "%s: %s differs between the hosts of %s" % (name, variable, group)
        return json.loads(values.pop())

    def engine(group):
        return one(group, "backup_connection")["engine"]

    # one application per inventory host: a host in two app groups would get one group's variables
    # whichever group a run targets
    in_app_groups = [host for group in APP_GROUPS for host in groups[group]]
    assert len(in_app_groups) == len(set(in_app_groups))
    roots = {}
    for group, stack in APP_GROUPS.items():
        assert one(group, "deploy_stack") == stack
        roots[group] = one(group, "laravel_app_root" if stack == "laravel" else "node_pm2_app_root")
        assert roots[group].startswith("/")
        if stack != "laravel":
            assert one(group, "node_pm2_apps")
        for host in each(group):
            assert host["deploy_environment"] == ENVIRONMENT[name]
            assert host.get("prisma_deploy_environment", ENVIRONMENT[name]) == ENVIRONMENT[name]
            backup_host = host.get("deploy_backup_host")
            assert backup_host is None or backup_host in groups["db"]
    assert len(set(roots.values())) == len(roots)

    # (a) Laravel multi-tenant, PostgreSQL: tenants migrated from the central database, workers, scheduler
    assert one("shop_app", "laravel_tenants_migrate") is True
    assert one("shop_app", "laravel_tenants_query") or one("shop_app", "laravel_tenants")
    assert one("shop_app", "laravel_tenant_db")
    assert one("shop_app", "laravel_supervisor_programs") and one("shop_app", "laravel_scheduler") is True
    assert one("shop_app", "laravel_nginx_site") is True and one("shop_app", "laravel_php_fpm_socket")
    assert engine("shop_app") == "postgresql" and len(one("shop_app", "backup_databases")) > 1
    # (b) Laravel on MySQL/MariaDB with supervisor workers
    assert engine("billing_app") == "mysql" and one("billing_app", "laravel_supervisor_programs")
    # (c) Node + Prisma + pm2 on PostgreSQL
    assert engine("ledger_app") == "postgresql"
    assert [key for key in hostvars[sorted(groups["ledger_app"])[0]] if key.startswith("prisma_")]
    # (d) two Node code bases on the same machines, each its own inventory host and app root
    machines = {group: sorted(hostvars[host]["ansible_host"] for host in groups[group])
                for group in ("portal_api", "portal_web")}
    assert machines["portal_api"] == machines["portal_web"]
    apps = [app["name"] for group in ("portal_api", "portal_web") for app in one(group, "node_pm2_apps")]
    ports = [app["port"] for group in ("portal_api", "portal_web") for app in one(group, "node_pm2_apps")]
    assert len(set(apps)) == len(apps) and len(set(ports)) == len(ports)
    assert "backup_databases" not in hostvars[sorted(groups["portal_web"])[0]]

    # every database host backs up its application's databases (backup.yml, restore_drill.yml)
    for host in groups["db"]:
        assert hostvars[host].get("backup_databases"), "%s: %s has no backup_databases" % (name, host)

    # the staging refresh belongs to staging; staging posts elsewhere
    refresh = {host for host, variables in hostvars.items() if "staging_refresh_source" in variables}
    assert refresh == (groups["ledger_app"] if name == "staging" else set())


def _playbook_check(name, playbook, workdir, *extra):
    """ansible-playbook --check of one of the project's playbooks on the inventory, every host's address
    turned into a closed local port: the tasks that run on the controller (argument specs, the playbooks'
    and roles' own checks) run for real, the first task that needs a host finds it unreachable.
    Returns the process and the PLAY RECAP counters by host."""
    inventory = os.path.join(INVENTORIES, name)
    process = Playbook(workdir, inventory=inventory).run_file(
        os.path.join(REPO, "playbooks", playbook), None,
        "-e", "@" + os.path.join(inventory, "group_vars", "all", "vault.yml.example"),
        "-e", "ansible_host=127.0.0.1", "-e", "ansible_port=1", "--check", *extra, timeout=300)
    counters = {host: dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", line))
                for host, line in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", process.stdout, re.MULTILINE)}
    return process, counters


@pytest.fixture(scope="module")
def deploy_checks(tmp_path_factory):
    """inventory -> (process, counters) of deploy.yml --check on every app group, both inventories at once."""
    ensure_collection_path()
    workdir = str(tmp_path_factory.mktemp("deploy-checks"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = {name: pool.submit(_playbook_check, name, "deploy.yml", os.path.join(workdir, name),
                                  "-e", "deploy_release_id=v2.4.0", "-e", "deploy_hosts=" + ":".join(sorted(APP_GROUPS)))
                for name in sorted(ENVIRONMENT)}
        return {name: future.result() for name, future in runs.items()}


@pytest.mark.parametrize("name", sorted(ENVIRONMENT))
def test_the_deploy_accepts_every_application_group(name, deploy_checks):
    # every app host passes the deploy role's argument spec and its checks (stack, app root, hooks, a
    # backup to restore when deploy_restore_db_on_failure) and stops at its first remote task only
    process, counters = deploy_checks[name]
    groups = members(listing(name))
    # localhost runs the playbook's first play only: the check that the host pattern matches hosts
    assert counters.pop("localhost", {}).get("failed", 0) == 0, process.stdout[-3000:]
    assert set(counters) == set().union(*(groups[group] for group in APP_GROUPS)), process.stdout[-3000:]
    assert [host for host, count in counters.items() if count["failed"] or count["unreachable"] != 1] == [], \
        process.stdout[-3000:]


def test_prod_and_staging_post_to_different_channels():
    channels = {name: {variables.get("notify_channel") for variables in listing(name)["_meta"]["hostvars"].values()}
                for name in ENVIRONMENT}
    assert len(channels["prod"]) == len(channels["staging"]) == 1
    assert channels["prod"] != channels["staging"]


# ---- the checks fail on what they are there to catch ------------------------------------------------

def _broken_copy(tmp_path, group_file, text):
    inventory = str(tmp_path / "prod")
    shutil.copytree(os.path.join(INVENTORIES, "prod"), inventory)
    with open(os.path.join(inventory, "group_vars", group_file), "a") as handle:
        handle.write(text)
    return inventory


def test_a_typo_in_a_variable_name_is_caught(tmp_path):
    inventory = _broken_copy(tmp_path, "shop_app.yml", "laravel_tenats_query: SELECT id FROM tenants\n")
    problems = undocumented(inventory, "prod")
    assert len(problems) == 1
    assert problems[0].endswith("group_vars/shop_app.yml: laravel_tenats_query is no role option, playbook "
                                "variable, ansible_* or vault_* name")


def test_a_per_run_answer_in_group_vars_is_caught(tmp_path):
    inventory = _broken_copy(tmp_path, "ledger_app.yml", "deploy_serial: 2\nconfirm: ledger\n")
    problems = undocumented(inventory, "prod")
    assert len(problems) == 2
    assert "deploy_serial is the play's serial: (give it with -e)" in problems[0]
    assert "confirm is a per-run confirmation (-e)" in problems[1]


@pytest.mark.parametrize("text, where", [
    ("laravel_maintenance_secret: letmein\n", "laravel_maintenance_secret"),
    ("laravel_env:\n  APP_KEY: base64:c2VjcmV0\n", "laravel_env.APP_KEY"),
    ("backup_connection:\n  login_password: hunter2\n", "backup_connection.login_password"),
    ("node_pm2_env:\n  DATABASE_URL: postgresql://shop:hunter2@db1/shop\n", "node_pm2_env.DATABASE_URL"),
    ("deploy_smoke_checks:\n  - steps:\n      - json_body: {password: hunter2}\n",
     "deploy_smoke_checks[0].steps[0].json_body.password"),
])
def test_a_plain_secret_is_caught(tmp_path, text, where):
    inventory = _broken_copy(tmp_path, "shop_app.yml", text)
    problems = plain_secrets(inventory)
    assert len(problems) == 1 and (": %s " % where) in problems[0]


def test_a_wrong_type_or_a_typo_inside_an_option_is_caught():
    problems = wrong_types({"app1": {
        "laravel_maintenance": "sometimes",
        "node_pm2_apps": [{"name": "api", "script": "dist/server.js", "helth_path": "/health",
                           "port": "{{ api_port | int }}"}],
        "laravel_supervisor_programs": [{"name": "worker", "command": ["{{ laravel_php_binary }}", "artisan"],
                                         "stopwaitsec": 30}],
        "laravel_tenant_db": "{{ backup_connection }}",
    }})
    assert len(problems) == 3, problems
    assert "laravel_maintenance" in problems[0] and "sometimes" in problems[0]
    assert "stopwaitsec" in problems[1]
    assert "helth_path" in problems[2]
