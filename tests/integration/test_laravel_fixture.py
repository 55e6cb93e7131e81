"""The Laravel 8 multi-tenant fixture app works, on real PostgreSQL 15 and MariaDB servers.

Central migrations, `tenants:migrate` (all, --tenants, a failing tenant, --fresh --seed), the
`migrate:status` output, GET /up through `php -S`, a database-queue job run by `queue:work` and the
scheduled command. Later tests (migration_status, tenant_migrate, the laravel role) rely on this."""

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from helpers.laravel_app import (LaravelLab, add_tenants, artisan, lab_server, make_laravel_release, migrate_status,
                                 migration_names, php_server, tables)
from helpers.ports import free_port

CENTRAL_TABLES = {"failed_jobs", "jobs", "migrations", "tenants", "users"}
TENANT_TABLES = {"comments", "migrations", "posts"}


@pytest.fixture(params=["postgresql", "mariadb"])
def lab(request, tmp_path, unique_name):
    """A release of the fixture (version 2.3.4) whose .env points at an empty central database."""

    class Lab(LaravelLab):
        def create_tenants(self, count):
            """count tenant databases, named in the central tenants table: {id: database}."""
            tenants = {}
            for number in range(1, count + 1):
                tenants["tenant%d" % number] = self.create_database("%s_tenant%d" % (unique_name, number))
            add_tenants(self.server, self.central, tenants)
            return tenants

    lab = Lab(lab_server(request), tmp_path / "release", unique_name, "2.3.4")
    yield lab
    lab.close()


def ok(result):
    assert result.returncode == 0, result.stdout
    return result.stdout


def failed(result):
    assert result.returncode != 0, result.stdout
    return result.stdout


def test_central_migrations_and_status(lab):
    # before anything: no migrations table, which migrate:status reports with exit 1
    assert "Migration table not found" in failed(artisan(lab.path, "migrate:status"))
    # production refuses to migrate without --force (no prompt when not interactive)
    failed(artisan(lab.path, "migrate"))
    assert lab.server.execute("SELECT 1", lab.central) == [(1,)]
    assert tables(lab.server, lab.central) == []

    ok(artisan(lab.path, "migrate", "--force"))
    assert set(tables(lab.server, lab.central)) == CENTRAL_TABLES

    rows = migrate_status(ok(artisan(lab.path, "migrate:status")))
    assert rows == [(name, True, 1) for name in migration_names(lab.path)]
    assert "Nothing to migrate" in ok(artisan(lab.path, "migrate", "--force"))

    # a new migration in a later release shows as pending, then runs in batch 2
    with open(os.path.join(lab.path, "database", "migrations", "2021_01_01_000000_create_notes_table.php"),
              "w") as handle:
        handle.write(NOTES_MIGRATION)
    rows = migrate_status(ok(artisan(lab.path, "migrate:status")))
    assert rows[-1] == ("2021_01_01_000000_create_notes_table", False, None)
    assert [ran for _name, ran, _batch in rows[:-1]] == [True] * (len(rows) - 1)
    ok(artisan(lab.path, "migrate", "--force"))
    assert migrate_status(ok(artisan(lab.path, "migrate:status")))[-1] == (
        "2021_01_01_000000_create_notes_table", True, 2)
    assert "notes" in tables(lab.server, lab.central)


NOTES_MIGRATION = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

class CreateNotesTable extends Migration
{
    public function up()
    {
        Schema::create('notes', function (Blueprint $table) {
            $table->id();
            $table->string('text');
        });
    }

    public function down()
    {
        Schema::dropIfExists('notes');
    }
}
"""


def test_tenants_migrate_all_and_restricted(lab):
    ok(artisan(lab.path, "migrate", "--force"))
    tenants = lab.create_tenants(3)

    # --tenants restricts: only tenant2 gets its tables
    out = ok(artisan(lab.path, "tenants:migrate", "--tenants=tenant2"))
    assert "Tenant: tenant2" in out and "tenant1" not in out and "tenant3" not in out
    assert set(tables(lab.server, tenants["tenant2"])) == TENANT_TABLES
    assert tables(lab.server, tenants["tenant1"]) == tables(lab.server, tenants["tenant3"]) == []
    # the central database got no tenant tables
    assert set(tables(lab.server, lab.central)) == CENTRAL_TABLES

    # all tenants, in table order; tenant2 has nothing left to migrate
    out = ok(artisan(lab.path, "tenants:migrate"))
    positions = [out.index("Tenant: %s (database %s)" % (tenant, database)) for tenant, database in
                 sorted(tenants.items())]
    assert positions == sorted(positions)
    assert out.count("Migrated:  2020_01_02_000000_create_posts_table") == 2
    assert out.count("Nothing to migrate") == 1
    for database in tenants.values():
        assert set(tables(lab.server, database)) == TENANT_TABLES
        names = sorted(row[0] for row in lab.server.execute("SELECT migration FROM migrations", database))
        assert names == migration_names(lab.path, tenant=True)

    # again: nothing pending anywhere; comma-separated ids and an unknown id
    assert ok(artisan(lab.path, "tenants:migrate")).count("Nothing to migrate") == 3
    assert ok(artisan(lab.path, "tenants:migrate", "--tenants=tenant3,tenant1")).count("Tenant: ") == 2
    assert "Unknown tenants: nope" in failed(artisan(lab.path, "tenants:migrate", "--tenants=tenant1,nope"))


def test_tenants_migrate_failing_tenant_then_fresh_seed(lab):
    ok(artisan(lab.path, "migrate", "--force"))
    tenants = lab.create_tenants(3)
    # tenant2's database already has a posts table: its first tenant migration fails
    lab.server.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY)", tenants["tenant2"])

    result = artisan(lab.path, "tenants:migrate")
    out = failed(result)
    assert result.returncode == 1
    assert "Tenant tenant2 failed:" in out
    assert "Tenant migrations failed for 1 of 3 tenants: tenant2" in out
    # the failure stopped neither tenant1 nor tenant3
    for tenant in ("tenant1", "tenant3"):
        assert set(tables(lab.server, tenants[tenant])) == TENANT_TABLES
    assert "comments" not in tables(lab.server, tenants["tenant2"])

    # --fresh drops tenant2's tables first; --seed runs the tenant seeder there only
    ok(artisan(lab.path, "tenants:migrate", "--tenants=tenant2", "--fresh", "--seed"))
    assert set(tables(lab.server, tenants["tenant2"])) == TENANT_TABLES
    assert lab.server.execute("SELECT title FROM posts", tenants["tenant2"]) == [("Welcome",)]
    assert lab.server.execute("SELECT body FROM comments", tenants["tenant2"]) == [("First comment",)]
    assert lab.server.execute("SELECT COUNT(*) FROM posts", tenants["tenant1"]) == [(0,)]
    assert "Nothing to migrate" in ok(artisan(lab.path, "tenants:migrate", "--tenants=tenant2"))


def get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read().decode())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_up_route_queue_and_schedule(lab):
    ok(artisan(lab.path, "migrate", "--force"))
    port = free_port()
    with php_server(lab.path, port) as url:
        status, body = get_json(url + "/up")
        assert status == 200 and body["status"] == "ok" and body["version"] == "2.3.4"
        ok(artisan(lab.path, "down", "--retry=5"))
        assert get_json(url + "/up")[0] == 503
        ok(artisan(lab.path, "up"))
        assert get_json(url + "/up")[0] == 200
    # APP_VERSION in the environment wins over config/app.php
    with php_server(lab.path, free_port(), env={"APP_VERSION": "9.9.9"}) as url:
        assert get_json(url + "/up")[1]["version"] == "9.9.9"

    # a queued job lands in the central jobs table and a worker runs it
    ok(artisan(lab.path, "app:ping", "hello"))
    assert lab.server.execute("SELECT queue, attempts FROM jobs", lab.central) == [("default", 0)]
    assert "Processed:  App\\Jobs\\RecordPing" in ok(artisan(lab.path, "queue:work", "--once", "--stop-when-empty"))
    assert lab.server.execute("SELECT COUNT(*) FROM jobs", lab.central) == [(0,)]
    with open(os.path.join(lab.path, "storage", "app", "pings.log")) as handle:
        assert handle.read().split()[:2] == ["hello", "2.3.4"]

    # the scheduler runs app:heartbeat every minute
    assert "app:heartbeat" in ok(artisan(lab.path, "schedule:list"))
    assert "Running scheduled command" in ok(artisan(lab.path, "schedule:run"))
    with open(os.path.join(lab.path, "storage", "app", "heartbeat.log")) as handle:
        assert handle.read().split()[1] == "2.3.4"

    # the deploy caches build in the release
    for command in ("config:cache", "route:cache", "view:cache", "event:cache"):
        ok(artisan(lab.path, command))
    assert {"config.php", "routes-v7.php", "events.php"} <= set(os.listdir(os.path.join(lab.path, "bootstrap",
                                                                                        "cache")))


def test_composer_install_from_lock_offline(tmp_path):
    """What a deploy runs: `composer install --no-dev --optimize-autoloader` from the committed lock,
    with no network, gives a release that boots."""
    release = make_laravel_release(tmp_path / "release", "3.0.0")
    shutil.rmtree(os.path.join(release, "vendor"))
    done = subprocess.run(["composer", "install", "--no-dev", "--optimize-autoloader", "--no-interaction"],
                          cwd=release, env=dict(os.environ, COMPOSER_ALLOW_SUPERUSER="1", COMPOSER_DISABLE_NETWORK="1"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert done.returncode == 0, done.stdout
    assert "Installing dependencies from lock file" in done.stdout
    assert os.path.isfile(os.path.join(release, "vendor", "composer", "autoload_classmap.php"))
    out = ok(artisan(release, "list"))
    assert "tenants:migrate" in out and "app:heartbeat" in out
