"""Faults: each ends in one clear error, and nothing is ever left under a backup's final name."""

import json
import os
import signal
import time

import pytest

from helpers.system import proc_cmdlines

from . import seed

PG_BIN = "/usr/lib/postgresql/15/bin"


def files_in(path):
    return sorted(os.listdir(str(path))) if os.path.isdir(str(path)) else []


def final_names(path):
    """Entries that look like finished backups or manifests (anything but *.partial)."""
    return [f for f in files_in(path) if not f.endswith(".partial")]


def find_pids(*needles):
    return [pid for pid, args in proc_cmdlines(with_pids=True) if all(n in args for n in needles)]


def pg_dump_pids(database):
    """pids of pg_dump processes (argv[0], not a wrapper mentioning it) dumping database."""
    pids = []
    for pid in find_pids("pg_dump", database):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                program = handle.read().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(program) == b"pg_dump":
            pids.append(pid)
    return pids


def wait_for(predicate, timeout=60, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % predicate)


@pytest.fixture(scope="module")
def big_pg(postgres_server):
    """A database whose dump takes long enough to be interrupted (~100 MB of text)."""
    name = "faults_big"
    postgres_server.create_database(name)
    postgres_server.execute("CREATE TABLE events AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS a, "
                            "md5((g * 3)::text) AS b FROM generate_series(1, 1200000) g", name)
    yield name
    postgres_server.drop_database(name)


def slow_dump_args(postgres_server, database, dest):
    # plain + gzip -9 through pg_dump itself: slow enough to catch mid-dump on any machine
    return dict(postgres_server.conn_params(database), dest=str(dest), format="plain", compression="gzip",
                compression_level=9, tables=["events"])


def test_sigkill_of_pg_dump_mid_dump_leaves_nothing(postgres_server, big_pg, run_module, tmp_path):
    dest = tmp_path / "b"
    handle = run_module.start("db_backup", slow_dump_args(postgres_server, big_pg, dest))
    wait_for(lambda: any(f.endswith(".partial") and os.path.getsize(str(dest / f)) > 0 for f in files_in(dest)))
    pids = pg_dump_pids(big_pg)
    assert pids, "pg_dump is not running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    result = handle.wait_result(timeout=120)
    assert result["failed"] is True
    assert "pg_dump was killed by SIGKILL" in result["msg"]
    assert files_in(dest) == []


def test_sigkill_of_the_module_stops_the_dump_and_the_next_run_cleans_up(postgres_server, big_pg, run_module,
                                                                         tmp_path):
    dest = tmp_path / "b"
    args = slow_dump_args(postgres_server, big_pg, dest)
    handle = run_module.start("db_backup", args)
    wait_for(lambda: any(f.endswith(".partial") and os.path.getsize(str(dest / f)) > 0 for f in files_in(dest)))
    os.kill(handle.pid, signal.SIGKILL)
    handle.wait(timeout=30)
    # the dump dies with its parent instead of writing on
    wait_for(lambda: not pg_dump_pids(big_pg), timeout=30)
    assert final_names(dest) == []
    leftovers = files_in(dest)
    assert leftovers and all(f.endswith(".partial") for f in leftovers)

    done = run_module("db_backup", dict(args, compression="zstd", compression_level=1, format="custom"))
    assert not done.get("failed"), done.get("msg")
    assert sorted(os.path.basename(p) for p in done["removed_partials"]) == leftovers
    assert files_in(dest) == sorted([os.path.basename(done["path"]), os.path.basename(done["manifest_path"])])


@pytest.fixture()
def incompressible_pg(postgres_server, unique_name):
    postgres_server.create_database(unique_name)
    # 3 MB of random bytes: compresses to about the same size
    postgres_server.execute("CREATE TABLE blobs AS SELECT g AS id, decode(string_agg(lpad(to_hex((random() * 255)::int),"
                            " 2, '0'), ''), 'hex') AS data FROM generate_series(1, 300) g, generate_series(1, 10000) b "
                            "GROUP BY g", unique_name)
    return unique_name


def test_not_enough_space_is_caught_before_dumping(postgres_server, incompressible_pg, run_module, small_tmpfs):
    with small_tmpfs("1m") as mount:
        dest = os.path.join(mount, "backups")
        result = run_module("db_backup", dict(postgres_server.conn_params(incompressible_pg), dest=dest))
        assert result["failed"] is True
        assert "not enough free space in %s" % dest in result["msg"]
        assert result["needed_bytes"] > result["free_bytes"]
        assert "needed" in result["msg"] and "free" in result["msg"]
        assert not os.path.exists(dest)


@pytest.mark.parametrize("fmt, compression", [("custom", "zstd"), ("custom", "gzip"), ("directory", "none")])
def test_disk_full_mid_dump_leaves_nothing(postgres_server, incompressible_pg, run_module, small_tmpfs, fmt,
                                           compression):
    with small_tmpfs("1m") as mount:
        dest = os.path.join(mount, "backups")
        result = run_module("db_backup", dict(postgres_server.conn_params(incompressible_pg), dest=dest, format=fmt,
                                              compression=compression, check_space=False))
        assert result["failed"] is True
        assert "filled up while writing the backup" in result["msg"]
        assert "No space left on device" in result["msg"]
        assert files_in(dest) == []


def test_disk_full_mid_mysql_dump_leaves_nothing(mariadb_server, run_module, small_tmpfs, unique_name):
    mariadb_server.create_database(unique_name)
    conn = mariadb_server.connect(unique_name)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE blobs (id int primary key, data longblob)")
        cur.executemany("INSERT INTO blobs VALUES (%s, %s)", [(i, os.urandom(10000)) for i in range(300)])
    conn.commit()
    conn.close()
    with small_tmpfs("1m") as mount:
        dest = os.path.join(mount, "backups")
        result = run_module("db_backup", dict(mariadb_server.conn_params(unique_name), dest=dest,
                                              compression="none", check_space=False))
        assert result["failed"] is True
        assert "No space left on device" in result["msg"]
        assert files_in(dest) == []


@pytest.mark.parametrize("server_fixture", ["postgres_server", "mariadb_server"])
def test_server_down_is_one_clear_error(request, server_fixture, run_module, tmp_path):
    server = request.getfixturevalue(server_fixture)
    label = "PostgreSQL" if server_fixture == "postgres_server" else "MySQL"
    database = "postgres" if server_fixture == "postgres_server" else "mysql"
    src = tmp_path / "fake.dump"
    with server.stopped():
        backup = run_module("db_backup", dict(server.conn_params(database), dest=str(tmp_path / "b")))
        check = run_module("db_check", dict(server.conn_params(database)))
    for result in (backup, check):
        assert result["failed"] is True
        assert result["msg"].startswith("cannot connect to %s database %r at 127.0.0.1:%d: connection refused"
                                        % (label, database, server.port))
    assert not (tmp_path / "b").exists()
    assert not src.exists()


@pytest.mark.parametrize("server_fixture", ["postgres_server", "mariadb_server"])
def test_wrong_password_is_one_clear_error(request, server_fixture, run_module, tmp_path):
    server = request.getfixturevalue(server_fixture)
    database = "postgres" if server_fixture == "postgres_server" else "mysql"
    params = dict(server.conn_params(database), login_password="definitely-wrong")
    backup = run_module("db_backup", dict(params, dest=str(tmp_path / "b")))
    check = run_module("db_check", params)
    for result in (backup, check):
        assert result["failed"] is True
        assert "authentication failed for user %r" % params["login_user"] in result["msg"]
        assert "definitely-wrong" not in result.stdout
    assert not (tmp_path / "b").exists()


def test_unknown_database_is_one_clear_error(postgres_server, run_module):
    result = run_module("db_check", postgres_server.conn_params("no_such_db"))
    assert result["failed"] is True
    assert result["msg"] == ("cannot connect to PostgreSQL database 'no_such_db' at 127.0.0.1:%d: the database does "
                             "not exist." % postgres_server.port)


@pytest.mark.parametrize("module, bad, message", [
    ("db_backup", dict(database="x; rm -rf /"), "database 'x; rm -rf /' is not a valid name"),
    ("db_backup", dict(database="../../etc"), "database '../../etc' is not a valid name"),
    ("db_backup", dict(label="../../etc"), "label '../../etc' is not valid"),
    ("db_backup", dict(tables=["users; rm -rf /"]), "table 'users; rm -rf /' is not a valid name"),
    ("db_backup", dict(dest="relative/dir"), "dest 'relative/dir' must be an absolute path"),
    ("db_restore", dict(target_database="x; rm -rf /"), "database 'x; rm -rf /' is not a valid name"),
    ("db_restore", dict(target_database="../../etc"), "database '../../etc' is not a valid name"),
    ("db_check", dict(count_tables=["a; rm -rf /"]), "table 'a; rm -rf /' is not a valid name"),
    ("db_check", dict(database="$(reboot)"), "database '$(reboot)' is not a valid name"),
])
def test_malicious_names_are_refused_before_anything_runs(postgres_server, run_module, tmp_path, module, bad,
                                                          message):
    backup = run_module("db_backup", dict(postgres_server.conn_params("postgres"), dest=str(tmp_path / "ok")))
    args = dict(postgres_server.conn_params("postgres"))
    if module == "db_backup":
        args["dest"] = str(tmp_path / "b")
    if module == "db_restore":
        args["src"] = backup["path"]
    args.update(bad)
    result = run_module(module, args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert result["executed_commands"] == []
    assert not (tmp_path / "b").exists()


def test_sqlite_malicious_paths_are_refused(run_module, tmp_path):
    result = run_module("db_backup", dict(engine="sqlite", database="../../etc/passwd", dest=str(tmp_path / "b")))
    assert result["failed"] is True and "must be the absolute path" in result["msg"]
    result = run_module("db_backup", dict(engine="sqlite", database="/etc/passwd", dest=str(tmp_path / "b")))
    assert result["failed"] is True and "is not a SQLite database file" in result["msg"]
    assert not (tmp_path / "b").exists()


@pytest.fixture()
def small_pg_backup(postgres_server, run_module, tmp_path, unique_name):
    source = unique_name + "_src"
    seed.seed_postgres(postgres_server, source, users=30, orders=60, invoices=5)
    backup = run_module("db_backup", dict(postgres_server.conn_params(source), dest=str(tmp_path / "b"),
                                          tables=seed.PG_TABLES, compression="none"))
    assert not backup.get("failed"), backup.get("msg")
    return backup


def database_exists(server, name):
    return bool(server.execute("SELECT 1 FROM pg_database WHERE datname = %s", params=(name,)))


def test_corrupt_backup_is_refused_and_nothing_is_created(postgres_server, small_pg_backup, run_module, unique_name):
    with open(small_pg_backup["path"], "r+b") as handle:
        handle.seek(small_pg_backup["size"] // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    result = run_module("db_restore", dict(postgres_server.conn_params("postgres"), src=small_pg_backup["path"],
                                           target_database=unique_name))
    assert result["failed"] is True
    assert "does not match its manifest" in result["msg"] and "Refusing to restore" in result["msg"]
    assert not database_exists(postgres_server, unique_name)


def test_restore_fails_when_rows_differ_from_the_manifest(postgres_server, small_pg_backup, run_module, unique_name):
    manifest = dict(small_pg_backup["manifest"])
    manifest["tables"] = dict(manifest["tables"], orders=61)
    with open(small_pg_backup["manifest_path"], "w") as handle:
        json.dump(manifest, handle)
    result = run_module("db_restore", dict(postgres_server.conn_params("postgres"), src=small_pg_backup["path"],
                                           target_database=unique_name))
    assert result["failed"] is True
    assert "does not match the backup's manifest: orders: 60 rows, backup had 61" in result["msg"]


def test_restore_needs_a_manifest_and_the_right_engine(mariadb_server, small_pg_backup, run_module, tmp_path,
                                                       unique_name):
    wrong_engine = run_module("db_restore", dict(mariadb_server.conn_params("mysql"), src=small_pg_backup["path"],
                                                 target_database=unique_name))
    assert wrong_engine["failed"] is True
    assert "is a postgresql backup; it cannot be restored with engine mysql" in wrong_engine["msg"]
    os.unlink(small_pg_backup["manifest_path"])
    no_manifest = run_module("db_restore", dict(mariadb_server.conn_params("mysql"), src=small_pg_backup["path"],
                                                target_database=unique_name))
    assert no_manifest["failed"] is True and "has no manifest" in no_manifest["msg"]


@pytest.fixture()
def lying_tools(tmp_path):
    """A client_bin_dir whose dump programs exit 0 after writing a broken dump (as pg_dump can)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("psql", "pg_restore"):
        os.symlink(os.path.join(PG_BIN, tool), str(bindir / tool))
    for tool in ("mariadb", "mysql"):
        os.symlink("/usr/bin/%s" % tool, str(bindir / tool))
    scripts = {
        # writes to --file=PATH when given (uncompressed dumps), else to stdout
        "pg_dump": '#!/bin/sh\nout=\nfor a in "$@"; do case "$a" in --file=*) out="${a#--file=}";; esac; done\n'
                   'if echo "$*" | grep -q format=p; then\n'
                   '  if [ -n "$out" ]; then %s/pg_dump "$@"; truncate -s 1500 "$out";\n'
                   '  else %s/pg_dump "$@" | head -c 1500; fi\n'
                   'elif [ -n "$out" ]; then printf "PGDMP not really an archive" > "$out";\n'
                   'else printf "PGDMP not really an archive"; fi\nexit 0\n' % (PG_BIN, PG_BIN),
        "mariadb-dump": '#!/bin/sh\n/usr/bin/mariadb-dump "$@" | head -c 1500\nexit 0\n',
    }
    for name, text in scripts.items():
        path = bindir / name
        path.write_text(text)
        path.chmod(0o755)
    return str(bindir)


@pytest.mark.parametrize("fmt, compression, message", [
    ("custom", "zstd", "pg_restore --list exited with code 1"),
    ("custom", "none", "pg_restore --list exited with code 1"),
    ("plain", "zstd", "does not end with its completion line"),
    ("plain", "none", "does not end with its completion line"),
])
def test_pg_dump_exiting_0_with_a_broken_dump_is_caught(postgres_server, lying_tools, run_module, tmp_path,
                                                        unique_name, fmt, compression, message):
    seed.seed_postgres(postgres_server, unique_name, users=300, orders=300, invoices=3)
    dest = tmp_path / "b"
    result = run_module("db_backup", dict(postgres_server.conn_params(unique_name), dest=str(dest), format=fmt,
                                          compression=compression, client_bin_dir=lying_tools))
    assert result["failed"] is True
    assert message in result["msg"]
    assert files_in(dest) == []


def test_mysqldump_exiting_0_with_a_truncated_dump_is_caught(mariadb_server, lying_tools, run_module, tmp_path,
                                                             unique_name):
    seed.seed_mysql(mariadb_server, unique_name, users=300, orders=300, invoices=3)
    dest = tmp_path / "b"
    result = run_module("db_backup", dict(mariadb_server.conn_params(unique_name), dest=str(dest),
                                          client_bin_dir=lying_tools))
    assert result["failed"] is True
    assert "does not end with its completion line ('-- Dump completed')" in result["msg"]
    assert files_in(dest) == []


def test_keep_deletes_only_older_backups_of_the_same_label(postgres_server, run_module, tmp_path, unique_name):
    seed.seed_postgres(postgres_server, unique_name, users=5, orders=5, invoices=1)
    dest = tmp_path / "b"
    base = dict(postgres_server.conn_params(unique_name), dest=str(dest))
    other = run_module("db_backup", dict(base, label="nightly"))
    paths = [run_module("db_backup", dict(base, label="predeploy", keep=2))["path"] for dummy in range(3)]
    last = run_module("db_backup", dict(base, label="predeploy", keep=2))
    assert last["deleted"] == [paths[1]]
    remaining = final_names(dest)
    for kept in (paths[2], last["path"], other["path"]):
        assert os.path.basename(kept) in remaining
    for gone in paths[:2]:
        assert os.path.basename(gone) not in remaining
        assert os.path.basename(gone) + ".manifest.json" not in remaining


@pytest.mark.parametrize("server_fixture", ["postgres_server", "mariadb_server"])
def test_password_never_in_argv_or_output(request, server_fixture, run_module, ps_sampler, tmp_path, unique_name):
    server = request.getfixturevalue(server_fixture)
    source = unique_name + "_src"
    if server_fixture == "postgres_server":
        seed.seed_postgres(server, source, users=2000, orders=50000, invoices=100)
        tables = seed.PG_TABLES
    else:
        seed.seed_mysql(server, source, users=2000, orders=20000, invoices=100)
        tables = seed.MYSQL_TABLES
    params = server.conn_params(source)
    password = params["login_password"]
    assert len(password) >= 12
    with ps_sampler() as sampler:
        backup = run_module("db_backup", dict(params, dest=str(tmp_path / "b"), tables=tables))
        check = run_module("db_check", dict(params, count_tables=tables))
        restore = run_module("db_restore", dict(params, src=backup["path"], target_database=unique_name))
    for result in (backup, check, restore):
        assert not result.get("failed"), result.get("msg")
        assert password not in result.stdout and password not in result.stderr
    tools = ("pg_dump", "pg_restore", "psql") if server_fixture == "postgres_server" else ("mariadb-dump", "mariadb")
    seen = [args for args in sampler.commands if any(t in args for t in tools)]
    assert seen, "the sampler saw none of %s running" % (tools,)
    assert not [args for args in sampler.commands if password in args]
    with open(backup["manifest_path"]) as handle:
        assert password not in handle.read()


def test_failed_forced_restore_leaves_the_target_untouched(postgres_server, small_pg_backup, run_module, unique_name):
    """force replaces a database only once the backup is proven restored (scratch database, then rename)."""
    seed.seed_postgres(postgres_server, unique_name, users=7, orders=9, invoices=1)
    before = seed.fingerprint_postgres(postgres_server, unique_name)
    manifest = dict(small_pg_backup["manifest"], tables=dict(small_pg_backup["manifest"]["tables"], users=999))
    with open(small_pg_backup["manifest_path"], "w") as handle:
        json.dump(manifest, handle)
    result = run_module("db_restore", dict(postgres_server.conn_params("postgres"), src=small_pg_backup["path"],
                                           target_database=unique_name, force=True))
    assert result["failed"] is True and "users: 30 rows, backup had 999" in result["msg"]
    assert seed.fingerprint_postgres(postgres_server, unique_name) == before
    leftovers = postgres_server.execute("SELECT datname FROM pg_database WHERE datname LIKE 'safeship\\_%'")
    assert leftovers == []


def test_forced_restore_ends_open_sessions_and_swaps(postgres_server, small_pg_backup, run_module, unique_name):
    seed.seed_postgres(postgres_server, unique_name, users=7, orders=9, invoices=1)
    idle = postgres_server.connect(unique_name)  # an application session left open on the target
    try:
        result = run_module("db_restore", dict(postgres_server.conn_params("postgres"),
                                               src=small_pg_backup["manifest_path"], target_database=unique_name,
                                               force=True))
        assert not result.get("failed"), result.get("msg")
        assert result["replaced"] is True
        assert result["tables"] == small_pg_backup["manifest"]["tables"]
        assert postgres_server.execute("SELECT count(*) FROM users", unique_name)[0][0] == 30
    finally:
        try:
            idle.close()
        except Exception:
            pass
