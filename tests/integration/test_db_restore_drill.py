"""db_restore drill: the newest backup restored into a database the module creates, its rows checked
against the manifest, the database dropped again - on real PostgreSQL and MariaDB, and SQLite. The drill
never touches a database that exists, leaves nothing behind when the check fails, and changes nothing in
check mode."""

import json
import os

import pytest

from . import seed


def exists(server, name):
    if server.engine == "postgresql":
        return bool(server.execute("SELECT 1 FROM pg_database WHERE datname = %s", None, (name,)))
    return bool(server.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", None, (name,)))


@pytest.fixture(params=["postgresql", "mysql"])
def backed_up(request, postgres_server, mariadb_server, run_module, tmp_path, unique_name):
    """(server, source database, row counts, backup dir) for each server engine."""
    server = postgres_server if request.param == "postgresql" else mariadb_server
    source = unique_name + "_src"
    counts = (seed.seed_postgres if server.engine == "postgresql" else seed.seed_mysql)(
        server, source, users=20, orders=50, invoices=10)
    dest = str(tmp_path / "backups")
    tables = seed.PG_TABLES if server.engine == "postgresql" else sorted(counts)
    backup = run_module("db_backup", dict(server.conn_params(source), dest=dest, tables=tables))
    assert not backup.get("failed"), backup.get("msg")
    yield server, source, counts, dest, backup
    server.drop_database(source)


def drill(run_module, server, source, target, check_mode=False, **args):
    return run_module("db_restore", dict(server.conn_params(source), target_database=target, drill=True, **args),
                      check_mode=check_mode)


def test_a_drill_restores_checks_and_drops(backed_up, run_module, unique_name):
    server, source, counts, dest, backup = backed_up
    target = unique_name + "_drill"
    check = drill(run_module, server, source, target, True, latest_in=dest)
    assert not check.get("failed"), check.get("msg")
    assert check["drill"] is True and check["dropped"] is False and check["changed"] is False
    assert not exists(server, target)

    result = drill(run_module, server, source, target, latest_in=dest)
    assert not result.get("failed"), result.get("msg")
    assert result["src"] == backup["path"] and result["drill"] is True and result["dropped"] is True
    assert result["tables"] == counts and result["duration"] > 0
    assert result["changed"] is False
    assert not exists(server, target)


def test_a_drill_never_touches_a_database_that_exists(backed_up, run_module):
    server, source, counts, dest, _backup = backed_up
    result = drill(run_module, server, source, source, latest_in=dest)
    assert result.get("failed") and "refusing the drill" in result["msg"] and "exists" in result["msg"]
    assert exists(server, source)
    counted = run_module("db_check", dict(server.conn_params(source), count_tables=sorted(counts)))
    assert counted["tables"] == counts


def test_a_failed_check_still_drops_the_drill_database(backed_up, run_module, unique_name):
    server, source, counts, dest, backup = backed_up
    # the manifest promises one row more than the dump holds (its sha256 covers the dump, not the manifest)
    with open(backup["manifest_path"]) as handle:
        manifest = json.load(handle)
    table = sorted(manifest["tables"])[0]
    manifest["tables"][table] += 1
    with open(backup["manifest_path"], "w") as handle:
        json.dump(manifest, handle)
    target = unique_name + "_drill"
    result = drill(run_module, server, source, target, src=backup["path"])
    assert result.get("failed") and "does not match the backup's manifest" in result["msg"] and table in result["msg"]
    assert not exists(server, target)


def test_sqlite_drill_leaves_no_file(run_module, tmp_path):
    source = str(tmp_path / "app.sqlite")
    counts = seed.seed_sqlite(source, users=10, orders=20, invoices=5)
    backup = run_module("db_backup", dict(engine="sqlite", database=source, dest=str(tmp_path / "b"),
                                          tables=sorted(counts)))
    assert not backup.get("failed"), backup.get("msg")
    target = str(tmp_path / "drill.sqlite")
    result = run_module("db_restore", dict(engine="sqlite", src=backup["path"], target_database=target, drill=True))
    assert not result.get("failed"), result.get("msg")
    assert result["tables"] == counts and result["dropped"] is True
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith("drill.sqlite")]
    both = run_module("db_restore", dict(engine="sqlite", src=backup["path"], target_database=target, drill=True,
                                         force=True))
    assert both.get("failed") and "mutually exclusive: drill|force" in both["msg"]
