# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: database connections for the safeship.webapp modules.

One argument spec for every database module, and one engine class per database
(PostgreSQL, MySQL/MariaDB, SQLite) that knows how to query, dump and restore it through
the engine's own client programs. No Python driver is needed on the managed host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import csv
import io
import math
import os
import re
import sqlite3
import threading

from ansible_collections.safeship.webapp.plugins.module_utils._common import (
    SafeshipError,
    check_database_name,
    split_table_name,
)
from ansible_collections.safeship.webapp.plugins.module_utils._runner import PIPE, CommandError

ENGINES = ("postgresql", "mysql", "sqlite")
# A plain table name (no schema), safe inside SQL text and quoted identifiers alike.
_PLAIN_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Markers of the PostgreSQL migrations check's output: which database follows, and that its query worked.
_DATABASE_MARK = "@@safeship-database "
_OK_MARK = "@@safeship-ok"


def connection_argument_spec(database_required=True):
    """The connection options every database module accepts (see doc fragment safeship.webapp.database)."""
    return dict(
        engine=dict(type="str", required=True, choices=list(ENGINES)),
        login_host=dict(type="str"),
        login_port=dict(type="int"),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_unix_socket=dict(type="path"),
        database=dict(type="str", required=database_required, aliases=["db"]),
        ssl_mode=dict(type="str", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
        ssl_cert=dict(type="path"),
        ssl_key=dict(type="path", no_log=False),
        connect_timeout=dict(type="float", default=10.0),
        client_bin_dir=dict(type="path"),
    )


def connect(params, runner, database=None):
    """Engine object for the module's connection options (database overrides params['database'])."""
    engine = params["engine"]
    cls = {"postgresql": PostgresEngine, "mysql": MysqlEngine, "sqlite": SqliteEngine}[engine]
    return cls(params, runner, database if database is not None else params["database"])


def quote_ident(name, quote):
    return quote + name.replace(quote, quote + quote) + quote


def check_plain_table(table, option="table"):
    if not isinstance(table, str) or not _PLAIN_TABLE.match(table):
        raise SafeshipError("%s %r is not a valid table name: use letters, digits and '_' (not starting with a "
                            "digit, at most 64 characters)." % (option, table))
    return table


def whole_seconds(value):
    """A timeout in seconds as the clients take it: a whole number, rounded up."""
    return int(math.ceil(value))


class Engine(object):
    name = None
    quote = '"'
    package = None

    def __init__(self, params, runner, database):
        self.params = params
        self.runner = runner
        self.database = database

    def quote_table(self, table):
        schema, name = split_table_name(table)
        if schema is None:
            return quote_ident(name, self.quote)
        return "%s.%s" % (quote_ident(schema, self.quote), quote_ident(name, self.quote))

    def binary(self, *names):
        return self.runner.find_binary(names, self.params.get("client_bin_dir"), self.package)

    def where(self, database=None):
        """'host:port/db' for messages."""
        host = self.params.get("login_unix_socket") or self.params.get("login_host") or "localhost"
        port = self.params.get("login_port")
        location = "%s:%s" % (host, port) if port else host
        return "%s database %r at %s" % (self.label, database or self.database, location)

    @property
    def label(self):
        return {"postgresql": "PostgreSQL", "mysql": "MySQL", "sqlite": "SQLite"}[self.name]

    def applied_migrations(self, databases, table, concurrency=1):
        """Which migrations each database has applied, read from its migrations table (Laravel's
        `migrations`, column `migration`): ({database: [names]}, [problems]).

        A database that does not exist or has no such table is left out (its migrations must run); a
        check that could not run at all is a problem, in words, and its databases are left out too."""
        raise NotImplementedError

    def count_rows(self, tables):
        """{table: rows} for every table, exact count(*). Missing tables raise with all names."""
        if not tables:
            return {}
        missing = self.missing_tables(tables)
        if missing:
            raise SafeshipError("table(s) %s not found in %s." % (", ".join(missing), self.where()))
        counts = {}
        # One statement for all tables: a single snapshot and a single round trip.
        row = self.query("SELECT %s" % ", ".join(
            "(SELECT count(*) FROM %s)" % self.quote_table(t) for t in tables))[0]
        for table, value in zip(tables, row):
            counts[table] = int(value)
        return counts


class PostgresEngine(Engine):
    name = "postgresql"
    package = "postgresql-client"

    def __init__(self, params, runner, database):
        super(PostgresEngine, self).__init__(params, runner, check_database_name(database))
        env = {
            "PGCONNECT_TIMEOUT": whole_seconds(params["connect_timeout"]) if params.get("connect_timeout") else None,
            "PGSSLMODE": params.get("ssl_mode"),
            "PGSSLROOTCERT": params.get("ca_cert"),
            "PGSSLCERT": params.get("ssl_cert"),
            "PGSSLKEY": params.get("ssl_key"),
            "PGAPPNAME": "safeship.webapp",
        }
        if params.get("login_password"):
            env["PGPASSWORD"] = params["login_password"]
            runner.add_secret(params["login_password"])
        runner.update_env(**env)

    def conn_args(self):
        args = []
        host = self.params.get("login_unix_socket") or self.params.get("login_host")
        if host:
            args += ["-h", host]
        if self.params.get("login_port"):
            args += ["-p", str(self.params["login_port"])]
        if self.params.get("login_user"):
            args += ["-U", self.params["login_user"]]
        # Never prompt for a password: a missing one must fail, not hang the play.
        args.append("-w")
        return args

    def psql_argv(self, database=None):
        return [self.binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"] + self.conn_args() + [
            "-d", database or self.database]

    def query(self, sql, database=None):
        argv = self.psql_argv(database) + ["--csv", "-t", "-c", sql]
        rc, out, err = self.runner.run(argv, check=False)
        if rc != 0:
            raise self.error(err, rc, argv, database)
        return [row for row in csv.reader(io.StringIO(out)) if row]

    def error(self, stderr, rc=None, argv=None, database=None):
        """A connection problem as one clear sentence; anything else as the tool's own message."""
        where = self.where(database)
        text = stderr or ""
        if "Connection refused" in text or "No such file or directory" in text and "socket" in text:
            return SafeshipError("cannot connect to %s: connection refused. Is the server running "
                                 "and listening there?" % where, stderr=text.strip(), rc=rc)
        if "password authentication failed" in text or "no password supplied" in text \
                or re.search(r'role "[^"]*" does not exist', text) or "authentication failed" in text:
            return SafeshipError("cannot connect to %s: authentication failed for user %r. Check "
                                 "login_user and login_password." % (where, self.params.get("login_user")),
                                 stderr=text.strip(), rc=rc)
        if re.search(r'database "[^"]*" does not exist', text):
            return SafeshipError("cannot connect to %s: the database does not exist." % where,
                                 stderr=text.strip(), rc=rc)
        if "could not translate host name" in text or "Name or service not known" in text:
            return SafeshipError("cannot connect to %s: unknown host." % where, stderr=text.strip(), rc=rc)
        if "timeout expired" in text:
            return SafeshipError("cannot connect to %s: timed out after %gs." % (
                where, self.params.get("connect_timeout")), stderr=text.strip(), rc=rc)
        if argv is not None:
            return CommandError(argv, rc, "", text, what="psql on %s" % where)
        return SafeshipError("%s: %s" % (where, text.strip()), rc=rc)

    def server_version(self):
        return self.query("SHOW server_version")[0][0].split()[0]

    def database_size(self):
        return int(self.query("SELECT pg_database_size(current_database())")[0][0])

    def data_size(self):
        """Bytes of table data (heap + TOAST, no indexes): what a dump roughly carries."""
        return int(self.query(
            "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%'")[0][0])

    def encoding(self):
        return self.query("SELECT pg_encoding_to_char(encoding) FROM pg_database "
                          "WHERE datname = current_database()")[0][0]

    def missing_tables(self, tables):
        if not tables:
            return []
        quoted = [self.quote_table(t) for t in tables]
        row = self.query("SELECT %s" % ", ".join(
            "to_regclass('%s') IS NOT NULL" % q for q in quoted))[0]
        return [t for t, present in zip(tables, row) if present != "t"]

    def user_relation_count(self, database=None):
        return int(self.query(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%'", database)[0][0])

    def database_exists(self, name, maintenance_db):
        check_database_name(name)
        rows = self.query("SELECT 1 FROM pg_database WHERE datname = '%s'" % name, maintenance_db)
        return bool(rows)

    def create_database(self, name, maintenance_db, encoding=None):
        check_database_name(name)
        sql = "CREATE DATABASE %s TEMPLATE template0" % quote_ident(name, '"')
        if encoding:
            if not re.match(r"^[A-Za-z0-9_]+$", encoding):
                raise SafeshipError("invalid encoding %r in the manifest" % encoding)
            sql += " ENCODING '%s'" % encoding
        self.query(sql, maintenance_db)

    def drop_database(self, name, maintenance_db):
        check_database_name(name)
        self.query("DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(name, '"'), maintenance_db)

    def privileges(self):
        """What the login user may do in the database: connect, create schemas, create in 'public'."""
        row = self.query(
            "SELECT current_user, has_database_privilege(current_database(), 'CREATE'), "
            "coalesce(has_schema_privilege('public', 'CREATE'), false), "
            "coalesce(has_schema_privilege('public', 'USAGE'), false), "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
            "(SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
            "AND NOT pg_has_role(current_user, tableowner, 'USAGE'))")[0]
        return {
            "user": row[0],
            "create_schema": row[1] == "t",
            "create_in_schema": row[2] == "t",
            "usage": row[3] == "t",
            "superuser": row[4] == "t",
            # Migrations ALTER tables, which needs ownership in PostgreSQL.
            "owns_all_tables": row[5] == "0",
        }

    # -- the migrations of many databases (tenant_migrate's up-to-date check) ---------------------------

    @staticmethod
    def migrations_script(databases, table):
        """A psql script reading the migrations table of each database in turn: a marker naming the
        database, then (when the query works) the ok marker and one migration per line."""
        check_plain_table(table, "migrations table")
        lines = []
        for database in databases:
            lines.append("\\echo '%s%s'" % (_DATABASE_MARK, check_database_name(database)))
            lines.append("\\connect %s" % database)
            lines.append("SELECT '%s' UNION ALL SELECT migration FROM %s;" % (_OK_MARK, quote_ident(table, '"')))
        return "\n".join(lines) + "\n"

    @staticmethod
    def parse_migrations(output):
        """{database: [applied]} for the databases whose query succeeded (the ok marker was printed)."""
        found = {}
        current, rows, ok = None, [], False
        for line in output.splitlines() + [_DATABASE_MARK]:
            if line.startswith(_DATABASE_MARK):
                if current is not None and ok:
                    found[current] = rows
                current, rows, ok = line[len(_DATABASE_MARK):].strip(), [], False
            elif line == _OK_MARK:
                ok = True
            elif current is not None and line:
                rows.append(line)
        return found

    def applied_migrations(self, databases, table, concurrency=1):
        """concurrency psql processes, each fed a script for its share of the databases through stdin; a
        database or table that is missing fails only its own query (ON_ERROR_STOP=0)."""
        script_for = self.migrations_script
        groups = [databases[n::concurrency] for n in range(min(max(1, concurrency), len(databases)))]
        argv = [self.binary("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=0"] + self.conn_args() + [
            "-d", self.database, "-f", "-"]
        outputs = [None] * len(groups)
        with contextlib.ExitStack() as stack:
            procs = [stack.enter_context(self.runner.spawn(
                argv, stdin=PIPE, what="psql (migrations of %d databases)" % len(group))) for group in groups]

            def collect(index):
                try:
                    outputs[index] = procs[index].communicate(script_for(groups[index], table).encode("utf-8"))
                except Exception as exc:  # pylint: disable=broad-except
                    # whatever went wrong is reported; the databases of this psql then run their migrations
                    outputs[index] = (b"", str(exc).encode("utf-8"))

            threads = [threading.Thread(target=collect, args=(n,)) for n in range(len(procs))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        applied, problems = {}, []
        for out, err in outputs:
            text = out.decode("utf-8", "replace")
            if not text:
                # not even the first marker: psql could not start or connect to the initial database
                problems.append(self.error(err.decode("utf-8", "replace")).msg.strip())
            applied.update(self.parse_migrations(text))
        return applied, problems


class MysqlEngine(Engine):
    name = "mysql"
    quote = "`"
    package = "mariadb-client (or mysql-client)"

    def __init__(self, params, runner, database):
        super(MysqlEngine, self).__init__(params, runner, check_database_name(database))
        if params.get("login_password"):
            runner.add_secret(params["login_password"])
        self._defaults_file = None
        self._is_mariadb = None

    def defaults_file(self):
        """A 0600 option file in the module's private temp dir carrying the connection (and password)."""
        if self._defaults_file:
            return self._defaults_file
        lines = ["[client]"]
        options = [
            ("user", self.params.get("login_user")),
            ("password", self.params.get("login_password")),
            ("host", self.params.get("login_host")),
            ("port", self.params.get("login_port")),
            ("socket", self.params.get("login_unix_socket")),
            ("ssl-ca", self.params.get("ca_cert")),
            ("ssl-cert", self.params.get("ssl_cert")),
            ("ssl-key", self.params.get("ssl_key")),
        ]
        mode = self.params.get("ssl_mode")
        if mode == "disable":
            options.append(("skip-ssl", True))
        elif mode in ("require", "verify-ca", "verify-full"):
            options.append(("ssl", True))
            if mode != "require" and self.is_mariadb():
                options.append(("ssl-verify-server-cert", True))
        for key, value in options:
            if value is None:
                continue
            if value is True:
                lines.append(key)
            else:
                lines.append("%s=%s" % (key, self._option_value(str(value))))
        if self.params.get("login_host") and not self.params.get("login_unix_socket"):
            # An explicit host means TCP, even for 'localhost'.
            lines.append("protocol=TCP")
        if self.params.get("connect_timeout"):
            # Only the client reads [mysql]: mysqldump has no connect-timeout and would refuse the file
            # (or, with loose-, warn on every run).
            lines += ["[mysql]", "connect-timeout=%d" % whole_seconds(self.params["connect_timeout"])]
        path = os.path.join(self.runner.module.tmpdir, "safeship-client.cnf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        self._defaults_file = path
        return path

    @staticmethod
    def _option_value(value):
        if "\n" in value:
            raise SafeshipError("connection options cannot contain a newline")
        if '"' not in value:
            return '"%s"' % value.replace("\\", "\\\\")
        if "'" not in value:
            return "'%s'" % value.replace("\\", "\\\\")
        raise SafeshipError("a MySQL password cannot contain both kinds of quotes")

    def client(self):
        return self.binary("mariadb", "mysql")

    def dump_binary(self):
        return self.binary("mariadb-dump", "mysqldump")

    def is_mariadb(self):
        if self._is_mariadb is None:
            rc, out, err = self.runner.run([self.client(), "--version"], check=False)
            self._is_mariadb = "mariadb" in (out + err).lower()
        return self._is_mariadb

    def client_argv(self, database=None, with_database=True):
        argv = [self.client(), "--defaults-extra-file=%s" % self.defaults_file(), "--batch",
                "--skip-column-names", "--default-character-set=utf8mb4"]
        if with_database:
            argv.append(database or self.database)
        return argv

    def query(self, sql, database=None, with_database=True):
        argv = self.client_argv(database, with_database)
        argv[2:2] = ["-e", sql]
        rc, out, err = self.runner.run(argv, check=False)
        if rc != 0:
            raise self.error(err, rc, argv, database)
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def error(self, stderr, rc=None, argv=None, database=None):
        where = self.where(database)
        text = stderr or ""
        if re.search(r"ERROR 200[23]|Can't connect to", text):
            return SafeshipError("cannot connect to %s: connection refused. Is the server running "
                                 "and listening there?" % where, stderr=text.strip(), rc=rc)
        if re.search(r"ERROR 1045|Access denied for user", text):
            return SafeshipError("cannot connect to %s: authentication failed for user %r. Check "
                                 "login_user and login_password." % (where, self.params.get("login_user")),
                                 stderr=text.strip(), rc=rc)
        if re.search(r"ERROR 1049|Unknown database", text):
            return SafeshipError("cannot connect to %s: the database does not exist." % where,
                                 stderr=text.strip(), rc=rc)
        if re.search(r"ERROR 2005|Unknown (MySQL|MariaDB) server host", text):
            return SafeshipError("cannot connect to %s: unknown host." % where, stderr=text.strip(), rc=rc)
        if argv is not None:
            return CommandError(argv, rc, "", text, what="mysql client on %s" % where)
        return SafeshipError("%s: %s" % (where, text.strip()), rc=rc)

    def server_version(self):
        return self.query("SELECT VERSION()")[0][0]

    def database_size(self):
        return int(self.query(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
            "WHERE table_schema = DATABASE()")[0][0])

    def data_size(self):
        return int(self.query(
            "SELECT COALESCE(SUM(data_length), 0) FROM information_schema.tables "
            "WHERE table_schema = DATABASE()")[0][0])

    def encoding(self):
        row = self.query("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
                         "information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()")[0]
        return "%s/%s" % (row[0], row[1])

    def missing_tables(self, tables):
        if not tables:
            return []
        present = set()
        for row in self.query("SELECT table_schema, table_name FROM information_schema.tables "
                              "WHERE table_schema = DATABASE()"):
            present.add(row[1])
            present.add("%s.%s" % (row[0], row[1]))
        return [t for t in tables if t not in present]

    def user_relation_count(self, database=None):
        return int(self.query("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()",
                              database)[0][0])

    def database_exists(self, name, maintenance_db=None):
        check_database_name(name)
        return bool(self.query("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '%s'" % name,
                               with_database=False))

    def create_database(self, name, maintenance_db=None, encoding=None):
        check_database_name(name)
        sql = "CREATE DATABASE %s" % quote_ident(name, "`")
        if encoding and "/" in encoding:
            charset, collation = encoding.split("/", 1)
            if not re.match(r"^[A-Za-z0-9_]+$", charset + collation):
                raise SafeshipError("invalid character set %r in the manifest" % encoding)
            sql += " CHARACTER SET %s COLLATE %s" % (charset, collation)
        self.query(sql, with_database=False)

    def drop_database(self, name, maintenance_db=None):
        check_database_name(name)
        self.query("DROP DATABASE IF EXISTS %s" % quote_ident(name, "`"), with_database=False)

    def privileges(self):
        """What the login user may do: read the grants that apply to this database."""
        grants = "\n".join(r[0] for r in self.query("SHOW GRANTS"))
        db = re.escape(self.database)
        scope = r"ON (\*\.\*|`%s`\.\*)" % db
        has = {}
        for priv in ("CREATE", "ALTER", "DROP", "INDEX", "SELECT", "INSERT"):
            has[priv] = bool(re.search(r"GRANT [^\n]*\b(ALL PRIVILEGES|%s)\b[^\n]*%s" % (priv, scope), grants))
        return {
            "user": self.query("SELECT CURRENT_USER()")[0][0],
            "create_schema": has["CREATE"],
            "create_in_schema": has["CREATE"],
            "alter": has["ALTER"],
            "usage": has["SELECT"],
            "superuser": bool(re.search(r"GRANT ALL PRIVILEGES ON \*\.\*", grants)),
        }

    # -- the migrations of many databases (tenant_migrate's up-to-date check) ---------------------------

    @staticmethod
    def migrations_script(databases, table):
        """One script for the mariadb/mysql client: which databases have the table (T rows), then every
        applied migration of all of them in one UNION ALL (M rows)."""
        check_plain_table(table, "migrations table")
        in_list = ", ".join("'%s'" % check_database_name(db) for db in databases)
        where = ("FROM information_schema.tables WHERE table_name = '%s' AND table_type = 'BASE TABLE' "
                 "AND table_schema IN (%s)" % (table, in_list))
        return "\n".join([
            "SET SESSION group_concat_max_len = 1073741824;",
            "SELECT 'T', table_schema %s;" % where,
            "SELECT GROUP_CONCAT(CONCAT('SELECT ''M'', ', QUOTE(table_schema), ', `migration` FROM `', "
            "table_schema, '`.`%s`') SEPARATOR ' UNION ALL ') INTO @safeship_q %s;" % (table, where),
            "SET @safeship_q = COALESCE(@safeship_q, 'SELECT 1 FROM DUAL WHERE FALSE');",
            "PREPARE safeship_s FROM @safeship_q;",
            "EXECUTE safeship_s;",
            "DEALLOCATE PREPARE safeship_s;",
        ]) + "\n"

    @staticmethod
    def parse_migrations(output):
        """{database: [applied]} for the databases that have the table."""
        applied = {}
        for line in output.splitlines():
            cells = line.split("\t")
            if cells[0] == "T" and len(cells) == 2:
                applied.setdefault(cells[1], [])
            elif cells[0] == "M" and len(cells) == 3:
                applied.setdefault(cells[1], []).append(cells[2])
        return applied

    def applied_migrations(self, databases, table, concurrency=1):
        """One client process for all the databases (information_schema says which have the table)."""
        argv = self.client_argv(with_database=False) + ["--skip-reconnect"]
        rc, out, err = self.runner.run(argv, data=self.migrations_script(databases, table), check=False)
        if rc != 0:
            return {}, [self.error(err, rc).msg]
        return self.parse_migrations(out), []


class SqliteEngine(Engine):
    name = "sqlite"
    package = None

    def __init__(self, params, runner, database):
        if not isinstance(database, str) or not os.path.isabs(database):
            raise SafeshipError("database %r must be the absolute path of the SQLite file for engine sqlite."
                                % (database,))
        super(SqliteEngine, self).__init__(params, runner, os.path.normpath(database))

    def where(self, database=None):
        return "SQLite database %s" % (database or self.database)

    def connect_ro(self, path=None):
        path = path or self.database
        if not os.path.isfile(path):
            raise SafeshipError("%s does not exist (no such file)." % self.where(path))
        with open(path, "rb") as handle:
            header = handle.read(16)
        if header and header != b"SQLite format 3\x00":
            raise SafeshipError("%s is not a SQLite database file." % self.where(path))
        try:
            return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=self.params.get("connect_timeout") or 10)
        except sqlite3.Error as exc:
            raise SafeshipError("cannot open %s: %s" % (self.where(path), exc))

    def query(self, sql, database=None):
        conn = self.connect_ro(database)
        try:
            return [[str(v) for v in row] for row in conn.execute(sql).fetchall()]
        except sqlite3.Error as exc:
            raise SafeshipError("%s: %s" % (self.where(database), exc))
        finally:
            conn.close()

    def server_version(self):
        # Opening the file is SQLite's "connect": a missing or non-SQLite file fails here, before
        # anything is created.
        self.connect_ro().close()
        return sqlite3.sqlite_version

    def database_size(self):
        return os.path.getsize(self.database)

    data_size = database_size

    def encoding(self):
        return self.query("PRAGMA encoding")[0][0]

    def missing_tables(self, tables):
        if not tables:
            return []
        present = set(r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"))
        return [t for t in tables if split_table_name(t)[1] not in present or split_table_name(t)[0] not in (None, "main")]

    def user_relation_count(self, database=None):
        if not os.path.exists(database or self.database):
            return 0
        return int(self.query("SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') "
                              "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                              database)[0][0])

    def count_rows_in(self, path, tables):
        """Row counts in another SQLite file (a fresh copy) with the same connection settings."""
        return type(self)(self.params, self.runner, path).count_rows(tables)

    def integrity_check(self, path=None):
        rows = self.query("PRAGMA integrity_check", path)
        result = "; ".join(r[0] for r in rows)
        if result != "ok":
            raise SafeshipError("%s failed PRAGMA integrity_check: %s" % (self.where(path), result))

    def privileges(self):
        directory = os.path.dirname(self.database)
        writable = os.access(self.database, os.W_OK) and os.access(directory, os.W_OK)
        return {"user": None, "create_schema": writable, "create_in_schema": writable,
                "usage": os.access(self.database, os.R_OK), "superuser": False}

    def applied_migrations(self, databases, table, concurrency=1):
        """Each database is a SQLite file, read-only; a missing file or table is left out."""
        check_plain_table(table, "migrations table")
        applied, problems = {}, []
        for database in databases:
            if not os.path.isfile(database):
                continue
            try:
                if not self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '%s'" % table,
                                  database):
                    continue
                applied[database] = [row[0] for row in self.query(
                    "SELECT migration FROM %s" % quote_ident(table, '"'), database)]
            except SafeshipError as exc:
                problems.append(exc.msg)
        return applied, problems
