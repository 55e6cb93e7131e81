"""The database engines read the migrations table of many databases at once (tenant_migrate's up-to-date check),
for real: PostgreSQL (concurrent psql processes fed a script through stdin) and MariaDB (one client for all),
in-process through the collection's command runner. Databases without the table, or missing altogether, are
left out; a server that refuses the login is one problem in words, and the password is in no argv."""

import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils._database import connect, connection_argument_spec
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandRunner


class LocalModule(object):
    """What the runner needs of AnsibleModule, running the programs for real."""

    def __init__(self):
        self.tmpdir = tempfile.mkdtemp(prefix="safeship-db-migrations-")
        self.calls = []

    def run_command(self, args, data=None, environ_update=None, expand_user_and_vars=False, cwd=None):
        self.calls.append(list(args))
        done = subprocess.run(args, input=data, cwd=cwd, env=dict(os.environ, **(environ_update or {})),
                              capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return shutil.which(name)


def params(server, database, **overrides):
    values = dict((name, spec.get("default")) for name, spec in connection_argument_spec().items())
    values.update(server.conn_params(database))
    values.update(overrides)
    return values


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request):
    return request.getfixturevalue("postgres_server" if request.param == "postgresql" else "mariadb_server")


def migrations_table(server, database, rows):
    server.execute("CREATE TABLE migrations (id INT PRIMARY KEY, migration VARCHAR(255) NOT NULL, batch INT)",
                   database)
    for number, name in enumerate(rows, 1):
        server.execute("INSERT INTO migrations VALUES (%d, '%s', 1)" % (number, name), database)


def test_applied_migrations_of_many_databases(server, unique_name):
    names = dict((key, "%s_%s" % (unique_name, key)) for key in ("central", "a", "b", "c", "d"))
    for key in ("central", "a", "b", "c"):
        server.create_database(names[key])
    try:
        migrations_table(server, names["a"], ["2020_01_01_000000_create_posts", "2020_02_01_000000_create_tags"])
        migrations_table(server, names["b"], [])
        server.execute("CREATE TABLE other (id INT)", names["c"])  # no migrations table: must run
        module = LocalModule()
        runner = CommandRunner(module)
        engine = connect(params(server, names["central"]), runner)
        databases = [names[key] for key in ("a", "b", "c", "d")]  # d does not exist: must run
        applied, problems = engine.applied_migrations(databases, "migrations", concurrency=3)
        assert problems == []
        assert applied == {names["a"]: ["2020_01_01_000000_create_posts", "2020_02_01_000000_create_tags"],
                           names["b"]: []}
        expected_processes = 3 if server.engine == "postgresql" else 1
        assert len(runner.executed_commands) == expected_processes
        assert server.password not in " ".join(runner.executed_commands)
    finally:
        for key in ("central", "a", "b", "c"):
            server.drop_database(names[key])


def test_a_refused_login_is_one_problem_and_no_database_is_read(server, unique_name):
    database = "%s_central" % unique_name
    server.create_database(database)
    try:
        runner = CommandRunner(LocalModule())
        engine = connect(params(server, database, login_password="not-the-password"), runner)
        applied, problems = engine.applied_migrations([database], "migrations", concurrency=2)
        assert applied == {} and len(problems) == 1
        assert "authentication failed for user %r" % server.user in problems[0]
        assert "not-the-password" not in " ".join(runner.executed_commands) + problems[0]
    finally:
        server.drop_database(database)
