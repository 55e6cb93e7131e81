"""playbooks/deploy.yml and rollback.yml end to end with deploy_stack=laravel on localhost: the Laravel 8
fixture app (tests/fixtures/laravel_app) on a real PostgreSQL central database with three tenant databases,
artisan as www-data, the health URL an HTTP front that follows `current` per request (laravel_nginx_site
false, as in test_laravel_role.py), verified backups of the central database, critical row counts.

v1 (a first deploy: its central migrations, no backup) -> the plan of v2 in check mode -> v2 (a central migration under maintenance mode,
the tenants migrated, backed up first) -> v3, whose health check fails after the switch (it is expected to
answer a version it does not: how test_laravel_role.py makes a release unhealthy) -> rolled back by
itself: v2 serves again, rows intact, the locks free, maintenance lifted, v3 marked bad, the record says
rolled back -> rollback.yml to the release before (v1), then -e rollback_to=v2."""

import json
import os

import pytest

from helpers.deploy_stacks import LaravelSite
from helpers.laravel_app import add_tenants, migration_names, tables
from helpers.playbooks import failed, succeeded as ok
from helpers.releases import current_of, state_of, tree_snapshot
from helpers.web_stack import web_tmpdir

from .test_laravel_role import DownWatcher, artifact

TENANTS = ("acme", "globex", "initech")
CRITICAL = ["users", "tenants"]


@pytest.fixture()
def site(tmp_path, postgres_server, unique_name):
    central = unique_name + "_central"
    tenant_dbs = dict((tenant, "%s_%s" % (unique_name, tenant)) for tenant in TENANTS)
    for database in [central] + list(tenant_dbs.values()):
        postgres_server.create_database(database)
    with web_tmpdir() as base:
        site = LaravelSite(tmp_path, base, postgres_server, central, artifact)
        site.tenant_dbs = tenant_dbs
        site.vars["deploy_critical_tables"] = CRITICAL
        try:
            yield site
        finally:
            site.close()
            for database in [central] + list(tenant_dbs.values()):
                postgres_server.drop_database(database)


def counts(site):
    return dict((table, site.server.execute("SELECT count(*) FROM %s" % table, site.central)[0][0])
                for table in CRITICAL)


def central_migrations(site):
    return sorted(row[0] for row in site.server.execute("SELECT migration FROM migrations", site.central))


def tenant_vars(site):
    server = site.server
    return dict(
        laravel_tenants_migrate=True,
        laravel_tenants_query='SELECT id, "database" FROM tenants ORDER BY id',
        laravel_tenant_db=dict(engine="postgresql", login_host="127.0.0.1", login_port=server.port,
                               login_user=server.user, login_password=server.password, database=site.central))


def release_entry(site, release_id):
    with open(os.path.join(site.root, ".safeship", "releases.json")) as handle:
        return [r for r in json.load(handle)["releases"] if r["id"] == release_id][0]


def test_laravel_deploy_bad_release_rolls_back_then_rollback_playbook(site):
    root = site.root
    locks = [site.lock_path(), os.path.join(root, ".safeship", "laravel-migrate.lock")]

    # v1: a first deploy - the central migrations from nothing, nothing to back up, nothing was down
    ok(site.deploy("v1", "1.0.0"))
    assert site.served() == (200, "1.0.0") and current_of(root) == "v1"
    assert state_of(root) == {"v1": "good"}
    assert central_migrations(site) == migration_names(site.release("v1"))
    record = site.records()[-1]
    assert record["deploy_id"] == "v1" and record["version"] == "1.0.0" and record["rolled_back"] is False
    assert record["extra"]["status"] == "success" and record["extra"]["stack"] == "laravel"
    assert record["migrations"]["central"] == migration_names(site.release("v1"))
    assert record["backups"] == [] and record["health"] == {"localhost": "serves v1"}
    assert sorted(os.path.splitext(p)[1] for p in site.reports()) == [".json", ".md"]
    assert site.last_report()["status"] == "success"
    assert not any(os.path.exists(lock) for lock in locks)

    # the app's data: users, and three tenants whose databases are still empty
    for number in range(25):
        site.server.execute("INSERT INTO users (name, email, password) VALUES (%s, %s, 'x')", site.central,
                            ("user%d" % number, "user%d@example.com" % number))
    add_tenants(site.server, site.central, site.tenant_dbs)
    rows = counts(site)
    assert rows == {"users": 25, "tenants": 3}

    # check mode: the plan names what serves, the backup and the migration v2 brings; nothing is written
    snapshot, applied = tree_snapshot(root), central_migrations(site)
    plan = ok(site.deploy("v2", "2.0.0", "--check", **tenant_vars(site)))
    assert "Deploy plan (check mode" in plan.stdout and "localhost serves v1" in plan.stdout
    assert "into %s" % site.backup_dest in plan.stdout
    assert "has not applied: 2021_01_01_000000_create_notes_table" in plan.stdout
    assert tree_snapshot(root) == snapshot and central_migrations(site) == applied

    # v2: a central migration (maintenance mode while it runs, lifted after the switch), every tenant migrated,
    # the central database backed up first and the backup recorded with the release
    with DownWatcher(site) as watcher:
        ok(site.deploy("v2", "2.0.0", **tenant_vars(site)))
    assert watcher.down_seen and 503 in watcher.statuses
    assert not os.path.exists(site.down_file())
    assert site.served() == (200, "2.0.0") and state_of(root) == {"v1": "good", "v2": "good"}
    assert "2021_01_01_000000_create_notes_table" in central_migrations(site)
    for database in site.tenant_dbs.values():
        assert {"comments", "posts"} <= set(tables(site.server, database))
    record = site.records()[-1]
    assert record["deploy_id"] == "v2" and record["extra"]["status"] == "success"
    assert record["migrations"]["central"] == ["2021_01_01_000000_create_notes_table"]
    assert record["migrations"]["tenants"] == {"count": 3, "failed": 0}
    assert [b["database"] for b in record["backups"]] == [site.central]
    assert record["backups"][0]["path"].startswith(site.backup_dest) and os.path.isfile(record["backups"][0]["path"])
    assert release_entry(site, "v2")["backups"][0]["path"] == record["backups"][0]["path"]
    report = site.last_report()
    assert report["migrations"]["tenants"]["total"] == 3 and report["migrations"]["tenants"]["ok"] == 3
    assert report["maintenance"] is True and report["downtime_seconds"] > 0
    assert [(c["name"], c["before"], c["after"], c["differences"]) for c in report["row_counts"]] == [
        (site.central, rows, rows, [])]
    assert counts(site) == rows

    # v3 brings a migration (maintenance again), is switched to and fails its health check: rolled back
    with DownWatcher(site) as watcher:
        bad = failed(site.deploy("v3", "3.0.0", laravel_version="9.9.9", laravel_health_retries=1,
                                 **tenant_vars(site)))
    assert watcher.down_seen
    assert "deploy of shop release v3 failed" in bad.stdout and "Rolled back" in bad.stdout
    assert site.served() == (200, "2.0.0") and current_of(root) == "v2"
    assert state_of(root) == {"v1": "good", "v2": "good", "v3": "bad"}
    assert not os.path.exists(site.down_file()), "the site was left in maintenance mode"
    assert not any(os.path.exists(lock) for lock in locks)
    assert counts(site) == rows
    # code only: v3's migration stays applied
    assert "2021_02_01_000000_create_tags_table" in central_migrations(site)
    record = site.records()[-1]
    assert record["deploy_id"] == "v3" and record["rolled_back"] is True
    assert record["extra"]["status"] == "rolled_back" and record["extra"]["rolled_back_hosts"] == ["localhost"]
    assert "9.9.9" in record["error"] and record["migrations"]["central"] == ["2021_02_01_000000_create_tags_table"]
    assert record["health"] == {"localhost": "switched back by its health check"}
    assert site.last_report()["status"] == "rolled_back"

    # rollback.yml: to the release before the live one (v1: v3 is bad), then to v2 by name
    ok(site.run("rollback.yml"))
    assert current_of(root) == "v1" and site.served() == (200, "1.0.0")
    assert site.records()[-1]["rolled_back"] is True and site.records()[-1]["extra"]["to"] == "v1"
    assert site.records()[-1]["extra"]["from"] == "v2"
    assert not os.path.exists(site.down_file())
    ok(site.run("rollback.yml", rollback_to="v2"))
    assert current_of(root) == "v2" and site.served() == (200, "2.0.0")
    assert site.records()[-1]["extra"]["to"] == "v2"
    assert counts(site) == rows
