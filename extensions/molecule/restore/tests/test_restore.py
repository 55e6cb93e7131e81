"""db1 after the drill and the confirmed restore: both database units up, every seeded row back as it
was, the restored PostgreSQL database still owned by the app user, no scratch database left, and the
backups themselves untouched (still matching their manifests)."""

import json

import pytest

DEST = "/var/backups/safeship"
PG = "runuser -u postgres -- psql -X -tA -d %s -c %s"
MY = "mariadb --batch -N %s -e %s"
USERS = "1:ana@example.org,2:bo@example.org,3:cy@example.org"
ORDERS_PG = "1:1:10.50,2:1:3.20,3:2:99.00,4:3:5.00,5:3:7.25"


@pytest.mark.parametrize("unit", ["postgresql@15-main", "mariadb"])
def test_database_units_run_and_are_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:5432", "tcp://127.0.0.1:3306"])
def test_database_servers_listen(host, address):
    assert host.socket(address).is_listening


def test_postgresql_rows_are_back(host):
    assert host.check_output(PG, "shop", "SELECT string_agg(id || ':' || email, ',' ORDER BY id) FROM users") == USERS
    assert host.check_output(
        PG, "shop", "SELECT string_agg(id || ':' || user_id || ':' || total, ',' ORDER BY id) FROM orders") == ORDERS_PG


def test_mariadb_rows_are_back(host):
    assert host.check_output(MY, "shop", "SELECT GROUP_CONCAT(id, ':', email ORDER BY id) FROM users") == USERS
    assert host.check_output(
        MY, "shop", "SELECT GROUP_CONCAT(id, ':', user_id, ':', total ORDER BY id) FROM orders") == ORDERS_PG


def test_postgresql_restored_database_keeps_its_owner(host):
    assert host.check_output(PG, "postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'") == "shop"
    owners = host.check_output(PG, "shop", "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert owners == "shop"


def test_the_app_user_still_logs_in_with_its_password(host):
    password = host.ansible.get_variables()["shop_pg_password"]
    count = host.run("PGPASSWORD=%s psql -X -tA -h 127.0.0.1 -U shop -d shop -c %s", password,
                     "SELECT count(*) FROM orders")
    assert count.rc == 0, count.stderr
    assert count.stdout.strip() == "5"


def test_no_scratch_database_is_left(host):
    assert host.check_output(PG, "postgres", "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'shop%'") == "shop"
    assert host.check_output("mariadb --batch -N -e %s", "SHOW DATABASES LIKE 'shop%'") == "shop"


@pytest.mark.parametrize("name", ["shop-pg", "shop-mariadb"])
def test_the_backup_is_untouched(host, name):
    manifests = host.check_output("ls -1 %s/%s/*.manifest.json", DEST, name).split()
    assert len(manifests) == 1
    manifest = json.loads(host.file(manifests[0]).content_string)
    backup = host.file(manifests[0][: -len(".manifest.json")])
    assert (backup.user, backup.mode) == ("root", 0o600)
    assert backup.sha256sum == manifest["sha256"]
    assert manifest["tables"] == {"users": 3, "orders": 5}
