"""playbooks/deploy.yml end to end with deploy_stack=prisma on localhost: the Prisma fixture app
(tests/fixtures/prisma_app, Prisma 6.19) under a real pm2 on a real PostgreSQL database, verified backups,
critical row counts.

r1 (a first deploy: `prisma migrate deploy` applies its one migration, recorded in migrations.central) ->
notes written -> r2, the fixture's third release, whose last migration fails on a table with rows: stopped
before the switch - r1 still serves, rows intact, nothing to roll back (the record and the report say
failed, not rolled back, naming the migration), the release marked bad, the lock free."""

import os

import pytest

from helpers import prisma_app
from helpers.deploy_stacks import PrismaSite
from helpers.releases import current_of, state_of

M1, M2, M3 = prisma_app.MIGRATIONS


@pytest.fixture()
def site(tmp_path, postgres_server, unique_name):
    postgres_server.create_database(unique_name)
    site = PrismaSite(tmp_path, postgres_server, unique_name)
    site.vars["deploy_critical_tables"] = ["Note"]
    yield site
    site.close()
    postgres_server.drop_database(unique_name)


def ok(site, proc):
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert not any(secret in proc.stdout for secret in site.secrets)
    return proc


def failed(site, proc):
    assert proc.returncode != 0, proc.stdout[-6000:]
    assert not any(secret in proc.stdout for secret in site.secrets)
    return proc


def notes(site):
    return site.server.execute('SELECT "id", "title" FROM "Note" ORDER BY "id"', site.database)


def test_prisma_deploy_then_a_failing_migration_stops_before_the_switch(site):
    root = site.roots["localhost"]

    # r1: a first deploy - the Client generated in the release, its migration applied, then served
    ok(site, site.deploy("r1", "1.0.0"))
    assert site.served() == (200, "1.0.0", 0) and current_of(root) == "r1"
    assert state_of(root) == {"r1": "good"}
    assert site.migrations() == {M1: (True, False, 1)}
    record = site.records()[-1]
    assert record["deploy_id"] == "r1" and record["version"] == "1.0.0" and record["rolled_back"] is False
    assert record["extra"]["status"] == "success" and record["extra"]["stack"] == "prisma"
    assert record["migrations"]["central"] == [M1]
    assert record["health"] == {"localhost": "serves r1"}
    assert site.last_report()["status"] == "success"
    assert not os.path.exists(site.lock_path())

    for title in ("keep me", "and me", "me too"):
        site.server.execute('INSERT INTO "Note" ("title") VALUES (%s)', site.database, (title,))
    before = notes(site)
    assert site.served() == (200, "1.0.0", 3)

    # r2 = release 3: M2 applies, M3 fails on a Note table with rows - stopped before the switch
    proc = failed(site, site.deploy("r2", "3.0.0"))
    assert "deploy of notes release r2 failed" in proc.stdout
    assert "Stopped before the switch: the live release still serves; nothing to roll back." in proc.stdout
    assert site.served() == (200, "1.0.0", 3) and current_of(root) == "r1"
    assert state_of(root) == {"r1": "good", "r2": "bad"}
    assert notes(site) == before
    rows = site.migrations()
    assert rows[M1] == rows[M2] == (True, False, 1) and rows[M3][:2] == (False, False)
    assert not os.path.exists(site.lock_path())
    record = site.records()[-1]
    assert record["deploy_id"] == "r2" and record["rolled_back"] is False
    assert record["extra"]["status"] == "failed" and record["extra"]["rolled_back_hosts"] == []
    assert "migration %s failed" % M3 in record["error"]
    # what this deploy did apply before the failure is in the record
    assert record["migrations"]["central"] == [M2]
    assert record["health"] == {"localhost": "not switched"}
    # backed up before migrating (not a first deploy), recorded with the failed release
    assert [b["database"] for b in record["backups"]] == [site.database]
    assert os.path.isfile(record["backups"][0]["path"])
    report = site.last_report()
    assert report["status"] == "failed" and report["rollback"]["hosts"] == []
    assert report["outcome"].startswith("Stopped before the switch")
    assert report["migrations"]["central"] == [M2]
    assert "switch" not in report["phases"] and "migrate" in report["phases"]
