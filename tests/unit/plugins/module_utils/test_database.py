import os
import sqlite3
import stat

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._database import (
    MysqlEngine,
    PostgresEngine,
    SqliteEngine,
    connect,
)
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandRunner

from .fake_module import FakeModule

PASSWORD = "s3cr3t-p@ss"


def params(engine, **extra):
    base = dict(engine=engine, login_host="db.example", login_port=6543, login_user="deploy",
                login_password=PASSWORD, login_unix_socket=None, database="app", ssl_mode=None, ca_cert=None,
                ssl_cert=None, ssl_key=None, connect_timeout=10, client_bin_dir=None)
    base.update(extra)
    return base


def test_postgres_password_goes_to_the_environment_only():
    module = FakeModule(outputs=[(0, "15.4 (Debian)\n", "")])
    runner = CommandRunner(module)
    engine = connect(params("postgresql", ssl_mode="verify-full"), runner)
    assert engine.server_version() == "15.4"
    argv, kwargs = module.calls[0]
    assert PASSWORD not in " ".join(argv)
    assert kwargs["environ_update"]["PGPASSWORD"] == PASSWORD
    assert kwargs["environ_update"]["PGSSLMODE"] == "verify-full"
    assert argv[argv.index("-h") + 1] == "db.example"
    assert argv[argv.index("-p") + 1] == "6543"
    assert "-w" in argv  # never prompts
    assert ["-d", "app"] == argv[argv.index("-d"):argv.index("-d") + 2]


def test_postgres_unix_socket_wins_over_host():
    module = FakeModule()
    engine = PostgresEngine(params("postgresql", login_unix_socket="/run/postgresql"), CommandRunner(module), "app")
    assert engine.conn_args()[:2] == ["-h", "/run/postgresql"]


def test_mysql_password_goes_to_a_private_defaults_file():
    module = FakeModule(outputs=[(0, "10.11.6-MariaDB\n", "")])
    runner = CommandRunner(module)
    engine = connect(params("mysql", login_password='pa"ss\\word'), runner)
    assert engine.server_version() == "10.11.6-MariaDB"
    argv, kwargs = module.calls[0]
    assert 'pa"ss' not in " ".join(argv)
    assert argv[1].startswith("--defaults-extra-file=")
    path = argv[1].split("=", 1)[1]
    assert os.path.dirname(path) == module.tmpdir
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    content = open(path).read()
    assert "password='pa\"ss\\\\word'" in content
    assert "port=\"6543\"" in content
    assert "protocol=TCP" in content


def test_mysql_password_with_both_quotes_is_refused():
    engine = MysqlEngine(params("mysql", login_password="a'b\"c"), CommandRunner(FakeModule()), "app")
    with pytest.raises(SafeshipError, match="both kinds of quotes"):
        engine.defaults_file()


@pytest.mark.parametrize("stderr, fragment", [
    ('psql: error: connection to server at "127.0.0.1", port 5 failed: Connection refused', "connection refused"),
    ('psql: error: connection to server at "h", port 5 failed: FATAL:  password authentication failed for user "x"',
     "authentication failed for user 'deploy'"),
    ("psql: error: fe_sendauth: no password supplied", "authentication failed"),
    ('psql: error: connection to server failed: FATAL:  database "app" does not exist', "the database does not exist"),
    ('psql: error: could not translate host name "nope" to address', "unknown host"),
    ("psql: error: timeout expired", "timed out after 10s"),
])
def test_postgres_connection_errors_are_one_clear_sentence(stderr, fragment):
    module = FakeModule(outputs=[(2, "", stderr)])
    engine = connect(params("postgresql"), CommandRunner(module))
    with pytest.raises(SafeshipError) as err:
        engine.server_version()
    assert fragment in err.value.msg
    assert "PostgreSQL database 'app' at db.example:6543" in err.value.msg


@pytest.mark.parametrize("stderr, fragment", [
    ("ERROR 2003 (HY000): Can't connect to MySQL server on 'db' (111)", "connection refused"),
    ("ERROR 2002 (HY000): Can't connect to local server through socket '/x' (2)", "connection refused"),
    ("ERROR 1045 (28000): Access denied for user 'deploy'@'h' (using password: YES)", "authentication failed"),
    ("ERROR 1049 (42000): Unknown database 'app'", "the database does not exist"),
    ("ERROR 2005 (HY000): Unknown server host 'nope' (-2)", "cannot connect"),
])
def test_mysql_connection_errors_are_one_clear_sentence(stderr, fragment):
    module = FakeModule(outputs=[(1, "", stderr)])
    engine = connect(params("mysql"), CommandRunner(module))
    with pytest.raises(SafeshipError) as err:
        engine.server_version()
    assert fragment in err.value.msg


def test_other_errors_keep_the_tools_message():
    module = FakeModule(outputs=[(1, "", 'ERROR:  relation "x" does not exist')])
    engine = connect(params("postgresql"), CommandRunner(module))
    with pytest.raises(SafeshipError) as err:
        engine.query("SELECT * FROM x")
    assert 'relation "x" does not exist' in err.value.msg


@pytest.mark.parametrize("database", ["relative.sqlite", "../../etc", None])
def test_sqlite_needs_an_absolute_path(database):
    with pytest.raises(SafeshipError, match="must be the absolute path"):
        SqliteEngine(params("sqlite"), CommandRunner(FakeModule()), database)


def test_sqlite_refuses_a_file_that_is_not_sqlite(tmp_path):
    bogus = tmp_path / "db.sqlite"
    bogus.write_text("not a database at all")
    engine = SqliteEngine(params("sqlite"), CommandRunner(FakeModule()), str(bogus))
    with pytest.raises(SafeshipError, match="is not a SQLite database file"):
        engine.server_version() and engine.query("SELECT 1")


def test_quoting_of_schema_qualified_tables():
    module = FakeModule()
    pg = connect(params("postgresql"), CommandRunner(module))
    my = connect(params("mysql"), CommandRunner(module))
    assert pg.quote_table("app.users") == '"app"."users"'
    assert my.quote_table("users") == "`users`"


# ---- the migrations of many databases (tenant_migrate's up-to-date check), per engine -------------------------

def test_postgres_migrations_script_and_parser():
    script = PostgresEngine.migrations_script(["db_a", "db_b"], "migrations")
    assert script.splitlines()[:3] == ["\\echo '@@safeship-database db_a'", "\\connect db_a",
                                       "SELECT '@@safeship-ok' UNION ALL SELECT migration FROM \"migrations\";"]
    with pytest.raises(SafeshipError, match="is not a valid name"):
        PostgresEngine.migrations_script(["db_a; \\! rm -rf /"], "migrations")
    with pytest.raises(SafeshipError, match="migrations table 'x\"y' is not a valid table name"):
        PostgresEngine.migrations_script(["db_a"], 'x"y')
    # db_a: ok with two; db_b: its query failed (no ok marker); db_c: ok and empty
    output = ("@@safeship-database db_a\n@@safeship-ok\n2020_one\n2020_two\n@@safeship-database db_b\n"
              "@@safeship-database db_c\n@@safeship-ok\n")
    assert PostgresEngine.parse_migrations(output) == {"db_a": ["2020_one", "2020_two"], "db_c": []}


def test_postgres_applied_migrations_splits_the_databases_over_concurrent_psql(monkeypatch):
    runner = CommandRunner(FakeModule())
    engine = PostgresEngine(params("postgresql"), runner, "postgres")
    started = []

    class Fake(object):
        def __init__(self, argv, **kwargs):
            self.argv = argv
            started.append(self)

        def communicate(self, data):
            dbs = [line.split()[-1] for line in data.decode().splitlines() if line.startswith("\\connect")]
            out = "".join("@@safeship-database %s\n@@safeship-ok\nm_%s\n" % (db, db) for db in dbs)
            return out.encode(), b""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(runner, "spawn", Fake)
    applied, problems = engine.applied_migrations(["t1", "t2", "t3", "t4", "t5"], "migrations", concurrency=2)
    assert problems == [] and applied == dict(("t%d" % n, ["m_t%d" % n]) for n in range(1, 6))
    assert len(started) == 2 and started[0].argv[-4:] == ["-d", "postgres", "-f", "-"]
    assert "ON_ERROR_STOP=0" in started[0].argv and PASSWORD not in " ".join(started[0].argv)


def test_mysql_migrations_script_parser_and_one_client_for_all():
    script = MysqlEngine.migrations_script(["db_a", "db_b"], "migrations")
    assert "table_schema IN ('db_a', 'db_b')" in script and "UNION ALL" in script
    assert "PREPARE safeship_s FROM @safeship_q" in script
    with pytest.raises(SafeshipError):
        MysqlEngine.migrations_script(["db'; DROP DATABASE x; --"], "migrations")
    output = "T\tdb_a\nT\tdb_b\nM\tdb_a\t2020_one\nM\tdb_a\t2020_two\n"
    assert MysqlEngine.parse_migrations(output) == {"db_a": ["2020_one", "2020_two"], "db_b": []}
    module = FakeModule(outputs=[(0, output, ""), (1, "", "ERROR 2002 (HY000): Can't connect to server")])
    engine = MysqlEngine(params("mysql"), CommandRunner(module), "central")
    assert engine.applied_migrations(["db_a", "db_b", "db_c"], "migrations") == (
        {"db_a": ["2020_one", "2020_two"], "db_b": []}, [])
    argv, kwargs = module.calls[0]
    assert "--skip-reconnect" in argv and "central" not in argv and kwargs["data"].startswith("SET SESSION")
    applied, problems = engine.applied_migrations(["db_a"], "migrations")
    assert applied == {} and "connection refused" in problems[0]


def test_sqlite_applied_migrations_reads_each_file(tmp_path):
    def tenant(name, rows, table="migrations"):
        path = str(tmp_path / name)
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE %s (id INTEGER PRIMARY KEY, migration TEXT, batch INTEGER)" % table)
        conn.executemany("INSERT INTO %s (migration, batch) VALUES (?, 1)" % table, [(row,) for row in rows])
        conn.commit()
        conn.close()
        return path

    a, b, c = tenant("a.sqlite", ["2020_one", "2020_two"]), tenant("b.sqlite", []), tenant("c.sqlite", ["x"], "other")
    (tmp_path / "broken.sqlite").write_text("not a database")
    engine = SqliteEngine(params("sqlite"), CommandRunner(FakeModule()), a)
    applied, problems = engine.applied_migrations([a, b, c, str(tmp_path / "missing.sqlite"),
                                                   str(tmp_path / "broken.sqlite")], "migrations")
    assert applied == {a: ["2020_one", "2020_two"], b: []}
    assert len(problems) == 1 and "is not a SQLite database file" in problems[0]


def test_connect_timeout_is_whole_seconds_for_the_clients():
    module = FakeModule()
    engine = MysqlEngine(params("mysql", connect_timeout=2.5), CommandRunner(module), "app")
    assert "connect-timeout=3" in open(engine.defaults_file()).read()
    runner = CommandRunner(FakeModule())
    PostgresEngine(params("postgresql", connect_timeout=0.2), runner, "app")
    assert runner.env_update["PGCONNECT_TIMEOUT"] == "1"


def test_postgres_applied_migrations_reports_a_psql_that_broke_and_reads_the_others(monkeypatch):
    runner = CommandRunner(FakeModule())
    engine = PostgresEngine(params("postgresql"), runner, "postgres")

    class Fake(object):
        count = 0

        def __init__(self, argv, **kwargs):
            Fake.count += 1
            self.broken = Fake.count == 1

        def communicate(self, data):
            if self.broken:
                raise OSError(32, "Broken pipe")
            db = [line.split()[-1] for line in data.decode().splitlines() if line.startswith("\\connect")][0]
            return ("@@safeship-database %s\n@@safeship-ok\nm1\n" % db).encode(), b""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(runner, "spawn", Fake)
    applied, problems = engine.applied_migrations(["t1", "t2"], "migrations", concurrency=2)
    assert applied == {"t2": ["m1"]} and len(problems) == 1 and "Broken pipe" in problems[0]
