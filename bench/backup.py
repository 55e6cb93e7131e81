# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark db_backup / db_restore against the raw tools they wrap.

Standalone: starts its own throwaway PostgreSQL 15 and MariaDB servers on free loopback
ports, builds a pgbench database (about --size-gb GB, or --scale), and times in one run:

  (a) pg_dump -Fc -Z6            vs db_backup format=custom compression=gzip level 6
  (b) pg_dump -Fc (default level) vs db_backup defaults (custom + zstd): time and size
  (c) pg_dump -Fd -j1            vs db_backup format=directory jobs=2 (4 equal tables),
      and db_backup directory jobs=2 vs jobs=1
  (d) db_restore jobs=2          vs db_restore jobs=1 (fresh target databases)
  (e) mariadb-dump --single-transaction vs db_backup on MariaDB (compression none, default)

plus references without a target that explain the results: pg_dump -Fc -Z0 (the floor: no
compression at all), pg_dump -Fd -j2 (what the tool itself gains from a second job here) and
mariadb-dump followed by fsync (durable on disk, as pg_dump -f and db_backup leave their output).

Modules run exactly as Ansible runs them: a subprocess reading {"ANSIBLE_MODULE_ARGS": ...}
from a file, so the times include Python start-up and every check the module does.
Each command runs --repeat times (orders rotated between repeats); the median is used.
Passwords go through PGPASSWORD, a 0600 option file or the 0600 module argument file,
never argv. The servers and every file are removed at the end, also on errors and Ctrl-C.

Times are printed, never asserted: this is not a test.

    .venv/bin/python bench/backup.py                 # ~1 GB pgbench database
    .venv/bin/python bench/backup.py --scale 5       # smoke run, about a minute
    .venv/bin/python bench/backup.py --json out.json
"""

from __future__ import print_function

import argparse
import json
import os
import pwd
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import BenchError, clean_up, first_line, log, machine, utc_stamp, write_json
from benchlib import run as run_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
MODULE_PREFIX = "ansible_collections.safeship.webapp.plugins.modules."
PGBENCH_MB_PER_SCALE = 1024.0 / 70  # pgbench -i: ~15 MB of database per scale unit


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(argv, env=None, input=None, user=None, check=True, stdout=subprocess.PIPE, **kwargs):
    """Run a helper command (not timed). user: run it as that system user (runuser)."""
    if user:
        argv = ["runuser", "-u", user, "--"] + list(argv)
    proc = subprocess.run(argv, env=env, input=input, stdout=stdout, stderr=subprocess.PIPE, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise BenchError("%s exited with %d: %s" % (os.path.basename(argv[0] if not user else argv[4]),
                                                    proc.returncode, proc.stderr.decode("utf-8", "replace")[-2000:]))
    return proc


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def path_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, dummy, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def filler_sql(engine, kind, column):
    """SQL for the 84-character filler column of the pgbench_accounts-like rows.

    blank: pgbench's own (all blanks: compresses ~50x, so compression costs next to nothing);
    hex: 84 hex digits of md5 per row, no repeats between rows (compresses ~2x, like real text columns).
    """
    if kind == "blank":
        # PostgreSQL pads '' to char(84); MariaDB's VARCHAR keeps the 84 blanks explicitly.
        return "''" if engine == "postgresql" else "REPEAT(' ', 84)"
    if engine == "postgresql":
        return ("md5('a' || {c}) || md5('b' || {c}) || substr(md5('c' || {c}), 1, 20)").format(c=column)
    return ("CONCAT(MD5(CONCAT('a', {c})), MD5(CONCAT('b', {c})), LEFT(MD5(CONCAT('c', {c})), 20))"
            ).format(c=column)


def human_size(num):
    num = float(num)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num < 1024 or unit == "GiB":
            return ("%d %s" % (num, unit)) if unit == "B" else ("%.1f %s" % (num, unit))
        num /= 1024


# ---- servers ---------------------------------------------------------------------------------
class Postgres(object):
    """A throwaway PostgreSQL cluster owned by the postgres user, scram passwords over TCP."""

    user = "postgres"

    def __init__(self, workdir, bin_dir):
        self.bin_dir = bin_dir
        self.dir = os.path.join(workdir, "pg")
        self.data = os.path.join(self.dir, "data")
        self.port = None
        self.password = secrets.token_urlsafe(18)
        self.started = False
        self.settings = []

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    def env(self):
        env = dict(os.environ)
        env.update(PGPASSWORD=self.password, PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=self.user,
                   PGCONNECT_TIMEOUT="10", LC_ALL="C")
        return env

    def init(self):
        pw = pwd.getpwnam("postgres")
        os.mkdir(self.dir, 0o700)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        pwfile = write_private(os.path.join(self.dir, "pwfile"), self.password + "\n")
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        run([self.bin("initdb"), "-D", self.data, "-U", self.user, "--auth=scram-sha-256",
             "--pwfile=" + pwfile, "--no-sync", "-E", "UTF8", "--locale=C"], user="postgres")
        os.unlink(pwfile)

    def start(self, settings):
        if self.port is None:
            self.port = free_port()
        self.settings = list(settings)
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 %s" % (
            self.port, self.dir, " ".join("-c %s" % s for s in settings))
        run([self.bin("pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-o", opts,
             "-w", "-t", "120", "start"], user="postgres", start_new_session=True)
        self.started = True

    def stop(self):
        if self.started:
            run([self.bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "120", "stop"], user="postgres",
                check=False, start_new_session=True)
            self.started = False

    def psql(self, sql, database="postgres"):
        proc = run([self.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-w", "-At", "-d", database],
                   env=self.env(), input=sql.encode("utf-8"))
        return proc.stdout.decode("utf-8").strip()

    def conn(self, database):
        return dict(engine="postgresql", login_host="127.0.0.1", login_port=self.port, login_user=self.user,
                    login_password=self.password, database=database, client_bin_dir=self.bin_dir)


class MariaDB(object):
    """A throwaway MariaDB server on a free loopback port, with a password user for the benchmark."""

    user = "bench"

    def __init__(self, workdir, buffer_pool):
        self.dir = os.path.join(workdir, "my")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.port = None
        self.password = secrets.token_urlsafe(18)
        self.proc = None
        self.buffer_pool = buffer_pool
        self.defaults_file = None
        self.settings = []

    def init(self, private_dir):
        pw = pwd.getpwnam("mysql")
        os.mkdir(self.dir, 0o700)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        run(["mariadb-install-db", "--no-defaults", "--user=mysql", "--datadir=" + self.data,
             "--auth-root-authentication-method=socket", "--skip-test-db"])
        self.port = free_port()
        self.defaults_file = write_private(os.path.join(private_dir, "mariadb-client.cnf"), (
            "[client]\nuser=%s\npassword=\"%s\"\nhost=127.0.0.1\nport=%d\nprotocol=TCP\n"
            % (self.user, self.password, self.port)))

    def start(self):
        self.settings = ["innodb_buffer_pool_size=%s" % self.buffer_pool, "skip-name-resolve"]
        log_path = os.path.join(self.dir, "server.log")
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                ["mariadbd", "--no-defaults", "--user=mysql", "--datadir=" + self.data, "--port=%d" % self.port,
                 "--bind-address=127.0.0.1", "--socket=" + self.sock, "--pid-file=" + os.path.join(self.dir, "pid"),
                 "--log-error=" + os.path.join(self.dir, "error.log")] + ["--" + s for s in self.settings],
                stdout=out, stderr=out, start_new_session=True)
        deadline = time.time() + 60
        while True:
            ok = subprocess.run(["mariadb-admin", "--no-defaults", "-uroot", "--socket=" + self.sock, "ping"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode == 0
            if ok:
                break
            if self.proc.poll() is not None or time.time() > deadline:
                raise BenchError("mariadbd did not start; see %s" % os.path.join(self.dir, "error.log"))
            time.sleep(0.2)
        # The password goes on stdin, never into argv.
        self.root_sql("CREATE USER '%(u)s'@'%%' IDENTIFIED BY '%(p)s'; GRANT ALL ON *.* TO '%(u)s'@'%%';"
                      % {"u": self.user, "p": self.password})

    def root_sql(self, sql):
        return run(["mariadb", "--no-defaults", "-uroot", "--socket=" + self.sock, "--batch", "--skip-column-names"],
                   input=sql.encode("utf-8")).stdout.decode("utf-8").strip()

    def sql(self, sql, database=None):
        argv = ["mariadb", "--defaults-extra-file=" + self.defaults_file, "--batch", "--skip-column-names"]
        return run(argv + ([database] if database else []), input=sql.encode("utf-8")).stdout.decode().strip()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def conn(self, database):
        return dict(engine="mysql", login_host="127.0.0.1", login_port=self.port, login_user=self.user,
                    login_password=self.password, database=database)


# ---- measurements ----------------------------------------------------------------------------
class Measure(object):
    """One command, run once per repeat. fn(rep) -> (seconds, size in bytes or None, extra dict)."""

    def __init__(self, key, label, fn):
        self.key = key
        self.label = label
        self.fn = fn
        self.samples = []

    def once(self, rep):
        load_before = os.getloadavg()[0]
        seconds, size, extra = self.fn(rep)
        sample = dict(seconds=round(seconds, 3), size=size, load1=round(load_before, 2))
        sample.update(extra or {})
        self.samples.append(sample)
        log("  %-34s %8.2f s  %s  (load %.2f)" % (self.key, seconds, human_size(size) if size else "",
                                                  load_before))

    def median(self, what="seconds"):
        values = [s[what] for s in self.samples if s.get(what) is not None]
        return statistics.median(values) if values else None

    def summary(self):
        times = [s["seconds"] for s in self.samples]
        return dict(label=self.label, median_seconds=self.median(), min_seconds=min(times), max_seconds=max(times),
                    median_size=self.median("size"), samples=self.samples)


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.scale = args.scale or max(1, int(round(args.size_gb * 1024 / PGBENCH_MB_PER_SCALE)))
        self.mysql_scale = args.mysql_scale or self.scale
        self.workdir = None
        self.pg = None
        self.my = None
        self.measures = {}
        self.counter = 0
        self.facts = {}

    # -- helpers --
    def private(self, name):
        return os.path.join(self.workdir, "private", name)

    def out(self, name):
        self.counter += 1
        return os.path.join(self.workdir, "out", "%03d-%s" % (self.counter, name))

    def module(self, name, args):
        """Run a module as Ansible does; (wall seconds, result)."""
        self.counter += 1
        args_path = write_private(self.private("args-%d.json" % self.counter),
                                  json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL")))
        env["PYTHONPATH"] = COLLECTIONS
        argv = [sys.executable, "-m", MODULE_PREFIX + name, args_path]
        try:
            started = time.perf_counter()
            proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  cwd=self.private(""), check=False)
            elapsed = time.perf_counter() - started
        finally:
            os.unlink(args_path)
        try:
            result = json.loads(proc.stdout.decode("utf-8"))
        except ValueError:
            raise BenchError("%s printed no JSON (rc %d): %s %s" % (name, proc.returncode, proc.stdout[-2000:],
                                                                    proc.stderr[-2000:]))
        if proc.returncode != 0 or result.get("failed"):
            raise BenchError("%s failed: %s" % (name, result.get("msg")))
        return elapsed, result

    def timed(self, argv, env, stdout_path=None):
        out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
        try:
            started = time.perf_counter()
            proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.PIPE, check=False)
            elapsed = time.perf_counter() - started
        finally:
            if stdout_path:
                out.close()
        if proc.returncode != 0:
            raise BenchError("%s exited with %d: %s" % (os.path.basename(argv[0]), proc.returncode,
                                                        proc.stderr.decode("utf-8", "replace")[-2000:]))
        return elapsed

    def add(self, key, label, fn):
        self.measures[key] = Measure(key, label, fn)
        return self.measures[key]

    def run_group(self, title, measures):
        log("%s (%d x %d runs)" % (title, len(measures), self.args.repeat))
        for rep in range(self.args.repeat):
            shift = rep % len(measures)
            for measure in measures[shift:] + measures[:shift]:
                measure.once(rep)

    # -- raw tool commands --
    def pg_dump(self, database, extra, name):
        def fn(rep):
            path = self.out(name)
            argv = [self.pg.bin("pg_dump"), "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", self.pg.user, "-w",
                    "-d", database] + extra + ["-f", path]
            seconds = self.timed(argv, self.pg.env())
            size = path_size(path)
            remove(path)
            return seconds, size, None
        return fn

    def db_backup(self, conn, options, keep_as=None):
        def fn(rep):
            dest = self.out("dest")
            seconds, result = self.module("db_backup", dict(conn, dest=dest, **options))
            extra = dict(module_duration=result.get("duration"), verified=result["manifest"].get("verified", {})
                         .get("method"))
            if keep_as and keep_as not in self.facts:
                # Keep one backup for the restore measurements.
                kept = os.path.join(self.workdir, "kept", keep_as)
                os.makedirs(kept, 0o700, exist_ok=True)
                for name in os.listdir(dest):
                    os.rename(os.path.join(dest, name), os.path.join(kept, name))
                self.facts[keep_as] = os.path.join(kept, os.path.basename(result["path"]))
            remove(dest)
            return seconds, result["size"], extra
        return fn

    def db_restore(self, backup_key, jobs, tag):
        def fn(rep):
            target = "restore_%s_j%d_%d" % (tag, jobs, rep)
            # Start every restore from the same state: no dirty buffers of the previous one.
            self.pg.psql("CHECKPOINT")
            os.sync()
            seconds, result = self.module("db_restore", dict(self.pg.conn("postgres"), src=self.facts[backup_key],
                                                             target_database=target, jobs=jobs))
            self.pg.psql("DROP DATABASE %s" % target)
            return seconds, None, dict(module_duration=result.get("duration"))
        return fn

    def mariadb_dump(self, database, fsync=False):
        def fn(rep):
            path = self.out("mariadb-dump.sql")
            argv = ["mariadb-dump", "--defaults-extra-file=" + self.my.defaults_file, "--single-transaction",
                    database]
            seconds = self.timed(argv, dict(os.environ), stdout_path=path)
            if fsync:
                # What pg_dump -f and db_backup do before they return: the dump is on disk.
                started = time.perf_counter()
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                seconds += time.perf_counter() - started
            size = path_size(path)
            remove(path)
            return seconds, size, None
        return fn

    # -- setup --
    def setup_postgres(self):
        self.pg = Postgres(self.workdir, self.args.pg_bin)
        log("initdb (PostgreSQL %s)" % first_line([self.pg.bin("postgres"), "--version"]).split()[2])
        self.pg.init()
        load_settings = ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_wal_size=4GB"]
        self.pg.start(load_settings)
        log("pgbench -i -s %d (server running with %s)" % (self.scale, " ".join(load_settings)))
        self.pg.psql("CREATE DATABASE bench")
        started = time.time()
        run([self.pg.bin("pgbench"), "-i", "-q", "-s", str(self.scale), "bench"], env=self.pg.env())
        if self.args.filler != "blank":
            self.pg.psql("UPDATE pgbench_accounts SET filler = %s; VACUUM FULL pgbench_accounts;"
                         % filler_sql("postgresql", self.args.filler, "aid"), "bench")
        rows = self.scale * 100000 // self.args.tables
        log("pgbench done in %.0f s; %d tables of %d pgbench_accounts-like rows" % (
            time.time() - started, self.args.tables, rows))
        self.pg.psql("CREATE DATABASE benchpar")
        sql = []
        for index in range(1, self.args.tables + 1):
            sql.append("CREATE TABLE accounts_%d (aid int NOT NULL, bid int, abalance int, filler char(84)) "
                       "WITH (fillfactor = 100);" % index)
            sql.append("INSERT INTO accounts_%d SELECT aid, (aid - 1) / 100000 + 1, 0, %s "
                       "FROM generate_series(1, %d) AS aid;"
                       % (index, filler_sql("postgresql", self.args.filler, "aid"), rows))
            sql.append("ALTER TABLE accounts_%d ADD PRIMARY KEY (aid);" % index)
        self.pg.psql("\n".join(sql), "benchpar")
        for db in ("bench", "benchpar"):
            self.pg.psql("VACUUM ANALYZE", db)
        self.pg.psql("CHECKPOINT")
        # Measure with the server's durable defaults (fsync on): restores write through it.
        self.pg.stop()
        measure_settings = self.args.pg_setting or []
        self.pg.start(measure_settings)
        for db in ("bench", "benchpar"):
            # Read every table once so all runs see the same (warm) cache.
            tables = self.pg.psql("SELECT string_agg(format('SELECT count(*) FROM %I;', relname), ' ') "
                                  "FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace", db)
            self.pg.psql(tables, db)
        sizes = {}
        for db in ("bench", "benchpar"):
            sizes[db] = int(self.pg.psql("SELECT pg_database_size('%s')" % db))
        self.facts["pg_sizes"] = sizes
        self.facts["pg_settings_load"] = load_settings
        self.facts["pg_settings_measure"] = measure_settings or ["defaults (fsync on)"]
        log("PostgreSQL databases: bench %s, benchpar %s" % (human_size(sizes["bench"]),
                                                             human_size(sizes["benchpar"])))

    def setup_mariadb(self):
        self.my = MariaDB(self.workdir, self.args.mariadb_buffer_pool)
        log("mariadb-install-db")
        self.my.init(self.private(""))
        self.my.start()
        rows = self.mysql_scale * 100000
        log("MariaDB: loading %d pgbench_accounts-like rows" % rows)
        started = time.time()
        sql = ["CREATE DATABASE bench;", "USE bench;",
               "CREATE TABLE branches (bid INT PRIMARY KEY, bbalance INT, filler CHAR(88)) ENGINE=InnoDB;",
               "CREATE TABLE tellers (tid INT PRIMARY KEY, bid INT, tbalance INT, filler CHAR(84)) ENGINE=InnoDB;",
               # VARCHAR keeps pgbench's 84 blanks in the dump (CHAR would strip them), like pg_dump's output.
               "CREATE TABLE accounts (aid INT PRIMARY KEY, bid INT, abalance INT, filler VARCHAR(84)) ENGINE=InnoDB;",
               "INSERT INTO branches SELECT seq, 0, '' FROM seq_1_to_%d;" % self.mysql_scale,
               "INSERT INTO tellers SELECT seq, (seq - 1) DIV 10 + 1, 0, '' FROM seq_1_to_%d;" % (self.mysql_scale * 10)]
        chunk = 1000000
        for start in range(1, rows + 1, chunk):
            end = min(rows, start + chunk - 1)
            sql.append("INSERT INTO accounts SELECT seq, (seq - 1) DIV 100000 + 1, 0, %s FROM seq_%d_to_%d;"
                       % (filler_sql("mysql", self.args.filler, "seq"), start, end))
        sql.append("ANALYZE TABLE branches, tellers, accounts;")
        self.my.sql("\n".join(sql))
        size = int(self.my.sql("SELECT SUM(data_length + index_length) FROM information_schema.tables "
                               "WHERE table_schema = 'bench'"))
        self.facts["mysql_size"] = size
        log("MariaDB loaded in %.0f s: %s (InnoDB data + index)" % (time.time() - started, human_size(size)))

    # -- the benchmark --
    def measure(self):
        pg, cases = self.pg, self.args.cases
        if "a" in cases or "b" in cases or "d" in cases:
            group = []
            if "a" in cases:
                group += [self.add("pg_dump -Fc -Z6", "pg_dump -Fc -Z 6 -f FILE (bench)",
                                   self.pg_dump("bench", ["-Fc", "-Z", "6"], "fc6.dump")),
                          self.add("db_backup custom gzip-6", "db_backup format=custom compression=gzip "
                                   "compression_level=6 (bench)",
                                   self.db_backup(pg.conn("bench"), dict(format="custom", compression="gzip",
                                                                         compression_level=6)))]
            if "b" in cases or "d" in cases:
                group += [self.add("pg_dump -Fc", "pg_dump -Fc -f FILE, default compression (bench)",
                                   self.pg_dump("bench", ["-Fc"], "fc.dump")),
                          self.add("pg_dump -Fc -Z0", "pg_dump -Fc -Z 0 -f FILE: no compression, the floor (bench)",
                                   self.pg_dump("bench", ["-Fc", "-Z", "0"], "fc0.dump")),
                          self.add("db_backup default", "db_backup defaults: custom + zstd -3 -T0 (bench)",
                                   self.db_backup(pg.conn("bench"), {}, keep_as="bench_default"))]
            self.run_group("pgbench database: custom archives", group)
        if "c" in cases or "d" in cases:
            group = [self.add("pg_dump -Fd -j1", "pg_dump -Fd -j 1 -f DIR, default compression (benchpar)",
                              self.pg_dump("benchpar", ["-Fd", "-j", "1"], "fd.dir")),
                     self.add("pg_dump -Fd -j2", "pg_dump -Fd -j 2 -f DIR, default compression (benchpar)",
                              self.pg_dump("benchpar", ["-Fd", "-j", "2"], "fd2.dir")),
                     self.add("db_backup directory j2", "db_backup format=directory jobs=2 (benchpar)",
                              self.db_backup(pg.conn("benchpar"), dict(format="directory", jobs=2),
                                             keep_as="benchpar_dir")),
                     self.add("db_backup directory j1", "db_backup format=directory jobs=1 (benchpar)",
                              self.db_backup(pg.conn("benchpar"), dict(format="directory", jobs=1)))]
            self.run_group("%d-table database: directory archives" % self.args.tables, group)
        if "d" in cases:
            self.run_group("restores (custom + zstd backup of bench)", [
                self.add("db_restore custom j1", "db_restore jobs=1 of the default backup of bench",
                         self.db_restore("bench_default", 1, "custom")),
                self.add("db_restore custom j2", "db_restore jobs=2 of the default backup of bench",
                         self.db_restore("bench_default", 2, "custom"))])
            self.run_group("restores (directory backup of benchpar)", [
                self.add("db_restore directory j1", "db_restore jobs=1 of the directory backup of benchpar",
                         self.db_restore("benchpar_dir", 1, "dir")),
                self.add("db_restore directory j2", "db_restore jobs=2 of the directory backup of benchpar",
                         self.db_restore("benchpar_dir", 2, "dir"))])
        if "e" in cases:
            conn = self.my.conn("bench")
            self.run_group("MariaDB", [
                self.add("mariadb-dump", "mariadb-dump --single-transaction DB > FILE",
                         self.mariadb_dump("bench")),
                self.add("mariadb-dump + fsync", "mariadb-dump --single-transaction DB > FILE, then fsync(FILE)",
                         self.mariadb_dump("bench", fsync=True)),
                self.add("db_backup mysql none", "db_backup engine=mysql compression=none",
                         self.db_backup(conn, dict(compression="none"))),
                self.add("db_backup mysql default", "db_backup engine=mysql defaults (plain + zstd -3 -T0)",
                         self.db_backup(conn, {}))])

    def rows(self):
        specs = [
            ("a", "custom gzip-6: db_backup vs pg_dump -Fc -Z6", "db_backup custom gzip-6", "pg_dump -Fc -Z6",
             "seconds", 1.05),
            ("b", "default (custom+zstd) vs pg_dump -Fc: time", "db_backup default", "pg_dump -Fc", "seconds", 0.50),
            ("b", "default (custom+zstd) vs pg_dump -Fc: size", "db_backup default", "pg_dump -Fc", "size", 1.15),
            ("b", "floor: pg_dump -Fc -Z0 vs pg_dump -Fc", "pg_dump -Fc -Z0", "pg_dump -Fc", "seconds", None),
            ("c", "directory jobs=2 vs pg_dump -Fd -j1", "db_backup directory j2", "pg_dump -Fd -j1", "seconds",
             0.70),
            ("c", "db_backup directory jobs=2 vs jobs=1", "db_backup directory j2", "db_backup directory j1",
             "seconds", None),
            ("c", "tool itself: pg_dump -Fd -j2 vs -j1", "pg_dump -Fd -j2", "pg_dump -Fd -j1", "seconds", None),
            ("c", "directory jobs=2 vs pg_dump -Fd -j1: size", "db_backup directory j2", "pg_dump -Fd -j1", "size",
             None),
            ("d", "db_restore jobs=2 vs jobs=1 (custom+zstd)", "db_restore custom j2", "db_restore custom j1",
             "seconds", None),
            ("d", "db_restore jobs=2 vs jobs=1 (directory)", "db_restore directory j2", "db_restore directory j1",
             "seconds", None),
            ("e", "MariaDB none vs mariadb-dump", "db_backup mysql none", "mariadb-dump", "seconds", None),
            ("e", "MariaDB none vs mariadb-dump + fsync", "db_backup mysql none", "mariadb-dump + fsync", "seconds",
             None),
            ("e", "MariaDB default (zstd) vs mariadb-dump", "db_backup mysql default", "mariadb-dump", "seconds",
             None),
            ("e", "MariaDB default (zstd) vs mariadb-dump: size", "db_backup mysql default", "mariadb-dump", "size",
             None),
        ]
        rows = []
        for case, title, ours, ref, what, target in specs:
            if ours not in self.measures or ref not in self.measures:
                continue
            a, b = self.measures[ours].median(what), self.measures[ref].median(what)
            ratio = a / b if b else None
            rows.append(dict(case=case, title=title, ours=ours, reference=ref, metric=what, ours_value=a,
                             reference_value=b, ratio=round(ratio, 3) if ratio is not None else None, target=target,
                             met=None if target is None or ratio is None else ratio <= target))
        return rows

    def machine(self):
        return dict(machine(),
                    pg_dump=first_line([self.pg.bin("pg_dump") if self.pg else "pg_dump", "--version"]),
                    mariadb_dump=first_line(["mariadb-dump", "--version"]),
                    zstd=first_line(["zstd", "--version"]), gzip=first_line(["gzip", "--version"]))

    def report(self, started, finished):
        rows = self.rows()
        unit = {"seconds": lambda v: "%.2f s" % v, "size": human_size}
        lines = ["", "Results (median of %d; scale %d, MariaDB scale %d, filler %s, cases %s):" % (
            self.args.repeat, self.scale, self.mysql_scale, self.args.filler, " ".join(self.args.cases)), ""]
        header = ("case", "comparison", "ours", "reference", "ratio", "target", "met")
        table = [header]
        for row in rows:
            fmt = unit[row["metric"]]
            table.append((row["case"], row["title"], fmt(row["ours_value"]), fmt(row["reference_value"]),
                          "%.2fx" % row["ratio"], "<= %.2fx" % row["target"] if row["target"] else "-",
                          "n/a" if row["met"] is None else ("yes" if row["met"] else "NO")))
        widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
        for index, row in enumerate(table):
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines += ["", "Commands (seconds: median [min - max], size):", ""]
        for key, measure in self.measures.items():
            s = measure.summary()
            lines.append("  %-26s %8.2f [%7.2f - %7.2f]  %-10s %s" % (
                key, s["median_seconds"], s["min_seconds"], s["max_seconds"],
                human_size(s["median_size"]) if s["median_size"] else "", measure.label))
        lines.append("")
        print("\n".join(lines), flush=True)
        data = dict(
            command=" ".join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT)
                              else sys.executable, os.path.relpath(os.path.abspath(__file__), ROOT)] + sys.argv[1:]),
            started=started, finished=finished, machine=self.machine(),
            config=dict(scale=self.scale, mysql_scale=self.mysql_scale, filler=self.args.filler, repeat=self.args.repeat, tables=self.args.tables,
                        cases=self.args.cases, pg_settings_load=self.facts.get("pg_settings_load"),
                        pg_settings_measure=self.facts.get("pg_settings_measure"),
                        mariadb_settings=self.my.settings if self.my else None),
            sizes=dict(postgresql=self.facts.get("pg_sizes"), mariadb=self.facts.get("mysql_size")),
            rows=rows, measurements=dict((k, m.summary()) for k, m in self.measures.items()),
            load_average_end=os.getloadavg())
        write_json(self.args.json, data)
        return data

    def main(self):
        base = self.args.tmpdir or tempfile.gettempdir()
        self.workdir = tempfile.mkdtemp(prefix="safeship-bench-", dir=base)
        # postgres and mysql must reach their own subdirectories; nothing else is readable.
        os.chmod(self.workdir, 0o711)
        for sub in ("private", "out", "kept"):
            os.mkdir(os.path.join(self.workdir, sub), 0o700)
        started = utc_stamp()
        log("work directory %s; scale %d (MariaDB scale %d), repeat %d" % (self.workdir, self.scale,
                                                                           self.mysql_scale, self.args.repeat))
        try:
            if set(self.args.cases) & set("abcd"):
                self.setup_postgres()
            if "e" in self.args.cases:
                self.setup_mariadb()
            self.measure()
            finished = utc_stamp()
            return self.report(started, finished)
        finally:
            self.cleanup()

    def cleanup(self):
        clean_up(self.workdir, [(type(server).__name__, server.stop) for server in (self.pg, self.my) if server is not None],
                 "servers stopped")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--size-gb", type=float, default=1.0,
                      help="approximate size of the pgbench database (default 1.0 -> scale 70)")
    size.add_argument("--scale", type=int, help="pgbench scale factor (overrides --size-gb); 5 for a smoke run")
    parser.add_argument("--mysql-scale", type=int,
                        help="MariaDB rows = this x 100000 (default: the pgbench scale)")
    parser.add_argument("--filler", choices=["blank", "hex"], default="blank",
                        help="filler column of the accounts rows: blank (pgbench's own, default) or hex "
                             "(md5 digits, compresses ~2x like real text)")
    parser.add_argument("--tables", type=int, default=4,
                        help="equal tables in the directory/jobs database; together they hold as many rows as "
                             "pgbench_accounts (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command; the median is used (default 3)")
    parser.add_argument("--cases", default="abcde", help="subset of the cases a b c d e to run (default abcde)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    parser.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin",
                        help="PostgreSQL 15 binaries (server and clients; given to the modules as client_bin_dir)")
    parser.add_argument("--pg-setting", action="append", metavar="NAME=VALUE",
                        help="extra server setting for the measurements (default: none, fsync on)")
    parser.add_argument("--mariadb-buffer-pool", default="2G", help="innodb_buffer_pool_size (default 2G)")
    parser.add_argument("--tmpdir", help="where the work directory goes (default: the system temp dir)")
    args = parser.parse_args(argv)
    args.cases = "".join(c for c in "abcde" if c in args.cases)
    if args.repeat < 1 or args.tables < 1 or not args.cases:
        parser.error("--repeat and --tables must be >= 1 and --cases must name at least one case")
    return args


def main(argv=None):
    if os.geteuid() != 0:
        sys.exit("run as root: the throwaway servers run as the postgres and mysql users")
    args = parse_args(argv)
    return run_bench(Bench(args).main)


if __name__ == "__main__":
    sys.exit(main())
