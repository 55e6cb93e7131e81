"""playbooks/backup.yml and playbooks/restore_drill.yml (the backup and restore roles) for real: a central
PostgreSQL database and two tenant databases, plus an SQLite one, on localhost. Backups per database with
retention; drills that restore, check and drop, timed; a stale or corrupt backup fails the drill and is
named; a confirmed restore puts deleted rows back, an unconfirmed one changes nothing; no password in the
output, even with -v."""

import glob
import json
import os
import sqlite3
import stat
import time

import pytest

from helpers.paths import REPO
from helpers.playbooks import Playbook

from . import seed

BACKUP = os.path.join(REPO, "playbooks", "backup.yml")
DRILL = os.path.join(REPO, "playbooks", "restore_drill.yml")
RESTORE = """\
---
- name: Restore
  hosts: db
  gather_facts: false
  roles:
    - role: safeship.webapp.restore
      vars:
        restore_mode: restore
        restore_databases: "{{ backup_databases }}"
        restore_connection: "{{ backup_connection }}"
        restore_backup_dest: "{{ backup_dest }}"
"""


class Site(object):
    def __init__(self, tmp_path, server, prefix):
        self.server = server
        self.central, self.tenants = prefix + "_shop", [prefix + "_acme", prefix + "_globex"]
        self.sqlite = str(tmp_path / "app" / "cms.sqlite")
        os.makedirs(os.path.dirname(self.sqlite))
        self.counts = seed.seed_postgres(server, self.central, users=30, orders=60, invoices=10)
        for tenant in self.tenants:
            seed.seed_postgres(server, tenant, users=5, orders=8, invoices=2)
        self.sqlite_counts = seed.seed_sqlite(self.sqlite, users=7, orders=9, invoices=3)
        self.dest = str(tmp_path / "backups")
        self.playbook = Playbook(tmp_path / "play", group="db")
        connection = server.conn_params(self.central)
        connection.pop("database")
        self.vars = dict(
            backup_dest=self.dest,
            backup_connection=connection,
            backup_databases=[dict(database=self.central, tables=seed.PG_TABLES)]
            + [dict(database=t) for t in self.tenants]
            + [dict(engine="sqlite", database=self.sqlite, name="cms", tables=sorted(self.sqlite_counts))],
        )

    @property
    def names(self):
        return [self.central] + self.tenants + ["cms"]

    def run(self, playbook, *options, **more):
        proc = self.playbook.run_file(playbook, dict(self.vars, **more), *options)
        assert self.server.password not in proc.stdout
        return proc

    def backups(self, name):
        return sorted(glob.glob(os.path.join(self.dest, name, "*.manifest.json")))

    def databases(self):
        return set(row[0] for row in self.server.execute("SELECT datname FROM pg_database"))


@pytest.fixture()
def site(tmp_path, postgres_server, unique_name):
    job = Site(tmp_path, postgres_server, unique_name)
    yield job
    for name in [job.central] + job.tenants:
        postgres_server.drop_database(name)


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc


def test_backups_with_retention_then_drills(site, postgres_server):
    report = os.path.join(site.dest, "nightly.json")
    for _run in range(3):
        ok(site.run(BACKUP, "-v", backup_keep=2, backup_report_file=report))
        time.sleep(1.1)  # backup names carry the second
    for name in site.names:
        manifests = site.backups(name)
        assert len(manifests) == 2, (name, manifests)
        for manifest in manifests:
            backup = manifest[:-len(".manifest.json")]
            assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
            assert os.path.basename(backup).startswith("nightly_")
        assert stat.S_IMODE(os.stat(os.path.join(site.dest, name)).st_mode) == 0o700
    with open(report) as handle:
        results = json.load(handle)["backups"]
    assert [r["name"] for r in results] == site.names
    assert results[0]["tables"] == site.counts and results[-1]["tables"] == site.sqlite_counts
    assert all(r["path"] + ".manifest.json" in site.backups(r["name"]) for r in results)

    before = site.databases()
    proc = ok(site.run(DRILL, "-v", restore_max_age_hours=1))
    [drill_report] = glob.glob(os.path.join(site.dest, "restore-drill-*.json"))
    with open(drill_report) as handle:
        drill = json.load(handle)
    assert drill["ok"] is True and [r["name"] for r in drill["results"]] == site.names
    for result in drill["results"]:
        assert result["ok"] and result["dropped"] and result["time_to_restore"] > 0
        assert result["backup"] == results[site.names.index(result["name"])]["path"]
        assert 0 <= result["backup_age_hours"] < 1
    assert drill["results"][0]["tables"] == site.counts
    assert "drilled into %s_drill_" % site.central in proc.stdout
    # nothing left behind: no scratch database, no scratch file
    assert site.databases() == before
    assert os.listdir(os.path.dirname(site.sqlite)) == ["cms.sqlite"]


def test_a_stale_or_corrupt_backup_fails_the_drill_naming_it(site):
    ok(site.run(BACKUP))
    # the tenant's newest backup is damaged; every other database is still drilled
    [manifest] = site.backups(site.tenants[0])
    with open(manifest[:-len(".manifest.json")], "ab") as handle:
        handle.write(b"bitrot")
    proc = site.run(DRILL, restore_drill_report_file=os.path.join(site.dest, "drill.json"))
    assert proc.returncode != 0
    assert "restore (drill) failed for %s: " % site.tenants[0] in proc.stdout
    assert "does not match its manifest" in proc.stdout
    with open(os.path.join(site.dest, "drill.json")) as handle:
        drill = json.load(handle)
    assert [r["ok"] for r in drill["results"]] == [True, False, True, True]

    stale = site.run(DRILL, restore_max_age_hours=0.0001, restore_drill_databases=[dict(database=site.central)])
    assert stale.returncode != 0
    assert "the newest backup is" in stale.stdout and "hours old (more than 0.0001)" in stale.stdout


def test_a_restore_needs_the_names_and_puts_the_rows_back(site, postgres_server):
    ok(site.run(BACKUP))
    postgres_server.execute("DELETE FROM billing.invoices; DELETE FROM orders", site.central)
    with sqlite3.connect(site.sqlite) as conn:
        conn.execute("DELETE FROM orders")
    only = [dict(database=site.central), dict(engine="sqlite", database=site.sqlite, name="cms")]

    refused = site.playbook.run(RESTORE, dict(site.vars, backup_databases=only))
    assert refused.returncode != 0
    assert "Run again with restore_confirm=%s,%s to confirm" % (site.central, site.sqlite) in refused.stdout
    assert postgres_server.execute("SELECT count(*) FROM orders", site.central) == [(0,)]

    ok(site.playbook.run(RESTORE, dict(site.vars, backup_databases=only,
                                       restore_confirm="%s, %s" % (site.central, site.sqlite))))
    assert postgres_server.execute("SELECT count(*) FROM orders", site.central) == [(site.counts["orders"],)]
    assert postgres_server.execute("SELECT count(*) FROM billing.invoices", site.central) == [
        (site.counts["billing.invoices"],)]
    with sqlite3.connect(site.sqlite) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == site.sqlite_counts["orders"]


@pytest.mark.parametrize("change, message", [
    (dict(backup_databases=[]), "backup_databases must list at least one database"),
    (dict(backup_databases=[dict(database="a"), dict(database="a")]), "a unique name"),
    (dict(backup_connection={}), "an `engine`"),
    (dict(backup_dest="relative/dir"), "backup_dest must be absolute"),
])
def test_bad_backup_variables_change_nothing(site, change, message):
    proc = site.run(BACKUP, **change)
    assert proc.returncode != 0 and message in proc.stdout
    assert not os.path.exists(site.dest)
