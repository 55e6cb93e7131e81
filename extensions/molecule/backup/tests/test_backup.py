"""The backups on db1: both database units up, two nightly backups kept per database (0600 in 0700
directories, owned by root), each matching its manifest's sha256, size and row counts and holding the
seeded rows, the report private, and no password in anything the backups left on the host."""

import json

import pytest

DEST = "/var/backups/safeship"
DATABASES = ["shop-pg", "shop-mariadb"]
SEEDED = {"users": 3, "orders": 5}


def backups(host, name):
    """The backups (not manifests) in a database's directory, oldest first."""
    listing = host.check_output("ls -1 %s/%s", DEST, name).split()
    return sorted("%s/%s/%s" % (DEST, name, f) for f in listing if not f.endswith(".manifest.json"))


def manifest(host, path):
    return json.loads(host.file(path + ".manifest.json").content_string)


@pytest.mark.parametrize("unit", ["postgresql@15-main", "mariadb"])
def test_database_units_run_and_are_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:5432", "tcp://127.0.0.1:3306"])
def test_database_servers_listen(host, address):
    assert host.socket(address).is_listening


@pytest.mark.parametrize("directory", [DEST] + ["%s/%s" % (DEST, n) for n in DATABASES])
def test_backup_directories_are_private(host, directory):
    d = host.file(directory)
    assert d.is_directory
    assert (d.user, d.group, d.mode) == ("root", "root", 0o700)


@pytest.mark.parametrize("name", DATABASES)
def test_retention_kept_the_two_newest_with_their_manifests(host, name):
    files = host.check_output("ls -1 %s/%s", DEST, name).split()
    kept = backups(host, name)
    assert len(kept) == 2, files
    assert sorted(files) == sorted([p.rsplit("/", 1)[1] for p in kept]
                                   + [p.rsplit("/", 1)[1] + ".manifest.json" for p in kept])
    assert all(".partial" not in f for f in files)


@pytest.mark.parametrize("name", DATABASES)
def test_backups_and_manifests_are_0600_root(host, name):
    for path in backups(host, name):
        for f in (host.file(path), host.file(path + ".manifest.json")):
            assert (f.user, f.group, f.mode) == ("root", "root", 0o600), f.path


@pytest.mark.parametrize("name,engine", [("shop-pg", "postgresql"), ("shop-mariadb", "mysql")])
def test_each_backup_matches_its_manifest(host, name, engine):
    for path in backups(host, name):
        m = manifest(host, path)
        assert host.file(path).sha256sum == m["sha256"]
        assert host.file(path).size == m["size"]
        assert (m["engine"], m["database"], m["label"], m["compression"]) == (engine, "shop", "nightly", "zstd")
        assert m["tables"] == SEEDED
        assert m["file"] == path.rsplit("/", 1)[1]


def test_postgresql_backups_hold_the_rows(host):
    for path in backups(host, "shop-pg"):
        sql = host.check_output("zstd -dc %s | pg_restore --data-only -f - -t users", path)
        assert all(email in sql for email in ("ana@example.org", "bo@example.org", "cy@example.org"))


def test_mariadb_backups_hold_the_rows(host):
    for path in backups(host, "shop-mariadb"):
        sql = host.check_output("zstd -dc %s", path)
        assert "INSERT INTO `users`" in sql and "cy@example.org" in sql
        assert "INSERT INTO `orders`" in sql
        assert "-- Dump completed" in sql


def test_the_report_lists_the_newest_backups(host):
    report = host.file(DEST + "/nightly-report.json")
    assert (report.user, report.mode) == ("root", 0o600)
    data = json.loads(report.content_string)
    assert data["host"] == "db1"
    assert {b["name"]: b["path"] for b in data["backups"]} == {n: backups(host, n)[-1] for n in DATABASES}


def test_no_password_left_on_the_host(host):
    """Neither the backups (compressed or not), their manifests and report, nor a MySQL defaults file
    left in a temporary directory holds either password."""
    variables = host.ansible.get_variables()
    for secret in (variables["shop_pg_backup_password"], variables["shop_mariadb_backup_password"]):
        for where in (DEST, "/tmp", "/root/.ansible", "/var/tmp"):
            found = host.run("grep -rlF -- %s %s", secret, where)
            assert found.rc == 1, found.stdout
        for path in backups(host, "shop-pg") + backups(host, "shop-mariadb"):
            dump = host.run("zstd -dc %s", path)
            assert dump.rc == 0 and dump.stdout_bytes, path
            assert secret.encode() not in dump.stdout_bytes, path


def test_the_databases_are_unchanged(host):
    pg = "runuser -u postgres -- psql -X -tA -d shop -c %s"
    my = "mariadb --batch -N shop -e %s"
    for run in (pg, my):
        assert host.check_output(run, "SELECT count(*) FROM users") == "3"
        assert host.check_output(run, "SELECT count(*) FROM orders") == "5"
