"""playbooks/deploy.yml, rollback.yml, restore.yml and restore_drill.yml end to end on localhost: the Node
fixture app under real pm2, a real PostgreSQL database with its backups, psql migrations. A bad release
rolls back by itself (the old version serves, rows intact, the lock free, the record says rolled back),
rollback.yml goes back further and restores the database only when confirmed, restore.yml puts lost rows
back with the app stopped around it, the drill times a restore; a deploy while another holds the lock
fails naming the holder; check mode changes nothing; a migration that loses rows is caught and undone;
two hosts switched one at a time both go back when the second fails."""

import json
import os

import pytest

from helpers.deploy_site import NodeSite
from helpers.playbooks import failed, succeeded as ok
from helpers.releases import current_of, state_of, tree_snapshot

from . import seed


@pytest.fixture()
def site(tmp_path, postgres_server, unique_name):
    seed.seed_postgres(postgres_server, unique_name, users=40, orders=120, invoices=20)
    site = NodeSite(tmp_path, postgres_server, unique_name)
    yield site
    site.close()


def fingerprint(site):
    return seed.fingerprint_postgres(site.server, site.database)


def counts(site):
    return dict((table, site.server.execute("SELECT count(*) FROM %s" % table, site.database)[0][0])
                for table in seed.PG_TABLES)


def columns(site, table="users"):
    return sorted(row[0] for row in site.server.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s", site.database, (table,)))


def test_deploy_bad_release_rollback_restore_and_drill(site):
    root = site.roots["localhost"]
    before = fingerprint(site)

    # check mode on a machine where nothing is deployed yet: the plan, and nothing written
    def written():
        return tree_snapshot(os.path.join(site.base, "srv")), tree_snapshot(site.backup_dest)

    snapshot = written()
    plan = ok(site.deploy("r1", "1.0.0", "good", "SELECT 1", "--check"))
    assert "Deploy plan (check mode" in plan.stdout and "release r1" in plan.stdout
    assert "localhost serves nothing" in plan.stdout
    assert written() == snapshot and not os.path.exists(root)

    # v1, then v2 whose migration adds a column (backed up first, recorded with the release)
    ok(site.deploy("r1", "1.0.0"))
    assert site.served() == (200, "1.0.0")
    ok(site.deploy("r2", "2.0.0", "good", "ALTER TABLE users ADD COLUMN nickname text"))
    assert site.served() == (200, "2.0.0") and "nickname" in columns(site)
    assert counts(site) == {"users": 40, "orders": 120, "billing.invoices": 20}  # the migration kept every row
    after_r2 = fingerprint(site)
    record = site.records()[-1]
    assert record["deploy_id"] == "r2" and record["rolled_back"] is False and record["version"] == "2.0.0"
    assert record["backups"] and record["backups"][0]["path"].startswith(site.backup_dest)
    assert state_of(root)["r2"] == "good"
    with open(os.path.join(root, ".safeship", "releases.json")) as handle:
        r2 = [r for r in json.load(handle)["releases"] if r["id"] == "r2"][0]
    assert r2["backups"][0]["path"] == record["backups"][0]["path"]
    report = site.last_report()
    assert report["status"] == "success" and set(report["phases"]) >= {"preflight", "lock", "backup", "build",
                                                                       "migrate", "switch"}
    assert report["row_counts"][0]["before"] == report["row_counts"][0]["after"]
    assert os.path.exists(site.reports()[-1][:-5] + ".md") or any(p.endswith(".md") for p in site.reports())

    # check mode again: the plan names the backup and what serves; nothing changes
    snapshot, rows = tree_snapshot(root), fingerprint(site)
    plan = ok(site.deploy("r3", "3.0.0", "unhealthy", "SELECT 1", "--check"))
    assert "localhost serves r2" in plan.stdout and "into %s" % site.backup_dest in plan.stdout
    assert tree_snapshot(root) == snapshot and fingerprint(site) == rows

    # v3 fails its health check after the switch: rolled back by itself
    bad = failed(site.deploy("r3", "3.0.0", "unhealthy", node_pm2_candidate_check=False))
    assert "deploy of shop release r3 failed" in bad.stdout and "Rolled back" in bad.stdout
    assert site.served() == (200, "2.0.0") and current_of(root) == "r2"
    assert fingerprint(site) == after_r2
    assert not os.path.exists(site.lock_path())
    record = site.records()[-1]
    assert record["deploy_id"] == "r3" and record["rolled_back"] is True and "500" in record["error"]
    assert state_of(root)["r3"] == "bad"
    assert site.last_report()["status"] == "rolled_back"

    # rollback.yml with the database: refused in production without the confirmation, nothing changed
    refused = failed(site.run("rollback.yml", rollback_restore_db=True))
    assert "confirm with -e confirm=%s" % site.database in refused.stdout
    assert current_of(root) == "r2" and "nickname" in columns(site)
    # confirmed: back to r1, and the database as it was before r2's migration
    ok(site.run("rollback.yml", rollback_restore_db=True, confirm=site.database))
    assert current_of(root) == "r1" and site.served() == (200, "1.0.0")
    assert "nickname" not in columns(site) and fingerprint(site) == before
    assert site.records()[-1]["rolled_back"] is True and site.records()[-1]["extra"]["to"] == "r1"

    # restore.yml: rows lost by hand come back from the newest backup, the app stopped around it
    site.server.execute("DELETE FROM billing.invoices; DELETE FROM orders WHERE id > 10", site.database)
    pids = sorted(p[0] for p in site.pm2["localhost"].apps()["shop-web"])
    refused = failed(site.run("restore.yml"))
    assert "confirm with -e confirm=%s" % site.database in refused.stdout
    assert site.server.execute("SELECT count(*) FROM orders", site.database) == [(10,)]
    ok(site.run("restore.yml", confirm=site.database))
    assert counts(site) == {"users": 40, "orders": 120, "billing.invoices": 20}
    assert site.served() == (200, "1.0.0")
    assert sorted(p[0] for p in site.pm2["localhost"].apps()["shop-web"]) != pids  # stopped and started

    # a named backup: r2's, taken before its migration added the column (the newest, r3's, has it)
    r2_backup = [r for r in site.records() if r["deploy_id"] == "r2"][0]["backups"][0]["path"]
    assert "nickname" in columns(site)
    ok(site.run("restore.yml", restore_names=site.database, restore_backup=r2_backup, confirm=site.database))
    assert "nickname" not in columns(site) and fingerprint(site) == before

    # the restore drill: newest backup into a scratch database, checked, dropped, timed
    report_file = os.path.join(site.base, "drill.json")
    drill = ok(site.run("restore_drill.yml", restore_drill_hosts="app", restore_drill_report_file=report_file))
    with open(report_file) as handle:
        drilled = json.load(handle)
    assert drill.returncode == 0 and drilled["ok"] is True and drilled["mode"] == "drill"
    entry = drilled["results"][0]
    assert entry["name"] == site.database and entry["dropped"] is True and entry["time_to_restore"] > 0
    assert entry["tables"]["orders"] == 120


def test_a_repeat_a_held_lock_and_a_migration_that_loses_rows_each_leave_r1_serving(site, run_module):
    """One r1 for three cases (each deploy of r1 costs a backup, a build and a pm2 start): the same deploy
    again runs no migration and switches nothing; a deploy while another holds the lock fails naming the
    holder and changes nothing; a migration that loses rows is caught and the database restored."""
    root = site.roots["localhost"]
    site.server.execute("CREATE TABLE deploy_runs (id serial PRIMARY KEY)", site.database)
    migration = "INSERT INTO deploy_runs DEFAULT VALUES"
    ok(site.deploy("r1", "1.0.0", "good", migration))
    pids = sorted(p[0] for p in site.pm2["localhost"].apps()["shop-web"])

    # the same deploy again: no migration, no switch, no reload
    ok(site.deploy("r1", "1.0.0", "good", migration))
    assert site.server.execute("SELECT count(*) FROM deploy_runs", site.database) == [(1,)]
    assert sorted(p[0] for p in site.pm2["localhost"].apps()["shop-web"]) == pids
    assert site.last_report()["status"] == "success" and site.served() == (200, "1.0.0")

    # someone else holds the lock: the deploy fails naming them, and nothing changes
    held = run_module("deploy_lock", dict(path=site.lock_path(), state="acquired", owner="alice@ops",
                                          reason="hotfix by hand", token="alice-hotfix-1"))
    assert held.get("changed"), held
    snapshot, rows = tree_snapshot(os.path.join(root, "releases")), fingerprint(site)
    proc = failed(site.deploy("r2", "2.0.0", "good", "ALTER TABLE users ADD COLUMN nickname text"))
    assert "alice@ops" in proc.stdout and "hotfix by hand" in proc.stdout
    # one message: the holder, what to do, and that nothing changed - said once
    message = [line for line in proc.stdout.splitlines() if '"msg": "deploy: deploy lock ' in line]
    assert len(message) == 1 and message[0].count("Nothing was changed") == 1, message
    assert message[0].rstrip('"}').endswith("release the lock with state: released and force: true. "
                                            "Nothing was changed."), message
    assert tree_snapshot(os.path.join(root, "releases")) == snapshot and fingerprint(site) == rows
    assert current_of(root) == "r1" and os.path.exists(site.lock_path())
    with open(site.lock_path()) as handle:
        assert json.load(handle)["owner"] == "alice@ops"
    released = run_module("deploy_lock", dict(path=site.lock_path(), state="released", token=held["token"]))
    assert released.get("changed") and not os.path.exists(site.lock_path()), released

    # a migration that loses rows: caught by the row counts, the database restored, r1 still served
    before = fingerprint(site)
    proc = failed(site.deploy("r3", "2.0.0", "good", "DELETE FROM billing.invoices; DELETE FROM orders WHERE id > 5",
                              deploy_restore_db_on_failure=True))
    assert "row counts off" in proc.stdout and "orders 120 -> 5" in proc.stdout
    assert current_of(root) == "r1" and site.served() == (200, "1.0.0")
    assert fingerprint(site) == before
    record = site.records()[-1]
    assert record["deploy_id"] == "r3" and record["extra"]["status"] == "failed"
    assert record["extra"]["db_restored"] == [site.database]
    assert not os.path.exists(site.lock_path())


def test_a_first_deploy_failing_after_its_switch_says_there_was_nothing_to_go_back_to(site):
    """No earlier release: the deploy must not claim to have rolled back - the bad release is current, marked bad."""
    root = site.roots["localhost"]
    proc = failed(site.deploy("r1", "1.0.0", "unhealthy", node_pm2_candidate_check=False))
    assert current_of(root) == "r1" and state_of(root)["r1"] == "bad"
    assert "Not switched back (no release served before, or switching back is off); r1 is marked bad" in proc.stdout
    assert ("Failed after the switch with no earlier release to go back to: r1 is current and marked bad on "
            "localhost; deploy the fixed code under a new release id.") in proc.stdout
    assert "Rolled back:" not in proc.stdout and "every host serves" not in proc.stdout
    assert "No rollback." in proc.stdout
    record, report = site.records()[-1], site.last_report()
    assert record["deploy_id"] == "r1" and record["rolled_back"] is False and "500" in record["error"]
    assert report["status"] == "failed" and report["stranded"] == ["localhost"]
    assert report["hosts"]["localhost"]["result"] == "failed after the switch, no earlier release to go back to"
    assert report["rollback"]["hosts"] == []
