"""The laravel role run by ansible-playbook on localhost against the Laravel 8 fixture app, on real
PostgreSQL and MariaDB servers: composer install, shared .env and storage, artisan as www-data,
caches built in the release, maintenance mode only while central migrations run, migrate once,
switch, health check through an HTTP front that follows `current` per request, idempotence, check
mode, rollback, automatic switch back, the scheduler's cron entry, and bad variables.

nginx and supervisor are left to tests/integration/test_laravel_web.py (laravel_nginx_site false,
no supervisor programs here)."""

import json
import os
import pwd
import stat
import subprocess
import threading
import time

import pytest

from helpers.laravel_app import db_env, make_laravel_release, migrate_status, migration_names, tables
from helpers.laravel_role import CurrentServer, app_base
from helpers.playbooks import Playbook, recap
from helpers.releases import current_of, state_of, tree_snapshot

SECRET = "pw-9f8e7d6c$x\"q'uote"
WEB_UID = pwd.getpwnam("www-data").pw_uid
CENTRAL_TABLES = {"failed_jobs", "jobs", "migrations", "tenants", "users"}

DEPLOY = """\
---
- name: Deploy the Laravel app
  hosts: app
  gather_facts: false
  roles:
    - role: safeship.webapp.laravel
"""

MIGRATION = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

class Create%(class)sTable extends Migration
{
    public function up()
    {
        Schema::create('%(table)s', function (Blueprint $table) {
            $table->id();
            $table->string('text');
        });
    }

    public function down()
    {
        Schema::dropIfExists('%(table)s');
    }
}
"""
# what each version adds to database/migrations (v2 and v3 each bring one central migration)
NEW_MIGRATIONS = {
    "2.0.0": [("2021_01_01_000000_create_notes_table", "Notes", "notes")],
    "3.0.0": [("2021_01_01_000000_create_notes_table", "Notes", "notes"),
              ("2021_02_01_000000_create_tags_table", "Tags", "tags")],
}


def artifact(base, version):
    """The fixture app at `version` (its vendor/ autoloader built), no .env."""
    path = os.path.join(base, "artifacts", version)
    if not os.path.exists(path):
        make_laravel_release(path, version)
        for name, klass, table in NEW_MIGRATIONS.get(version, []):
            with open(os.path.join(path, "database", "migrations", name + ".php"), "w") as handle:
                handle.write(MIGRATION % {"class": klass, "table": table})
    return path


class App(object):
    """One application root deployed with the role, its central database, an HTTP front."""

    def __init__(self, tmp_path, base, server, central):
        self.tmp = tmp_path
        self.base = base
        self.server = server
        self.central = central
        self.root = os.path.join(base, "srv", "shop")
        self.front = CurrentServer(self.root, str(tmp_path / "front"))
        self.playbook = Playbook(tmp_path / "play")
        self.vars = dict(
            laravel_app_root=self.root,
            laravel_env=db_env(server, central, APP_NAME="shop", APP_SECRET_TOKEN=SECRET),
            laravel_nginx_site=False,
            laravel_scheduler=False,
            laravel_health_url=self.front.url + "/up",
            laravel_health_delay=0.3,
            laravel_maintenance_secret="let-me-in-42",
        )

    def deploy(self, release_id, version, *options, **more):
        extra = dict(self.vars, laravel_release_id=release_id, laravel_artifact=artifact(self.base, version))
        extra.update(more)
        return self.playbook.run(DEPLOY, extra, *options)

    def action(self, action, *options, **more):
        extra = dict(self.vars, laravel_action=action)
        extra.update(more)
        return self.playbook.run(DEPLOY, extra, *options)

    def served(self):
        status, body = self.front.get("/up")
        return status, json.loads(body).get("version") if status == 200 else None

    def release(self, release_id):
        return os.path.join(self.root, "releases", release_id)

    def migrations(self):
        return sorted(row[0] for row in self.server.execute("SELECT migration FROM migrations", self.central))


@pytest.fixture(params=["postgresql", "mariadb"])
def app(request, tmp_path, unique_name):
    server = request.getfixturevalue("postgres_server" if request.param == "postgresql" else "mariadb_server")
    central = unique_name + "_central"
    server.create_database(central)
    with app_base() as base:
        app = App(tmp_path, base, server, central)
        try:
            yield app
        finally:
            app.front.close()
            server.drop_database(central)


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert SECRET not in proc.stdout and "let-me-in-42" not in proc.stdout
    return proc


def root_owned(path):
    """Files and directories below path (links not followed) owned by root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames + ["."]:
            full = os.path.join(dirpath, name)
            if os.lstat(full).st_uid == 0:
                found.append(os.path.normpath(full))
    return sorted(set(found))


class DownWatcher(object):
    """Polls storage/framework/down and the front's /up while a deploy runs."""

    def __init__(self, app):
        self.app = app
        self.down_seen = False
        self.statuses = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def _watch(self):
        down = os.path.join(self.app.root, "shared", "storage", "framework", "down")
        while not self._stop.is_set():
            if os.path.exists(down):
                self.down_seen = True
            try:
                self.statuses.append(self.app.front.get("/up")[0])
            except OSError:
                self.statuses.append(None)
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_deploy_v1_then_v2_with_a_migration(app):
    # v1: first deploy, central migrations from nothing, no maintenance (nothing served before)
    proc = ok(app.deploy("v1", "1.0.0"))
    assert current_of(app.root) == "v1" and state_of(app.root) == {"v1": "good"}
    assert set(tables(app.server, app.central)) == CENTRAL_TABLES
    assert app.served() == (200, "1.0.0")
    release = app.release("v1")

    # .env: shared, linked, 0640 root:www-data, values read back by PHP as written
    shared_env = os.path.join(app.root, "shared", ".env")
    assert os.readlink(os.path.join(release, ".env")) == "../../shared/.env"
    st = os.stat(shared_env)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0 and st.st_gid == pwd.getpwnam("www-data").pw_gid
    loaded = subprocess.run(
        ["php", "-r", 'require "/usr/share/php/Dotenv/autoload.php"; require "/usr/share/php/PhpOption/autoload.php";'
         ' require "/usr/share/php/GrahamCampbell/ResultType/autoload.php";'
         ' echo json_encode(Dotenv\\Dotenv::createArrayBacked($argv[1])->load());', os.path.join(app.root, "shared")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert loaded.returncode == 0, loaded.stdout
    assert json.loads(loaded.stdout)["APP_SECRET_TOKEN"] == SECRET

    # storage shared and the web user's; bootstrap/cache too; no root-owned file in storage
    assert os.readlink(os.path.join(release, "storage")) == "../../shared/storage"
    storage = os.path.join(app.root, "shared", "storage")
    assert root_owned(storage) == []
    assert os.stat(os.path.join(release, "bootstrap", "cache")).st_uid == WEB_UID
    assert root_owned(os.path.join(release, "bootstrap", "cache")) == []

    # the caches were built in the release
    cached = set(os.listdir(os.path.join(release, "bootstrap", "cache")))
    assert {"config.php", "routes-v7.php", "events.php"} <= cached
    assert [name for name in os.listdir(os.path.join(storage, "framework", "views")) if name.endswith(".php")]
    with open(os.path.join(release, "bootstrap", "cache", "config.php")) as handle:
        config = handle.read()
    assert "'version' => '1.0.0'" in config and "'database' => '%s'" % app.central in config
    assert "Run artisan migrate --force" in proc.stdout

    # the same deploy again changes nothing
    again = ok(app.deploy("v1", "1.0.0"))
    assert recap(again.stdout)["changed"] == 0

    # check mode plans v2 and changes nothing
    before = tree_snapshot(app.root)
    check = ok(app.deploy("v2", "2.0.0", "--check"))
    assert "would deploy release v2" in check.stdout
    assert tree_snapshot(app.root) == before
    assert "2021_01_01_000000_create_notes_table" not in app.migrations()

    # v2 brings a migration: maintenance mode while it runs, lifted after the switch
    with DownWatcher(app) as watcher:
        proc = ok(app.deploy("v2", "2.0.0"))
    assert watcher.down_seen and 503 in watcher.statuses
    assert not os.path.exists(os.path.join(storage, "framework", "down"))
    assert app.served() == (200, "2.0.0")
    assert current_of(app.root) == "v2" and state_of(app.root) == {"v1": "good", "v2": "good"}
    assert app.migrations() == migration_names(app.release("v2"))
    batches = dict(app.server.execute("SELECT migration, batch FROM migrations", app.central))
    assert batches["2021_01_01_000000_create_notes_table"] == 2
    assert root_owned(storage) == []

    # rollback: code only, v1 serves again; naming the release makes it idempotent
    ok(app.action("rollback"))
    assert app.served() == (200, "1.0.0") and current_of(app.root) == "v1"
    assert state_of(app.root) == {"v1": "good", "v2": "rolled_back"}
    again = ok(app.action("rollback", laravel_rollback_to="v1"))
    assert recap(again.stdout)["changed"] == 0

    # switch to v2 again (built earlier): no migration, no maintenance
    with DownWatcher(app) as watcher:
        ok(app.action("switch", laravel_release_id="v2"))
    assert not watcher.down_seen
    assert app.served() == (200, "2.0.0") and current_of(app.root) == "v2"

