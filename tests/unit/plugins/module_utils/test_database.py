import os
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
