# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenant migrations at scale: tenant_migrate against the app's own sequential `tenants:migrate`.

Standalone: per engine (--engines, PostgreSQL 15 and MariaDB by default) a throwaway server on a
free loopback port, a central database and --tenants tenant databases (default 200) already at the
fixture's two tenant migrations, and a release of tests/fixtures/laravel_app with ONE new tenant
migration (a column with an index on `posts`). Timed in one run, each --repeat times (the order of
the contenders rotated between repeats; medians reported):

  pending (every tenant has the new migration to run; the migration is undone between runs):
    (a) sequential:   `php artisan tenants:migrate` (one PHP process, tenant after tenant, as
                      stancl/tenancy v3 runs it)
    (b) tenant_migrate concurrency 4, batch_size 1: `php artisan tenants:migrate --tenants={tenant}`
                      per tenant (the issue's target: <= 0.4x of (a))
    (c) tenant_migrate concurrency 4, batch_size --batch-size: `--tenants={tenants}`, several tenants
                      per PHP process
  nothing pending (run again right after):
    (d) sequential:   `php artisan tenants:migrate` with nothing to do
    (e) tenant_migrate skip_up_to_date: the migrations tables checked against the migration files,
                      no PHP boot (target: <= 0.1x of (d))

tenant_migrate runs exactly as Ansible runs a module (a Python process reading its arguments from a
0600 JSON file), with tenants_query on the central database and skip_up_to_date on, as the laravel
role calls it; its times include Python start-up, the tenants query and the up-to-date check. After
every pending run the bench checks that every tenant has the new migration recorded.

Times are printed, never asserted: this is not a test. The servers run with fsync off, like the
test servers (measured here: durable settings make (a) ~15 % slower and change no ratio much).

    .venv/bin/python bench/tenants.py                        # 200 tenants, PostgreSQL and MariaDB
    .venv/bin/python bench/tenants.py --tenants 20 --repeat 1 --engines postgresql   # smoke run
    .venv/bin/python bench/tenants.py --json tenants.json
"""

from __future__ import print_function

import argparse
import os
import shutil
import sys
import tempfile
import time

from benchlib import BenchError, clean_up, first_line, log, machine, median, utc_stamp, write_json
from benchlib import run as run_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from helpers.laravel_app import add_tenants, artisan, db_env, make_laravel_release  # noqa: E402 pylint: disable=wrong-import-position
from helpers.modules import ModuleRunner  # noqa: E402 pylint: disable=wrong-import-position
from helpers.servers import MariadbServer, PostgresServer  # noqa: E402 pylint: disable=wrong-import-position

SERVERS = {"postgresql": PostgresServer, "mysql": MariadbServer}
NEW_MIGRATION = "2020_01_03_000000_add_slug_to_posts"
NEW_MIGRATION_PHP = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

class AddSlugToPosts extends Migration
{
    public function up()
    {
        Schema::table('posts', function (Blueprint $table) {
            $table->string('slug')->nullable()->index();
        });
    }

    public function down()
    {
        Schema::table('posts', function (Blueprint $table) {
            $table->dropIndex(['slug']);
            $table->dropColumn('slug');
        });
    }
}
"""
TARGETS = {"pending": 0.4, "nothing": 0.1}


class EngineBench(object):
    """One engine: its server, the central and tenant databases, a release with the new migration."""

    def __init__(self, bench, engine):
        self.bench = bench
        self.engine = engine
        self.server = None
        self.release = None
        self.tenants = {}
        self.times = {key: [] for key in "abcde"}

    def setup(self):
        args = self.bench.args
        started = time.monotonic()
        self.server = SERVERS[self.engine]()
        central = "central"
        self.server.create_database(central)
        workdir = os.path.join(self.bench.workdir, self.engine)
        os.makedirs(workdir)
        self.release = make_laravel_release(os.path.join(workdir, "release"), "2.0.0", db_env(self.server, central))
        self.must(artisan(self.release, "migrate", "--force"), "central migrate")
        width = len(str(args.tenants))
        self.tenants = {"t%0*d" % (width, n): "tenant_%0*d" % (width, n) for n in range(1, args.tenants + 1)}
        for database in self.tenants.values():
            self.server.create_database(database)
        add_tenants(self.server, central, self.tenants)
        # the two migrations every tenant already has, then the new one (the release being deployed)
        self.must(artisan(self.release, "tenants:migrate", timeout=3600), "baseline tenants:migrate")
        with open(os.path.join(self.release, "database", "migrations", "tenant", NEW_MIGRATION + ".php"), "w") as handle:
            handle.write(NEW_MIGRATION_PHP)
        log("%s: %d tenant databases ready in %.1f s" % (self.engine, len(self.tenants), time.monotonic() - started))

    @staticmethod
    def must(done, what):
        if done.returncode:
            raise BenchError("%s failed (exit %d):\n%s" % (what, done.returncode, done.stdout[-3000:]))
        return done

    def module_args(self, batch_size, skip_up_to_date=True):
        argv = [self.bench.php, "artisan", "tenants:migrate", "--tenants={tenants}" if batch_size > 1 else "--tenants={tenant}"]
        return dict(
            engine=self.engine, login_host="127.0.0.1", login_port=self.server.port, login_user=self.server.user,
            login_password=self.server.password, database="central",
            tenants_query='SELECT id, %s FROM tenants ORDER BY id' % ('"database"' if self.engine == "postgresql" else "`database`"),
            command=argv, chdir=self.release, concurrency=self.bench.args.concurrency, batch_size=batch_size,
            skip_up_to_date=skip_up_to_date, migrations_path=["database/migrations/tenant"])

    def run_module(self, batch_size):
        started = time.perf_counter()
        result = self.bench.modules("tenant_migrate", self.module_args(batch_size), timeout=3600)
        elapsed = time.perf_counter() - started
        if result.rc != 0 or result.get("failed"):
            raise BenchError("tenant_migrate failed: %s\n%s" % (result.get("msg"), result.stderr[-2000:]))
        return elapsed, result["summary"]

    def sequential(self):
        started = time.perf_counter()
        self.must(artisan(self.release, "tenants:migrate", timeout=3600), "tenants:migrate")
        return time.perf_counter() - started

    def applied(self):
        """How many tenants have the new migration recorded."""
        count = 0
        for database in self.tenants.values():
            rows = self.server.execute("SELECT COUNT(*) FROM migrations WHERE migration = %s", database, (NEW_MIGRATION,))
            count += rows[0][0]
        return count

    def undo(self):
        """Take the new migration back out of every tenant (untimed), so the next contender has it pending."""
        for database in self.tenants.values():
            if self.engine == "postgresql":
                self.server.execute("DROP INDEX IF EXISTS posts_slug_index", database)
                self.server.execute("ALTER TABLE posts DROP COLUMN IF EXISTS slug", database)
            else:
                self.server.execute("ALTER TABLE posts DROP COLUMN slug", database)
            self.server.execute("DELETE FROM migrations WHERE migration = %s", database, (NEW_MIGRATION,))

    def pending_run(self, key):
        """One timed pending run of contender a, b or c; checked, then undone."""
        if self.applied():
            raise BenchError("%s: the new migration is already recorded before run %s" % (self.engine, key))
        if key == "a":
            elapsed = self.sequential()
            detail = ""
        else:
            elapsed, summary = self.run_module(1 if key == "b" else self.bench.args.batch_size)
            detail = " (ok %d, skipped %d)" % (summary["ok"], summary["skipped"])
        applied = self.applied()
        if applied != len(self.tenants):
            raise BenchError("%s run %s: the new migration is recorded in %d of %d tenants" % (
                self.engine, key, applied, len(self.tenants)))
        log("%s (%s): %.2f s%s" % (key, self.engine, elapsed, detail))
        self.times[key].append(elapsed)
        return elapsed

    def nothing_run(self, key):
        if key == "d":
            elapsed = self.sequential()
            detail = ""
        else:
            elapsed, summary = self.run_module(1)
            if summary["skipped"] != len(self.tenants):
                raise BenchError("%s: tenant_migrate with nothing pending ran %d tenants" % (self.engine, summary["ok"]))
            detail = " (all %d skipped)" % summary["skipped"]
        log("%s (%s): %.2f s%s" % (key, self.engine, elapsed, detail))
        self.times[key].append(elapsed)

    def measure(self):
        repeats = self.bench.args.repeat
        for repeat in range(repeats):
            order = "abc"[repeat % 3:] + "abc"[:repeat % 3]
            for index, key in enumerate(order):
                if index:
                    self.undo()
                self.pending_run(key)
            # right after a deploy every tenant is up to date: the no-op runs
            for key in ("de" if repeat % 2 == 0 else "ed"):
                self.nothing_run(key)
            if repeat + 1 < repeats:
                self.undo()
        return self.result()

    def result(self):
        med = {key: median(values) for key, values in self.times.items()}
        ratios = dict(
            pending_batch1=med["b"] / med["a"], pending_batched=med["c"] / med["a"], nothing=med["e"] / med["d"])
        return dict(engine=self.engine, tenants=len(self.tenants), times=self.times,
                    median={key: round(value, 3) for key, value in med.items()},
                    ratios={key: round(value, 3) for key, value in ratios.items()})

    def close(self):
        if self.server is not None:
            self.server.close()
            self.server = None


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.workdir = None
        self.current = None
        self.modules = None
        self.php = shutil.which("php")
        self.results = []

    def machine(self):
        return dict(machine(), php=first_line([self.php or "php", "--version"]),
                    laravel=first_line([self.php or "php", "-r",
                                        "require '/usr/share/php/Illuminate/autoload.php'; "
                                        "echo Illuminate\\Foundation\\Application::VERSION;"]))

    def main(self):
        if not self.php:
            raise BenchError("php is missing: run ./scripts/test once, it installs what the benchmarks need")
        self.workdir = tempfile.mkdtemp(prefix="safeship-tenants-")
        self.modules = ModuleRunner(self.workdir)
        started = utc_stamp()
        log("work directory %s" % self.workdir)
        try:
            for engine in self.args.engines:
                self.current = EngineBench(self, engine)
                try:
                    self.current.setup()
                    self.results.append(self.current.measure())
                finally:
                    self.current.close()
                    self.current = None
            return self.report(started, utc_stamp())
        finally:
            self.cleanup()

    def report(self, started, finished):
        args = self.args
        lines = ["", "%d tenants, one new tenant migration, tenant_migrate concurrency %d, median of %d:" % (
            args.tenants, args.concurrency, args.repeat), ""]
        header = ("engine", "contender", "seconds", "ratio", "target")
        table = [header]
        for r in self.results:
            med, ratios = r["median"], r["ratios"]
            rows = [
                ("pending: php artisan tenants:migrate (sequential)", med["a"], None, None),
                ("pending: tenant_migrate batch_size 1", med["b"], ratios["pending_batch1"], TARGETS["pending"]),
                ("pending: tenant_migrate batch_size %d" % args.batch_size, med["c"], ratios["pending_batched"],
                 TARGETS["pending"]),
                ("nothing pending: php artisan tenants:migrate", med["d"], None, None),
                ("nothing pending: tenant_migrate skip_up_to_date", med["e"], ratios["nothing"], TARGETS["nothing"]),
            ]
            for name, seconds, ratio, target in rows:
                table.append((r["engine"], name, "%.2f" % seconds, "" if ratio is None else "%.2fx" % ratio,
                              "" if target is None else "<= %.1fx %s" % (target, "met" if ratio <= target else "MISSED")))
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for index, row in enumerate(table):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        print("\n".join(lines), flush=True)
        data = dict(command=" ".join(["bench/tenants.py"] + sys.argv[1:]), started=started, finished=finished,
                    machine=self.machine(), config=dict(tenants=args.tenants, concurrency=args.concurrency,
                                                        batch_size=args.batch_size, repeat=args.repeat,
                                                        engines=args.engines),
                    targets=TARGETS, results=self.results)
        write_json(args.json, data)
        return data

    def cleanup(self):
        closers = [("the %s server" % self.current.engine, self.current.close)] if self.current is not None else []
        clean_up(self.workdir, closers, "servers stopped")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=200, help="tenant databases per engine (default 200)")
    parser.add_argument("--concurrency", type=int, default=4, help="tenant_migrate concurrency (default 4)")
    parser.add_argument("--batch-size", type=int, default=10, help="tenants per PHP process in (c) (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender (default 3; medians)")
    parser.add_argument("--engines", default="postgresql,mysql", help="postgresql, mysql or both (default both)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.tenants < 1 or args.concurrency < 1 or args.batch_size < 2 or args.repeat < 1:
        parser.error("--tenants, --concurrency and --repeat must be positive and --batch-size at least 2")
    unknown = [e for e in args.engines if e not in SERVERS]
    if unknown or not args.engines:
        parser.error("--engines takes postgresql and/or mysql, not %s" % ", ".join(unknown or ["nothing"]))
    return args


def main(argv=None):
    args = parse_args(argv)
    return run_bench(Bench(args).main)


if __name__ == "__main__":
    sys.exit(main())
