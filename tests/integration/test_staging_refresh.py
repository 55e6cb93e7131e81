"""playbooks/staging_refresh.yml for real: a production and a staging database on a real PostgreSQL, the
Prisma fixture's releases and its own CLI. Refused without confirmation, against production itself, or with a
Prisma URL naming another database (nothing changes); the round trip (verified backup -> forced restore
-> the next release's migrations on production data -> equal row counts -> report); the newest backup
reused; a migration that fails on production data reported, production untouched; check mode changes
nothing; no password in the output."""

import glob
import json
import os
import stat
import urllib.parse

import pytest

from helpers import prisma_app
from helpers.paths import REPO
from helpers.playbooks import Playbook

M1, M2, M3 = prisma_app.MIGRATIONS
PLAYBOOK = os.path.join(REPO, "playbooks", "staging_refresh.yml")
PROD_NOTES = ["invoice 1", "invoice 2", "invoice 3"]


class Refresh(object):
    def __init__(self, tmp_path, server, prod, staging):
        self.tmp = tmp_path
        self.server = server
        self.prod = prod
        self.staging = staging
        self.backups = str(tmp_path / "backups")
        self.playbook = Playbook(tmp_path / "play", group="staging")
        self.releases = {}

    def release(self, version, variant="good"):
        key = (version, variant)
        if key not in self.releases:
            self.releases[key] = prisma_app.make_prisma_release(self.tmp / ("release-%s-%s" % key), version, variant)
        return self.releases[key]

    def url(self, database):
        return prisma_app.database_url(self.server, database)

    def variables(self, version="2.0.0", variant="good", **more):
        base = dict(
            staging_refresh_source=self.server.conn_params(self.prod),
            staging_refresh_target=self.server.conn_params(self.staging),
            staging_refresh_confirm=self.staging,
            staging_refresh_backup_dir=self.backups,
            staging_refresh_tables=["Note"],
            staging_refresh_release_dir=self.release(version, variant),
            staging_refresh_database_url=self.url(self.staging),
        )
        base.update(more)
        return base

    def run(self, *options, **variables):
        proc = self.playbook.run_file(PLAYBOOK, variables, *options)
        for secret in (self.server.password, urllib.parse.quote(self.server.password, safe="")):
            assert secret not in proc.stdout
        return proc

    def notes(self, database):
        return [title for (title,) in self.server.execute('SELECT "title" FROM "Note" ORDER BY "id"', database)]

    def migrations(self, database):
        return prisma_app.migration_rows(self.server, database)

    def backup_files(self):
        return sorted(glob.glob(os.path.join(self.backups, "*.manifest.json")))

    def reports(self):
        found = []
        for path in sorted(glob.glob(os.path.join(self.backups, "staging-refresh-*.json"))):
            with open(path) as handle:
                found.append(json.load(handle))
        return found


@pytest.fixture()
def refresh(tmp_path, postgres_server, unique_name):
    prod, staging = unique_name + "_prod", unique_name + "_staging"
    for name in (prod, staging):
        postgres_server.create_database(name)
    job = Refresh(tmp_path, postgres_server, prod, staging)
    v1 = job.release("1.0.0")
    # production runs v1 with real rows; staging is an older copy with rows of its own
    for name in (prod, staging):
        prisma_app.run_prisma(v1, "migrate", "deploy", url=job.url(name), check=True)
    for title in PROD_NOTES:
        postgres_server.execute('INSERT INTO "Note" ("title") VALUES (%s)', prod, (title,))
    postgres_server.execute('INSERT INTO "Note" ("title") VALUES (%s)', staging, ("stale staging row",))
    yield job
    for name in (prod, staging):
        postgres_server.drop_database(name)


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc


def assert_untouched(job):
    assert job.notes(job.prod) == PROD_NOTES and set(job.migrations(job.prod)) == {M1}
    assert job.notes(job.staging) == ["stale staging row"] and set(job.migrations(job.staging)) == {M1}


def test_round_trip_then_reuse_the_newest_backup(refresh):
    job = refresh
    # check mode: the plan, nothing written
    ok(job.run("--check", **job.variables()))
    assert_untouched(job)
    assert not os.path.exists(job.backups)

    ok(job.run("-v", **job.variables()))
    assert job.notes(job.staging) == PROD_NOTES
    assert set(job.migrations(job.staging)) == {M1, M2}
    # production was only read
    assert job.notes(job.prod) == PROD_NOTES and set(job.migrations(job.prod)) == {M1}
    [manifest] = job.backup_files()
    backup = manifest[:-len(".manifest.json")]
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    [report] = job.reports()
    assert report["result"] == "ok" and report["failure"] == ""
    assert report["backup"]["path"] == backup and report["backup"]["taken_now"] is True
    assert report["restore"]["replaced"] is True
    assert report["migrations"]["applied"] == [M2] and report["migrations"]["state"] == "up_to_date"
    assert report["counts"]["production_backup"] == report["counts"]["restored"] == report["counts"]["migrated"] == {
        "Note": 3}
    assert report["counts"]["differences"] == []
    markdown = glob.glob(os.path.join(job.backups, "staging-refresh-*.md"))
    assert len(markdown) == 1
    with open(markdown[0]) as handle:
        assert "| Note | 3 | 3 | 3 |" in handle.read()

    # production moves on; the next refresh reuses the newest backup (taken before the new row)
    job.server.execute('INSERT INTO "Note" ("title") VALUES (%s)', job.prod, ("invoice 4",))
    job.server.execute('INSERT INTO "Note" ("title") VALUES (%s)', job.staging, ("staging test data",))
    ok(job.run(**job.variables(staging_refresh_backup="latest")))
    assert job.backup_files() == [manifest]
    assert job.notes(job.staging) == PROD_NOTES
    assert set(job.migrations(job.staging)) == {M1, M2}
    reused = [r for r in job.reports() if r["backup"]["taken_now"] is False]
    assert len(reused) == 1 and reused[0]["backup"]["path"] == backup and reused[0]["result"] == "ok"


def test_a_migration_that_fails_on_production_data_is_reported(refresh):
    job = refresh
    proc = job.run(**job.variables("3.0.0"))
    assert proc.returncode != 0
    assert "staging refresh failed" in proc.stdout and "migration %s failed" % M3 in proc.stdout
    [report] = job.reports()
    assert report["result"] == "failed" and M3 in report["failure"]
    assert report["migrations"]["state"] == "failed" and report["migrations"]["failed_migration"] == M3
    assert report["migrations"]["applied"] == [M2]  # applied before M3 failed
    assert report["counts"]["restored"] == {"Note": 3} and report["counts"]["migrated"] == {}
    # staging holds production's rows and the failed migration; production is untouched
    assert job.notes(job.staging) == PROD_NOTES
    assert job.migrations(job.staging)[M3][0] is False
    assert job.notes(job.prod) == PROD_NOTES and set(job.migrations(job.prod)) == {M1}


@pytest.mark.parametrize("change, message", [
    (dict(staging_refresh_confirm=""), "Run again with -e staging_refresh_confirm="),
    (dict(staging_refresh_confirm="app_staging"), "Run again with -e staging_refresh_confirm="),
    ("prod-target", "is the production database itself; refusing to restore over it"),
    ("prod-url", "the URL names another database, or is missing"),
    (dict(staging_refresh_tables=[]), "staging_refresh_tables names the critical tables"),
    (dict(staging_refresh_backup="yesterday"), "staging_refresh_backup is new, latest or an absolute path"),
])
def test_refused_before_anything_changes(refresh, change, message):
    job = refresh
    if change == "prod-target":
        change = dict(staging_refresh_target=job.server.conn_params(job.prod), staging_refresh_confirm=job.prod)
    elif change == "prod-url":
        change = dict(staging_refresh_database_url=job.url(job.prod))
    proc = job.run(**job.variables(**change))
    assert proc.returncode != 0
    assert message in proc.stdout
    assert_untouched(job)
    assert not os.path.exists(job.backups)
