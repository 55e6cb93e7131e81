"""Each module run four ways: check, real, again, again in check; `changed` asserted each time."""

import os

from . import seed


def listing(path):
    return sorted(os.listdir(str(path))) if os.path.exists(str(path)) else None


def test_db_backup_four_ways(postgres_server, run_module, tmp_path, unique_name):
    seed.seed_postgres(postgres_server, unique_name, users=20, orders=50, invoices=5)
    dest = tmp_path / "backups"
    args = dict(postgres_server.conn_params(unique_name), dest=str(dest), tables=["users"], keep=5)

    check = run_module("db_backup", args, check_mode=True)
    assert not check.get("failed"), check.get("msg")
    assert check["changed"] is True
    assert check["path"].startswith(str(dest) + "/" + unique_name + "_")
    assert check["estimated_size"] > 0 and check["free_space"] > 0
    assert listing(dest) is None  # not even the directory

    first = run_module("db_backup", args)
    assert first["changed"] is True and os.path.isfile(first["path"])

    again = run_module("db_backup", args)
    # a backup is a new file every time: changed, and the first one is still there
    assert again["changed"] is True and again["path"] != first["path"]
    assert os.path.isfile(first["path"]) and os.path.isfile(again["path"])
    assert again["estimated_size"] == int(first["size"] * 1.2)  # estimated from the previous backup

    before = listing(dest)
    check_again = run_module("db_backup", args, check_mode=True)
    assert check_again["changed"] is True
    assert listing(dest) == before


def test_db_restore_four_ways(postgres_server, run_module, tmp_path, unique_name):
    source = unique_name + "_src"
    counts = seed.seed_postgres(postgres_server, source, users=20, orders=50, invoices=5)
    backup = run_module("db_backup", dict(postgres_server.conn_params(source), dest=str(tmp_path / "b"),
                                          tables=seed.PG_TABLES))
    args = dict(postgres_server.conn_params(source), src=backup["path"], target_database=unique_name)

    def target_exists():
        return bool(postgres_server.execute("SELECT 1 FROM pg_database WHERE datname = %s", params=(unique_name,)))

    check = run_module("db_restore", args, check_mode=True)
    assert not check.get("failed"), check.get("msg")
    assert check["changed"] is True and check["created"] is True
    assert not target_exists()

    real = run_module("db_restore", args)
    assert real["changed"] is True and real["tables"] == counts
    fingerprint = seed.fingerprint_postgres(postgres_server, unique_name)

    # Again: the target now holds tables; replacing them needs force. Refused, nothing changed.
    again = run_module("db_restore", args)
    assert again.get("failed") is True and again["changed"] is False
    assert "set force: true" in again["msg"].lower()
    postgres_server.execute("INSERT INTO users (email) VALUES ('kept@example.com')", unique_name)
    check_again = run_module("db_restore", args, check_mode=True)
    assert check_again.get("failed") is True and "force" in check_again["msg"]
    assert postgres_server.execute("SELECT count(*) FROM users WHERE email = 'kept@example.com'", unique_name)[0][0] == 1

    forced_check = run_module("db_restore", dict(args, force=True), check_mode=True)
    assert forced_check["changed"] is True and forced_check["replaced"] is True
    assert postgres_server.execute("SELECT count(*) FROM users WHERE email = 'kept@example.com'", unique_name)[0][0] == 1

    forced = run_module("db_restore", dict(args, force=True))
    assert forced["changed"] is True and forced["replaced"] is True
    assert seed.fingerprint_postgres(postgres_server, unique_name) == fingerprint


def test_db_restore_fills_an_existing_empty_database(mariadb_server, run_module, tmp_path, unique_name):
    source = unique_name + "_src"
    counts = seed.seed_mysql(mariadb_server, source, users=10, orders=20, invoices=3)
    backup = run_module("db_backup", dict(mariadb_server.conn_params(source), dest=str(tmp_path / "b"),
                                          tables=seed.MYSQL_TABLES))
    mariadb_server.create_database(unique_name)
    restored = run_module("db_restore", dict(mariadb_server.conn_params(source), src=backup["path"],
                                             target_database=unique_name))
    assert restored["changed"] is True and restored["created"] is False and restored["replaced"] is False
    assert restored["tables"] == counts


def test_db_check_four_ways(mariadb_server, run_module, unique_name):
    counts = seed.seed_mysql(mariadb_server, unique_name, users=10, orders=20, invoices=3)
    args = dict(mariadb_server.conn_params(unique_name), count_tables=seed.MYSQL_TABLES,
                required_tables=["users"], compare_to=counts)
    results = [run_module("db_check", args, check_mode=mode) for mode in (True, False, False, True)]
    for result in results:
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is False
        assert result["tables"] == counts
        assert result["missing_tables"] == []
        assert result["differences"] == []
        assert result["can_migrate"] is True
        assert result["server_version"].startswith("10.")


def test_db_check_postgres_reports_grants_and_differences(postgres_server, run_module, unique_name):
    counts = seed.seed_postgres(postgres_server, unique_name, users=10, orders=20, invoices=3)
    reader_role = unique_name + "_reader"
    postgres_server.execute("CREATE ROLE %s LOGIN PASSWORD 'reader-pw'" % reader_role)
    admin = run_module("db_check", dict(postgres_server.conn_params(unique_name), count_tables=seed.PG_TABLES))
    assert admin["tables"] == counts and admin["can_migrate"] is True
    assert admin["size"] > 0

    reader = run_module("db_check", dict(postgres_server.conn_params(unique_name), login_user=reader_role,
                                         login_password="reader-pw", require_migrate_privileges=True))
    assert reader["failed"] is True
    assert "may not run migrations" in reader["msg"]
    assert reader["privileges"]["owns_all_tables"] is False

    postgres_server.execute("DELETE FROM orders WHERE id > 10", unique_name)
    off = run_module("db_check", dict(postgres_server.conn_params(unique_name), compare_to=admin,
                                      tolerance={"orders": "10%"}))
    assert off["failed"] is True
    assert [d["table"] for d in off["differences"]] == ["orders"]
    assert "orders 20 -> 10" in off["msg"]

    tolerated = run_module("db_check", dict(postgres_server.conn_params(unique_name), compare_to=admin,
                                            tolerance={"orders": "50%"}))
    assert not tolerated.get("failed"), tolerated.get("msg")

    missing = run_module("db_check", dict(postgres_server.conn_params(unique_name),
                                          required_tables=["users", "migrations", "billing.nope"]))
    assert missing["failed"] is True
    assert missing["missing_tables"] == ["migrations", "billing.nope"]
    assert "required table(s) missing: migrations, billing.nope" in missing["msg"]
