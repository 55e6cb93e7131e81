"""safeship.webapp under AWX / Ansible Automation Platform.

- The execution environment: `ansible-builder create` on execution-environment.yml (schema 3) writes a
  build context holding the system packages (bindep), the collection's tarball and the pinned
  ansible-core / ansible-runner; no image is built (no container engine runs here).
- The playbooks through ansible-runner's transmit / worker / process pipeline, from a private data dir
  laid out as AWX writes it (helpers/runner.py): scheduled backups and restore drills on SQLite, AWX's
  "Check" job type, a missing database failing the job with its name in the events, the workflow's
  notify step posting as the AWX user.
- The AWX objects in awx/: survey specs valid for AWX, asking only variables the playbooks use and never a
  password; job templates, schedules and the deploy workflow naming playbooks, surveys and templates that
  exist."""

import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile

import pytest
import yaml

from helpers.modules import REPO
from helpers.paths import VENV_BIN
from helpers.runner import failed_events, localhost_inventory, run_with_runner
from helpers.webhook_receiver import WebhookReceiver

from . import seed

AWX = os.path.join(REPO, "awx")
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}
# keys under which a YAML string is a bare Jinja expression
CONDITIONAL_KEYS = {"when", "that", "failed_when", "changed_when", "until"}
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
JINJA = re.compile(r"{{(.*?)}}|{%(.*?)%}", re.S)


def requirement_pins():
    pins = {}
    with open(os.path.join(REPO, "requirements-test.txt")) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[name.strip().lower()] = version.strip()
    return pins


def load_yaml(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


# --- the execution environment ------------------------------------------------------------------


def test_ansible_builder_writes_a_build_context_with_the_system_packages_and_the_collection(tmp_path):
    builder = os.path.join(VENV_BIN, "ansible-builder")
    assert os.path.exists(builder), "ansible-builder is not in .venv: pip install -r requirements-test.txt"
    definition = load_yaml("execution-environment.yml")
    assert definition["version"] == 3
    pins = requirement_pins()
    deps = definition["dependencies"]
    assert deps["ansible_core"]["package_pip"] == "ansible-core==" + pins["ansible-core"]
    assert deps["ansible_runner"]["package_pip"] == "ansible-runner==" + pins["ansible-runner"]

    # the definition as it is, beside a tarball built the way docs/awx.md says (into .build/ee)
    work = tmp_path / "checkout"
    (work / ".build" / "ee").mkdir(parents=True)
    for name in ("execution-environment.yml", "bindep.txt"):
        shutil.copy(os.path.join(REPO, name), str(work / name))
    subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path",
                    str(work / ".build" / "ee"), REPO], check=True, stdout=subprocess.PIPE)
    context = tmp_path / "context"
    proc = subprocess.run([builder, "create", "-f", str(work / "execution-environment.yml"), "--context", str(context),
                           "--output-filename", "Containerfile"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    assert "No matches" not in proc.stdout and "does not exist" not in proc.stdout

    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert "ansible-core==%s ansible-runner==%s" % (pins["ansible-core"], pins["ansible-runner"]) in containerfile
    assert "module enable -y postgresql:${POSTGRESQL_STREAM}" in containerfile
    assert "ARG POSTGRESQL_STREAM=15" in containerfile
    # the collection: one tarball, renamed to what the galaxy requirement installs, then installed
    assert "ansible-galaxy collection install" in containerfile and "-r requirements.yml" in containerfile
    assert 'mv "$1" /build/dist/safeship-webapp.tar.gz' in containerfile
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements == {"collections": [{"name": "/build/dist/safeship-webapp.tar.gz", "type": "file"}]}
    [tarball] = glob.glob(str(context / "_build" / "dist" / "safeship-webapp-*.tar.gz"))
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
        manifest = json.load(archive.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["namespace"] == "safeship" and manifest["collection_info"]["name"] == "webapp"
    assert {"plugins/modules/db_backup.py", "roles/backup/tasks/main.yml", "playbooks/backup.yml", "bindep.txt"} <= names
    assert not [n for n in names if n.startswith(("tests/", ".venv/", ".build/"))]

    # the system packages, for the EE's platform (rpm: CentOS Stream) and for Debian hosts
    bindep = (context / "_build" / "bindep.txt").read_text()
    assert "introspect.py introspect --user-bindep=bindep.txt" in containerfile
    packages = {}
    for line in bindep.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, rest = (line.split(None, 1) + [""])[:2]
            packages[name] = rest
    for package in ("zstd", "gzip", "rsync", "tar", "nodejs", "npm"):
        assert packages.get(package) == "", package      # every platform
    for package in ("postgresql", "mariadb", "sqlite", "git-core", "openssh-clients"):
        assert packages.get(package) == "[platform:rpm]", package
    for package in ("postgresql-client-15", "mariadb-client", "sqlite3", "git", "openssh-client"):
        assert packages.get(package) == "[platform:dpkg]", package
    # bindep itself reads the file (exit code 2: unparsable); on this Debian machine it picks the dpkg lines
    listed = subprocess.run([os.path.join(VENV_BIN, "bindep"), "-f", str(context / "_build" / "bindep.txt"),
                             "-l", "newline"], stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert listed.returncode in (0, 1), listed.stdout
    assert set(listed.stdout.split()) == set(n for n, p in packages.items() if p in ("", "[platform:dpkg]"))


# --- the playbooks through ansible-runner ---------------------------------------------------------


class SqliteSite(object):
    """An SQLite application database and the extra vars a backup job template would be launched with."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.database = str(tmp_path / "app" / "app.sqlite")
        os.makedirs(os.path.dirname(self.database))
        self.counts = seed.seed_sqlite(self.database, users=11, orders=23, invoices=5)
        self.dest = str(tmp_path / "backups")
        self.extravars = dict(
            backup_dest=self.dest,
            backup_databases=[dict(engine="sqlite", database=self.database, name="app", tables=sorted(self.counts))])
        self.inventory = localhost_inventory("db")

    def run(self, playbook, cmdline="", **more):
        return run_with_runner(self.tmp_path, playbook, dict(self.extravars, **more), self.inventory, cmdline=cmdline)


@pytest.fixture()
def site(tmp_path):
    return SqliteSite(tmp_path)


def events_named(events, name):
    return [e for e in events if e.get("event") == name]


def zstd_decompress(path, dest):
    with open(dest, "wb") as out:
        subprocess.run(["zstd", "-q", "-d", "-c", path], stdout=out, check=True)


def test_scheduled_backup_then_restore_drill_through_ansible_runner(site):
    # AWX's "Check" job type: the plan, and nothing written
    status, rc, stdout, events = site.run("playbooks/backup.yml", cmdline="--check")
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    assert not os.path.exists(site.dest)
    [dump] = [e for e in events_named(events, "runner_item_on_ok")
              if e["event_data"]["task"] == "Backup | Dump, verify and checksum each database"]
    assert dump["event_data"]["res"]["changed"] is True

    # the nightly backup job (the schedule's extra_data leaves the label at its default)
    report = os.path.join(site.dest, "nightly.json")
    status, rc, stdout, events = site.run("playbooks/backup.yml", backup_report_file=report)
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    assert "failed=0" in stdout and events_named(events, "playbook_on_stats")
    assert not failed_events(events)
    with open(report) as handle:
        [backup] = json.load(handle)["backups"]
    assert backup["name"] == "app" and backup["label"] == "nightly" and backup["tables"] == site.counts
    # the backup verifies on its own: the checksum in its manifest, and the database it decompresses to
    assert os.path.isfile(backup["path"]) and os.stat(backup["path"]).st_mode & 0o077 == 0
    with open(backup["manifest_path"]) as handle:
        manifest = json.load(handle)
    with open(backup["path"], "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == manifest["sha256"] == backup["sha256"]
    assert manifest["engine"] == "sqlite" and manifest["tables"] == site.counts
    copy = str(site.tmp_path / "decompressed.sqlite")
    zstd_decompress(backup["path"], copy)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for table, rows in site.counts.items():
            assert conn.execute("SELECT count(*) FROM %s" % table).fetchone()[0] == rows

    # the restore drill job: the newest backup restored beside the database, counted, dropped
    drill_report = os.path.join(site.dest, "drill.json")
    status, rc, stdout, events = site.run("playbooks/restore_drill.yml", restore_drill_report_file=drill_report,
                                          restore_drill_label="nightly", restore_max_age_hours=1)
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    with open(drill_report) as handle:
        drill = json.load(handle)
    assert drill["ok"] is True and drill["mode"] == "drill"
    [result] = drill["results"]
    assert result["ok"] and result["dropped"] and result["backup"] == backup["path"]
    assert result["tables"] == site.counts and result["time_to_restore"] > 0
    assert "app: ok - drilled into %s.drill-" % site.database in stdout
    assert os.listdir(os.path.dirname(site.database)) == ["app.sqlite"]      # the scratch copy is gone


def test_a_missing_database_fails_the_job_and_the_events_name_it(site):
    missing = str(site.tmp_path / "app" / "gone.sqlite")
    status, rc, stdout, events = site.run(
        "playbooks/backup.yml", backup_databases=[dict(engine="sqlite", database=missing, name="gone")])
    assert status == "failed" and rc != 0, (status, rc)
    message = "SQLite database %s does not exist (no such file)." % missing
    assert message in stdout
    assert ("Backup | Dump, verify and checksum each database", "localhost", message) in failed_events(events)
    [stats] = events_named(events, "playbook_on_stats")
    assert stats["event_data"]["failures"] == {"localhost": 1}
    assert not os.path.exists(os.path.join(site.dest, "gone")) or not os.listdir(os.path.join(site.dest, "gone"))

    # a drill with no backup to restore fails too, and says which database and why
    status, rc, stdout, events = site.run("playbooks/restore_drill.yml")
    assert status == "failed" and rc != 0
    [(task, host, message)] = failed_events(events)
    assert task == "Restore | Fail when a database could not be restored"
    assert message.startswith("restore (drill) failed for app: latest_in %s/app is not a directory" % site.dest)


def test_the_workflow_notify_step_posts_as_the_awx_user(tmp_path):
    with WebhookReceiver() as receiver:
        url = receiver.url("/hooks/deploys-s3cr3t")
        status, rc, stdout, events = run_with_runner(
            tmp_path, "playbooks/notify.yml",
            dict(notify_event="rollback", notify_service="webhook", notify_url=url, notify_retries=0,
                 deploy_environment="staging", deploy_version="1.4.2", deploy_release_id="20261203T101500Z",
                 notify_reason="the deploy failed; the rollback job switched back"),
            localhost_inventory("all"))
        assert (status, rc) == ("successful", 0), stdout[-4000:]
        [request] = receiver.received("/hooks/deploys-s3cr3t")
    body = request.json
    assert (body["event"], body["environment"], body["version"], body["deploy_id"]) == (
        "rollback", "staging", "1.4.2", "20261203T101500Z")
    assert body["user"] == "ops-alice" and body["rolled_back"] is True     # awx_user_name, from AWX's job vars
    assert "deploys-s3cr3t" not in stdout


# --- the AWX objects in awx/ -----------------------------------------------------------------------


SURVEYS = ["deploy", "rollback", "restore"]


def load_survey(name):
    with open(os.path.join(AWX, "surveys", name + ".json")) as handle:
        return json.load(handle)


def job_templates():
    return load_yaml("awx", "job_templates.yml")


def survey_playbooks():
    """{survey file name: the playbook of the job template that uses it}"""
    out = {}
    for template in job_templates()["safeship_awx_job_templates"]:
        if template.get("survey_file"):
            out[os.path.basename(template["survey_file"])[:-len(".json")]] = template["playbook"]
    return out


@pytest.mark.parametrize("name", SURVEYS)
def test_survey_spec_is_one_awx_accepts(name):
    survey = load_survey(name)
    assert set(survey) == {"name", "description", "spec"}
    assert survey["name"] and isinstance(survey["description"], str)
    assert isinstance(survey["spec"], list) and survey["spec"]
    variables = [item.get("variable") for item in survey["spec"]]
    assert len(variables) == len(set(variables)), "a variable asked twice"
    for item in survey["spec"]:
        where = "%s.json %s" % (name, item.get("variable"))
        assert item.get("question_name"), where
        assert IDENTIFIER.fullmatch(item.get("variable") or ""), where
        assert item.get("type") in SURVEY_TYPES, where
        assert isinstance(item.get("required"), bool), where
        # passwords never go in a survey: vault and credentials (docs/awx.md)
        assert item["type"] != "password", where
        assert not re.search("password|secret|token|database_url", item["variable"]), where
        default = item.get("default")
        if item["type"] in ("multiplechoice", "multiselect"):
            choices = item.get("choices")
            choices = choices.split("\n") if isinstance(choices, str) else choices
            assert isinstance(choices, list) and choices and all(isinstance(c, str) and c for c in choices), where
            assert len(choices) == len(set(choices)), where
            if item["type"] == "multiplechoice":
                assert default in choices or (default == "" and item["required"]), where
        elif item["type"] in ("integer", "float"):
            kind = int if item["type"] == "integer" else (int, float)
            assert isinstance(item["min"], kind) and isinstance(item["max"], kind) and item["min"] <= item["max"], where
            assert isinstance(default, kind) and item["min"] <= default <= item["max"], where
        else:
            assert isinstance(item.get("min", 0), int) and isinstance(item.get("max", 1024), int), where
            assert isinstance(default, str), where
            # a required text with a default would launch unasked; a blank one must be allowed when optional
            assert len(default) <= item.get("max", 1024), where
            assert item["required"] or item.get("min", 0) == 0, where


def _expressions(node, key=None):
    """Jinja expressions and names defined in a parsed YAML document: the inside of every {{ }} / {% %},
    the bare expressions of when/that/..., and every mapping key."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _expressions(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _expressions(v, key)
    elif isinstance(node, str):
        if key in CONDITIONAL_KEYS:
            yield node
        for expression, statement in JINJA.findall(node):
            yield expression or statement


def used_names(path):
    """The identifiers a playbook, task, vars or template file uses or defines (comments and plain text
    such as a message's words left out)."""
    with open(path) as handle:
        text = handle.read()
    if path.endswith(".j2"):
        chunks = [expression or statement for expression, statement in JINJA.findall(text)]
    else:
        chunks = []
        for document in yaml.safe_load_all(text):
            chunks += list(_expressions(document))
    return set(name for chunk in chunks for name in IDENTIFIER.findall(chunk))


def _text_files(directory):
    return [f for f in glob.glob(os.path.join(directory, "**", "*"), recursive=True)
            if f.endswith((".yml", ".yaml", ".j2")) and os.path.isfile(f)]


def names_in(playbook):
    """Names used by the playbook, by the files beside it that are not playbooks of their own (templates/,
    tasks/), and by the collection's roles it runs (safeship.webapp.<role>, followed into those roles)."""
    top_level = set(glob.glob(os.path.join(REPO, "playbooks", "*.yml")))
    files = [playbook] + [f for f in _text_files(os.path.join(REPO, "playbooks")) if f not in top_level]
    roles, todo = set(), list(files)
    while todo:
        with open(todo.pop()) as handle:
            text = handle.read()
        for role in re.findall(r"safeship\.webapp\.([a-z0-9_]+)", text):
            if role not in roles and os.path.isdir(os.path.join(REPO, "roles", role)):
                roles.add(role)
                role_files = _text_files(os.path.join(REPO, "roles", role))
                files += role_files
                todo += role_files
    names = set()
    for path in files:
        names |= used_names(path)
    return names


@pytest.mark.parametrize("name", SURVEYS)
def test_survey_asks_only_variables_the_playbook_uses(name):
    playbook = survey_playbooks()[name]
    path = os.path.join(REPO, playbook)
    assert os.path.exists(path), (
        "awx/surveys/%s.json belongs to %s, which does not exist (yet?): the survey cannot be checked" % (name, playbook))
    names = names_in(path)
    unknown = [item["variable"] for item in load_survey(name)["spec"] if item["variable"] not in names]
    assert not unknown, (
        "awx/surveys/%s.json asks %s, which neither %s nor the roles it runs use (renamed? the public "
        "variables are listed in docs/awx.md)" % (name, ", ".join(unknown), playbook))


def test_every_job_template_runs_a_playbook_that_exists():
    missing = ["%s (%s)" % (t["playbook"], t["name"]) for t in job_templates()["safeship_awx_job_templates"]
               if not os.path.exists(os.path.join(REPO, t["playbook"]))]
    assert not missing, "awx/job_templates.yml runs playbooks that do not exist (yet?): " + ", ".join(missing)


def test_job_templates_schedules_and_the_workflow_fit_together():
    config = job_templates()
    templates = {t["name"]: t for t in config["safeship_awx_job_templates"]}
    assert len(templates) == len(config["safeship_awx_job_templates"])
    for template in templates.values():
        assert template["job_type"] in ("run", "check"), template["name"]
        assert template["playbook"].startswith("playbooks/") and template["playbook"].endswith(".yml")
        if template.get("survey_file"):
            assert template["survey_enabled"] is True
            assert os.path.exists(os.path.join(AWX, template["survey_file"])), template["name"]
    assert set(survey_playbooks()) == set(SURVEYS)
    assert {t["playbook"] for t in templates.values()} >= {
        "playbooks/deploy.yml", "playbooks/rollback.yml", "playbooks/restore.yml", "playbooks/backup.yml",
        "playbooks/restore_drill.yml"}
    for schedule in config["safeship_awx_schedules"]:
        template = templates[schedule["unified_job_template"]]
        assert re.match(r"DTSTART[:;]\S+ RRULE:FREQ=(DAILY|WEEKLY|HOURLY|MONTHLY)", schedule["rrule"]), schedule
        # AWX refuses a schedule's extra_data unless the template prompts for variables
        if schedule.get("extra_data"):
            assert template.get("ask_variables_on_launch") is True, schedule["name"]
    assert {templates[s["unified_job_template"]]["playbook"] for s in config["safeship_awx_schedules"]} == {
        "playbooks/backup.yml", "playbooks/restore_drill.yml"}

    workflow = load_yaml("awx", "workflow_deploy.yml")["safeship_awx_workflow"]
    assert os.path.exists(os.path.join(AWX, workflow["survey_file"]))
    nodes = {n["identifier"]: n for n in workflow["workflow_nodes"]}
    assert len(nodes) == len(workflow["workflow_nodes"])
    children = set()
    for node in nodes.values():
        ujt = node["unified_job_template"]
        assert ujt["type"] == "job_template" and ujt["name"] in templates, node["identifier"]
        if node.get("extra_data"):
            assert templates[ujt["name"]].get("ask_variables_on_launch") is True, node["identifier"]
        for edge, targets in node.get("related", {}).items():
            assert edge in ("success_nodes", "failure_nodes", "always_nodes"), edge
            for target in targets:
                assert target["identifier"] in nodes, (node["identifier"], target)
                children.add(target["identifier"])
    [root] = set(nodes) - children

    def runs(identifier):
        return templates[nodes[identifier]["unified_job_template"]["name"]]["playbook"]

    def edge(identifier, kind):
        return [t["identifier"] for t in nodes[identifier].get("related", {}).get(kind, [])]

    assert runs(root) == "playbooks/deploy.yml"
    [rollback] = edge(root, "failure_nodes")
    assert runs(rollback) == "playbooks/rollback.yml"
    [on_success] = edge(root, "success_nodes")
    assert runs(on_success) == "playbooks/notify.yml" and nodes[on_success]["extra_data"]["notify_event"] == "success"
    assert [nodes[n]["extra_data"]["notify_event"] for n in edge(rollback, "success_nodes")] == ["rollback"]
    assert [nodes[n]["extra_data"]["notify_event"] for n in edge(rollback, "failure_nodes")] == ["failure"]
