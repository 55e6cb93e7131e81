"""Every format x compression round-trips backup -> restore with equal rows, on real servers."""

import json
import os
import stat

import pytest

from . import seed

PG_CASES = [
    ("custom", "none"), ("custom", "gzip"), ("custom", "zstd"),
    ("directory", "none"), ("directory", "gzip"),
    ("plain", "none"), ("plain", "gzip"), ("plain", "zstd"),
]
MYSQL_CASES = [("plain", "none"), ("plain", "gzip"), ("plain", "zstd")]
SQLITE_CASES = [("file", "none"), ("file", "gzip"), ("file", "zstd"),
                ("plain", "none"), ("plain", "gzip"), ("plain", "zstd")]


@pytest.fixture(scope="module")
def pg_source(postgres_server):
    name = "rt_source"
    counts = seed.seed_postgres(postgres_server, name)
    yield name, counts, seed.fingerprint_postgres(postgres_server, name)
    postgres_server.drop_database(name)


@pytest.fixture(scope="module")
def mysql_source(mariadb_server):
    name = "rt_source"
    counts = seed.seed_mysql(mariadb_server, name)
    yield name, counts, seed.fingerprint_mysql(mariadb_server, name)
    mariadb_server.drop_database(name)


def assert_private_backup(result, dest):
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o700
    path = result["path"]
    if os.path.isdir(path):
        for dirpath, dummy, filenames in os.walk(path):
            assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700
            for filename in filenames:
                assert stat.S_IMODE(os.stat(os.path.join(dirpath, filename)).st_mode) == 0o600
    else:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(result["manifest_path"]).st_mode) == 0o600
    # nothing else is left behind: the backup, its manifest, no partials
    assert sorted(os.listdir(str(dest))) == sorted([os.path.basename(path), os.path.basename(result["manifest_path"])])


def assert_manifest(result, engine, database, fmt, compression, counts):
    with open(result["manifest_path"]) as handle:
        manifest = json.load(handle)
    assert manifest == result["manifest"]
    assert manifest["engine"] == engine
    assert manifest["database"] == database
    assert manifest["format"] == fmt
    assert manifest["compression"] == compression
    assert manifest["tables"] == counts
    assert manifest["size"] == result["size"] > 0
    assert manifest["sha256"] == result["sha256"]
    assert manifest["server_version"]
    assert manifest["created_at"].endswith("Z")
    assert manifest["duration"] >= 0
    assert manifest["verified"]["method"]


@pytest.mark.parametrize("fmt, compression", PG_CASES)
def test_postgresql_roundtrip(postgres_server, pg_source, run_module, tmp_path, unique_name, fmt, compression):
    source, counts, fingerprint = pg_source
    dest = tmp_path / "backups"
    backup = run_module("db_backup", dict(postgres_server.conn_params(source), dest=str(dest), format=fmt,
                                          compression=compression, tables=seed.PG_TABLES))
    assert not backup.get("failed"), backup.get("msg")
    assert backup["changed"] is True
    assert_private_backup(backup, dest)
    assert_manifest(backup, "postgresql", source, fmt, compression, counts)

    jobs = 2 if fmt in ("custom", "directory") else 1
    restore = run_module("db_restore", dict(postgres_server.conn_params(source), src=backup["path"],
                                            target_database=unique_name, jobs=jobs))
    assert not restore.get("failed"), restore.get("msg")
    assert restore["changed"] is True and restore["created"] is True
    assert restore["tables"] == counts
    assert seed.fingerprint_postgres(postgres_server, unique_name) == fingerprint
    # the view came back too
    assert postgres_server.execute("SELECT count(*) FROM big_orders", unique_name)[0][0] > 0


@pytest.mark.parametrize("fmt, compression", MYSQL_CASES)
def test_mariadb_roundtrip(mariadb_server, mysql_source, run_module, tmp_path, unique_name, fmt, compression):
    source, counts, fingerprint = mysql_source
    dest = tmp_path / "backups"
    backup = run_module("db_backup", dict(mariadb_server.conn_params(source), dest=str(dest),
                                          compression=compression, tables=seed.MYSQL_TABLES))
    assert not backup.get("failed"), backup.get("msg")
    assert_private_backup(backup, dest)
    assert_manifest(backup, "mysql", source, fmt, compression, counts)

    restore = run_module("db_restore", dict(mariadb_server.conn_params(source), src=backup["manifest_path"],
                                            target_database=unique_name))
    assert not restore.get("failed"), restore.get("msg")
    assert restore["tables"] == counts
    assert seed.fingerprint_mysql(mariadb_server, unique_name) == fingerprint
    triggers = mariadb_server.execute("SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = %s",
                                      params=(unique_name,))
    assert triggers[0][0] == 1


@pytest.mark.parametrize("fmt, compression", SQLITE_CASES)
def test_sqlite_roundtrip(run_module, tmp_path, fmt, compression):
    source = str(tmp_path / "app.sqlite")
    counts = seed.seed_sqlite(source)
    fingerprint = seed.fingerprint_sqlite(source)
    dest = tmp_path / "backups"
    backup = run_module("db_backup", dict(engine="sqlite", database=source, dest=str(dest), format=fmt,
                                          compression=compression, tables=seed.SQLITE_TABLES))
    assert not backup.get("failed"), backup.get("msg")
    assert_private_backup(backup, dest)
    assert_manifest(backup, "sqlite", source, fmt, compression, counts)

    target = str(tmp_path / "restored" / "app.sqlite")
    os.makedirs(os.path.dirname(target))
    restore = run_module("db_restore", dict(engine="sqlite", src=backup["path"], target_database=target))
    assert not restore.get("failed"), restore.get("msg")
    assert restore["tables"] == counts
    assert seed.fingerprint_sqlite(target) == fingerprint
    assert sorted(os.listdir(os.path.dirname(target))) == ["app.sqlite"]


def test_postgres_counts_come_from_the_dumped_snapshot(postgres_server, run_module, tmp_path, unique_name):
    """Rows committed while pg_dump runs are neither in the dump nor in the manifest's counts."""
    source = unique_name + "_src"
    seed.seed_postgres(postgres_server, source, users=50, orders=200_000, invoices=10)
    handle = run_module.start("db_backup", dict(postgres_server.conn_params(source), dest=str(tmp_path / "b"),
                                                format="plain", compression="gzip", compression_level=9,
                                                tables=["users"]))
    inserted = 0
    while handle.poll() is None and inserted < 400:
        postgres_server.execute("INSERT INTO users (email) VALUES ('late%d@example.com')" % inserted, source)
        inserted += 1
    backup = handle.wait_result(timeout=300)
    assert not backup.get("failed"), backup.get("msg")
    assert inserted > 0
    restore = run_module("db_restore", dict(postgres_server.conn_params(source), src=backup["path"],
                                            target_database=unique_name))
    assert not restore.get("failed"), restore.get("msg")
    assert restore["tables"]["users"] == backup["manifest"]["tables"]["users"]
