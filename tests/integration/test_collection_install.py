"""The collection as users get it: `ansible-galaxy collection build`, the tarball installed into an empty
collections path, and a playbook outside the checkout using the roles, modules, filters and playbooks by
their FQCN - nothing read from the checkout. Before the install the same playbook fails to resolve the
collection, which proves the checkout is not on the path."""

import hashlib
import json
import os
import sqlite3
import subprocess
import tarfile
import textwrap

import pytest

from helpers.paths import REPO, venv_tool
from helpers.playbooks import Playbook

PLAYBOOK = textwrap.dedent("""\
    - name: Ship a site with safeship.webapp installed from its tarball
      hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Back up the notes database (role, by FQCN)
          ansible.builtin.include_role:
            name: safeship.webapp.backup
          vars:
            backup_databases:
              - engine: sqlite
                database: "{{ workdir }}/notes.sqlite"
                name: notes
                tables: [notes]
            backup_dest: "{{ workdir }}/backups"
            backup_label: predeploy

        - name: Release v1 of the site (role, by FQCN)
          ansible.builtin.include_role:
            name: safeship.webapp.release
          vars:
            release_app_root: "{{ workdir }}/app"
            release_id: v1
            release_artifact: "{{ workdir }}/site-v1"

        - name: Restore drill of the newest backup (module, by FQCN)
          safeship.webapp.db_restore:
            engine: sqlite
            latest_in: "{{ workdir }}/backups/notes"
            target_database: "{{ workdir }}/drill.sqlite"
            drill: true
          register: drill

        - name: Record the deploy (module and filter, by FQCN)
          safeship.webapp.deploy_record:
            app_root: "{{ workdir }}/app"
            record:
              deploy_id: install-check-1
              app: site
              environment: test
              version: v1
              started: "2026-12-03T10:00:00Z"
              finished: "2026-12-03T10:01:00Z"
              backups: "{{ backup_results }}"
              rolled_back: false
              changes:
                - "connection keys: {{ ({'engine': 'sqlite', 'database': 'x', 'name': 'n'}
                    | safeship.webapp.db_connection | list | sort | join(',')) }}"

        - name: Save what the run saw
          ansible.builtin.copy:
            dest: "{{ workdir }}/outcome.json"
            content: "{{ {'drill': drill, 'release': release_result, 'backups': backup_results} | to_json }}"
            mode: "0600"
    """)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    proc = subprocess.run([venv_tool("ansible-galaxy"), "collection", "build", "--output-path",
                           str(out), REPO], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(REPO, "galaxy.yml")) as galaxy:
        version = next(line.split(":", 1)[1].strip() for line in galaxy if line.startswith("version:"))
    path = out / ("safeship-webapp-%s.tar.gz" % version)
    assert path.is_file(), os.listdir(out)
    return str(path)


def outside_variables(collections):
    """What the tests' Ansible environment (helpers.playbooks.ansible_env) changes to see only `collections`: no
    checkout link, no collections on sys.path (with isolated=True, no ANSIBLE_* variable of the caller either: no
    ansible.cfg); the commands run from a directory outside the checkout."""
    return dict(ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
                ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")


def test_the_tarball_holds_the_collection_and_nothing_of_the_workshop(tarball):
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    for shipped in ("MANIFEST.json", "meta/runtime.yml", "plugins/modules/db_backup.py",
                    "plugins/module_utils/_database.py", "roles/deploy/meta/argument_specs.yml",
                    "playbooks/deploy.yml", "playbooks/restore_drill.yml", "README.md", "CHANGELOG.md",
                    "docs/getting-started.md", "bindep.txt"):
        assert shipped in names, shipped
    top = {name.split("/", 1)[0] for name in names}
    assert not top & {".venv", ".build", ".git", ".hypothesis", ".pytest_cache", "tests", "bench", "scripts", "tools",
                      "demo", "inventories"}, top
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_a_playbook_outside_the_checkout_uses_the_installed_collection(tarball, tmp_path):
    workdir = tmp_path / "outside"
    collections = tmp_path / "collections"
    (workdir / "site-v1").mkdir(parents=True)
    (workdir / "site-v1" / "index.html").write_text("<h1>v1</h1>\n")
    with sqlite3.connect(str(workdir / "notes.sqlite")) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO notes (body) VALUES (?)", [("note %d" % i,) for i in range(17)])
    playbook = Playbook(workdir, groups={"ungrouped": ("localhost",)}, env=outside_variables(str(collections)),
                        isolated=True)
    site = playbook.write(PLAYBOOK, "site.yml")
    env = playbook.env()

    # not installed yet: the roles cannot be found (so nothing below can come from the checkout)
    before = playbook.run_file(site, dict(workdir=str(workdir)))
    assert before.returncode != 0
    assert "couldn't resolve module/action 'safeship.webapp." in before.stdout
    assert not (workdir / "backups").exists()

    install = subprocess.run([venv_tool("ansible-galaxy"), "collection", "install", tarball,
                              "-p", str(collections)], cwd=str(workdir), env=env,
                             capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    installed = collections / "ansible_collections" / "safeship" / "webapp"
    assert (installed / "plugins" / "modules" / "db_backup.py").is_file()
    assert not installed.is_symlink()

    listed = subprocess.run([venv_tool("ansible-galaxy"), "collection", "list", "safeship.webapp",
                             "--format", "json"], cwd=str(workdir), env=env, capture_output=True, text=True,
                            check=True)
    assert list(json.loads(listed.stdout)) == [str(collections / "ansible_collections")]

    run = playbook.run_file(site, dict(workdir=str(workdir)))
    assert run.returncode == 0, run.stdout[-6000:]
    outcome = json.loads((workdir / "outcome.json").read_text())

    backup = outcome["backups"][0]
    with open(backup["path"], "rb") as dump:
        assert hashlib.sha256(dump.read()).hexdigest() == backup["sha256"]
    assert backup["tables"] == {"notes": 17}
    drilled = outcome["drill"]
    assert (drilled["drill"], drilled["dropped"], drilled["src"]) == (True, True, backup["path"])
    assert drilled["tables"] == {"notes": 17}
    assert not (workdir / "drill.sqlite").exists()
    assert os.readlink(str(workdir / "app" / "current")) == "releases/v1"
    assert (workdir / "app" / "current" / "index.html").read_text() == "<h1>v1</h1>\n"
    records = [json.loads(line) for line in (workdir / "app" / ".safeship" / "deploys.jsonl").read_text().splitlines()]
    assert [r["deploy_id"] for r in records] == ["install-check-1"]
    assert records[0]["backups"][0]["sha256"] == backup["sha256"]
    assert records[0]["changes"] == ["connection keys: database,engine"]

    # a playbook of the collection, by its FQCN: the restore drill over the same backups
    drill = playbook.run_file("safeship.webapp.restore_drill", dict(
        workdir=str(workdir), restore_drill_hosts="localhost", backup_dest="%s/backups" % workdir,
        backup_databases=[{"engine": "sqlite", "name": "notes", "database": str(workdir / "notes.sqlite")}],
        restore_drill_report_file="%s/drill.json" % workdir))
    assert drill.returncode == 0, drill.stdout[-6000:]
    report = json.loads((workdir / "drill.json").read_text())
    assert (report["mode"], report["ok"], [r["ok"] for r in report["results"]]) == ("drill", True, [True])
