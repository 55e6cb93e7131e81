"""Throwaway PostgreSQL 15 and MariaDB servers for the integration tests.

Each server lives in its own temp dir, listens on 127.0.0.1 on a free port and is removed at the end.
No test relies on a system service: everything is started here, and a missing binary is an error
(never a skip), so CI cannot go green without the real servers."""

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import psycopg2
import pymysql

from helpers.ports import free_port

PG_BIN = "/usr/lib/postgresql/15/bin"


def make_password():
    # long, and with characters a shell would mangle, so a leak or a quoting bug shows
    return "pw-" + secrets.token_hex(8) + "-$x'y"


def require(path):
    if not os.path.exists(path):
        raise RuntimeError("%s is missing: run ./scripts/test, which installs the test dependencies" % path)
    return path


def as_user(user, argv):
    """argv run as user when we are root (initdb and mariadbd refuse root), as is otherwise."""
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--"] + argv
    return argv


def owned_tempdir(prefix, user):
    path = tempfile.mkdtemp(prefix=prefix)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o700)
    return path


def wait_until(check, timeout, what):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the server is still starting
            last = exc
        time.sleep(0.05)
    raise RuntimeError("%s did not become ready in %ss: %s" % (what, timeout, last))


class _Server(object):
    """What both throwaway servers share; subclasses start(), stop() and connect()."""

    engine = user = base = port = password = None

    def log_tail(self):
        try:
            with open(os.path.join(self.base, "server.log"), errors="replace") as handle:
                return handle.read()[-2000:]
        except OSError:
            return ""

    @contextlib.contextmanager
    def stopped(self):
        self.stop()
        try:
            yield self
        finally:
            self.start()

    def close(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def conn_params(self, database):
        return dict(engine=self.engine, login_host="127.0.0.1", login_port=self.port, login_user=self.user,
                    login_password=self.password, database=database)

    def execute(self, sql, dbname=None, params=None):
        """Run sql (one or more statements); the rows of the last one, as a list of tuples."""
        conn = self.connect(dbname) if dbname else self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return [tuple(row) for row in cur.fetchall()] if cur.description else []
        finally:
            conn.close()


class PostgresServer(_Server):
    engine = "postgresql"
    user = "postgres"

    def __init__(self):
        require(os.path.join(PG_BIN, "initdb"))
        self.password = make_password()
        self.base = owned_tempdir("safeship-pg-", "postgres")
        self.data = os.path.join(self.base, "data")
        self.port = free_port()
        pwfile = os.path.join(self.base, "pwfile")
        with open(pwfile, "w") as handle:
            handle.write(self.password + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        subprocess.run(as_user("postgres", [
            os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres", "--auth=scram-sha-256",
            "--pwfile", pwfile, "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.unlink(pwfile)
        self.start()

    def _pg_ctl(self, *args):
        return subprocess.run(as_user("postgres", [os.path.join(PG_BIN, "pg_ctl"), "-D", self.data] + list(args)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)

    def start(self):
        options = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=100" % (self.port, self.base))
        done = self._pg_ctl("-o", options, "-l", os.path.join(self.base, "server.log"), "-w", "-t", "60", "start")
        if done.returncode:
            raise RuntimeError("PostgreSQL did not start: %s\n%s" % (done.stderr.decode(), self.log_tail()))

    def stop(self):
        self._pg_ctl("-m", "fast", "-w", "stop")

    def connect(self, database="postgres"):
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                dbname=database, connect_timeout=10)
        conn.autocommit = True
        return conn

    def create_database(self, name):
        self.execute('CREATE DATABASE "%s"' % name)

    def drop_database(self, name):
        self.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


class MariadbServer(_Server):
    engine = "mysql"
    user = "safeship"

    def __init__(self):
        require("/usr/bin/mariadb-install-db")
        self.password = make_password()
        self.base = owned_tempdir("safeship-my-", "mysql")
        self.data = os.path.join(self.base, "data")
        self.socket = os.path.join(self.base, "mysqld.sock")
        self.port = free_port()
        self.process = None
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=mysql", "--datadir=" + self.data,
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.start()
        root = pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)
        try:
            with root.cursor() as cur:
                for host in ("127.0.0.1", "localhost"):
                    cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (self.user, host, self.password))
                    cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (self.user, host))
        finally:
            root.close()

    def start(self):
        log = open(os.path.join(self.base, "server.log"), "ab")
        self.process = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=mysql", "--datadir=" + self.data, "--port=%d" % self.port,
             "--bind-address=127.0.0.1", "--socket=" + self.socket, "--pid-file=" + os.path.join(self.base, "pid"),
             "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=0", "--skip-name-resolve",
             "--max-connections=200"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError("mariadbd exited with %s: %s" % (self.process.returncode, self.log_tail()))
            conn = pymysql.connect(unix_socket=self.socket, user="root", connect_timeout=2)
            conn.close()
            return True
        wait_until(ready, 60, "MariaDB")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def connect(self, database=None):
        return pymysql.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               database=database, connect_timeout=10, autocommit=True)

    def create_database(self, name):
        self.execute("CREATE DATABASE `%s`" % name)

    def drop_database(self, name):
        self.execute("DROP DATABASE IF EXISTS `%s`" % name)
