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
import shutil
import stat
import subprocess
import tarfile
import threading
import time

import pytest

from helpers.laravel_app import add_tenants, db_env, make_laravel_release, migration_names, tables
from helpers.laravel_role import CurrentServer
from helpers.playbooks import Playbook, recap
from helpers.releases import current_of, state_of, tree_snapshot
from helpers.web_stack import web_tmpdir

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
    with web_tmpdir() as base:
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

    # rollback: check mode changes nothing; then code only, v1 serves again; naming the release makes
    # it idempotent
    before = tree_snapshot(app.root)
    ok(app.action("rollback", "--check"))
    assert tree_snapshot(app.root) == before and app.served() == (200, "2.0.0")
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


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_failures_before_the_switch_keep_v1_serving_and_one_after_it_switches_back(app, tmp_path, run_module):
    """The engine does not matter here (v1 -> v2 runs on both): one app lives through a held lock, a broken
    config and an unhealthy release, each deployed under a new id."""
    ok(app.deploy("v1", "1.0.0"))

    # a migration lock held elsewhere: the lock is taken before maintenance mode, so never down
    lock = os.path.join(app.root, ".safeship", "laravel-migrate.lock")
    held = run_module("deploy_lock", dict(path=lock, owner="alice@ops", reason="hotfix", ttl="1h"))
    assert held["changed"] and not held.get("failed"), held
    with DownWatcher(app) as watcher:
        proc = app.deploy("v2", "2.0.0")
    assert proc.returncode != 0
    assert "release v2 of %s was not switched to" % app.root in proc.stdout
    assert "Take the migration lock" in proc.stdout and "is held by alice@ops" in proc.stdout
    assert not watcher.down_seen and set(watcher.statuses) == {200}
    assert not os.path.exists(os.path.join(app.root, "shared", "storage", "framework", "down"))
    assert "notes" not in tables(app.server, app.central)
    assert current_of(app.root) == "v1" and app.served() == (200, "1.0.0")
    with open(lock) as handle:
        assert json.load(handle)["owner"] == "alice@ops"
    released = run_module("deploy_lock", dict(path=lock, state="released", token=held["token"]))
    assert released["changed"] and not released.get("failed"), released

    # a config that does not compile fails while the caches are built in the new release
    broken = str(tmp_path / "broken")
    shutil.copytree(artifact(app.base, "2.0.0"), broken)
    with open(os.path.join(broken, "config", "app.php"), "a") as handle:
        handle.write("\nthis is not php;\n")
    with DownWatcher(app) as watcher:
        proc = app.deploy("v3", "2.0.0", laravel_artifact=broken)
    assert proc.returncode != 0
    assert "release v3 of %s was not switched to" % app.root in proc.stdout
    assert "Build the caches in the release" in proc.stdout and "syntax error" in proc.stdout
    assert "Its directory was removed. The live release v1 still serves" in proc.stdout
    assert not watcher.down_seen and set(watcher.statuses) == {200}
    assert current_of(app.root) == "v1"
    # a release whose build failed is not kept half built: the same deploy again starts from clean code
    assert state_of(app.root) == {"v1": "good", "v2": "ready"}
    assert not os.path.exists(os.path.join(app.root, "releases", "v3"))
    assert "notes" not in tables(app.server, app.central)
    assert app.served() == (200, "1.0.0")

    # v4 brings a migration (maintenance taken) and answers a version the check does not expect
    proc = app.deploy("v4", "2.0.0", laravel_version="9.9.9", laravel_health_retries=1)
    assert proc.returncode != 0
    assert SECRET not in proc.stdout
    assert "release v4 of %s failed after the switch" % app.root in proc.stdout
    assert "Switched back to v1, which is healthy again; v4 is marked bad." in proc.stdout
    assert current_of(app.root) == "v1"
    assert state_of(app.root) == {"v1": "good", "v2": "ready", "v4": "bad"}
    assert app.served() == (200, "1.0.0")
    assert not os.path.exists(os.path.join(app.root, "shared", "storage", "framework", "down"))
    # the migration stays applied: rolling back code does not undo it
    assert "notes" in tables(app.server, app.central)
    # the bad release is not deployed again under the same id
    before = tree_snapshot(app.root)
    again = app.deploy("v4", "2.0.0")
    assert again.returncode != 0 and "release v4 of %s is marked bad" % app.root in again.stdout
    assert tree_snapshot(app.root) == before and app.served() == (200, "1.0.0")


def crontab(user="www-data"):
    done = subprocess.run(["crontab", "-l", "-u", user], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def remove_cron_entries(root):
    """Drop this test's entries from www-data's crontab (other tests' stay)."""
    lines = crontab().splitlines(True)
    kept, skip = [], False
    for line in lines:
        if skip:
            skip = False
            continue
        if line.startswith("#Ansible: ") and root in line:
            skip = True
            continue
        kept.append(line)
    subprocess.run(["crontab", "-u", "www-data", "-"], input="".join(kept), universal_newlines=True, check=True)


@pytest.fixture()
def two_hosts(request, tmp_path, unique_name, postgres_server):
    """Two hosts (local connections), each with its own application root, one central database."""
    central = unique_name + "_central"
    postgres_server.create_database(central)
    with web_tmpdir() as base:
        playbook = Playbook(tmp_path / "play", hosts=("app1", "app2"))
        roots = {}
        os.makedirs(os.path.join(playbook.workdir, "host_vars"))
        for host in ("app1", "app2"):
            roots[host] = os.path.join(base, host, "shop")
            with open(os.path.join(playbook.workdir, "host_vars", host + ".yml"), "w") as handle:
                json.dump({"laravel_app_root": roots[host]}, handle)
        try:
            yield playbook, roots, base, central
        finally:
            for root in roots.values():
                remove_cron_entries(root)
            postgres_server.drop_database(central)


def test_two_hosts_migrate_once_and_get_one_cron_entry_each(two_hosts, postgres_server):
    playbook, roots, base, central = two_hosts
    env = db_env(postgres_server, central)
    common = dict(laravel_env=env, laravel_nginx_site=False, laravel_scheduler=True)
    # v1 from a directory, v2 from a tarball (one top directory, stripped)
    tarball = os.path.join(base, "shop-2.0.0.tar.gz")
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(artifact(base, "2.0.0"), arcname="shop-2.0.0")
    for release_id, source in (("v1", dict(laravel_artifact=artifact(base, "1.0.0"))),
                               ("v2", dict(laravel_artifact=tarball, laravel_artifact_strip_components=1))):
        proc = ok(playbook.run(DEPLOY, dict(common, laravel_release_id=release_id, **source)))
        # one migrate for both hosts, on the first one (run_once)
        section = proc.stdout.split("Run artisan migrate --force in the new release]", 1)[1].split("TASK [", 1)[0]
        assert "changed: [app1]" in section and "app2" not in section
        # maintenance (v2) on both hosts' live releases
        if release_id == "v2":
            section = proc.stdout.split("Put the live release in maintenance mode (artisan down)]", 1)[1].split("TASK [", 1)[0]
            assert "changed: [app1]" in section and "changed: [app2]" in section
        for root in roots.values():
            assert current_of(root) == release_id
    batches = dict(postgres_server.execute("SELECT migration, batch FROM migrations", central))
    assert batches["2021_01_01_000000_create_notes_table"] == 2
    assert max(batches.values()) == 2
    for root in roots.values():
        assert state_of(root) == {"v1": "good", "v2": "good"}
        assert os.path.isfile(os.path.join(root, "releases", "v2", "database", "migrations",
                                           "2021_01_01_000000_create_notes_table.php"))

    # one scheduler entry per application root, after two deploys
    table = crontab()
    for root in roots.values():
        job = "cd %s/current && php artisan schedule:run >> /dev/null 2>&1" % root
        assert table.count(job) == 1, table
        assert table.count("#Ansible: safeship.webapp.laravel schedule:run %s\n" % root) == 1
    # the entry runs: schedule:run as www-data in current writes the heartbeat as www-data
    run = subprocess.run(["runuser", "-u", "www-data", "--", "sh", "-c",
                          "cd %s/current && php artisan schedule:run" % roots["app1"]],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert run.returncode == 0, run.stdout
    heartbeat = os.path.join(roots["app1"], "shared", "storage", "app", "heartbeat.log")
    with open(heartbeat) as handle:
        assert handle.read().split()[1] == "2.0.0"
    assert os.stat(heartbeat).st_uid == WEB_UID


@pytest.mark.parametrize("bad, message", [
    (dict(laravel_app_root="srv/shop"), "laravel_app_root must be an absolute path"),
    (dict(laravel_caches=["config", "routes"]), "laravel_caches"),
    (dict(laravel_action="deploy-now"), "laravel_action"),
    (dict(laravel_env={"NOT-VALID": "x"}), "NOT-VALID"),
    (dict(laravel_supervisor_programs=[dict(name="a b")]), "laravel_supervisor_programs needs a unique name"),
    (dict(laravel_tenants_migrate=True), "with laravel_tenants_migrate, give either laravel_tenants"),
    (dict(laravel_artifact=""), "a deploy needs laravel_artifact"),
])
def test_bad_variables_fail_before_anything_changes(tmp_path, bad, message):
    with web_tmpdir() as base:
        root = os.path.join(base, "srv", "shop")
        extra = dict(laravel_app_root=root, laravel_release_id="v1", laravel_artifact=artifact(base, "1.0.0"),
                     laravel_nginx_site=False, laravel_scheduler=False, laravel_env={"APP_ENV": "production"})
        extra.update(bad)
        proc = Playbook(tmp_path / "play").run(DEPLOY, extra)
        assert proc.returncode != 0
        assert message in proc.stdout
        assert recap(proc.stdout)["failed"] == 1 and recap(proc.stdout)["changed"] == 0
        assert not os.path.exists(root) and not os.path.exists(os.path.join(base, "srv", "shop"))


DEPLOY_AND_REPORT_TENANTS = DEPLOY + """\
  post_tasks:
    - name: Report which tenants ran
      ansible.builtin.debug:
        msg: "RAN={{ laravel_tenant_migration.results | rejectattr('status', 'equalto', 'skipped')
                     | map(attribute='tenant') | list | to_json }}"
"""


# tenant_migrate itself runs on both engines in test_tenant_migrate.py; here the role's part of it
@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_twenty_tenants_migrate_once_and_a_failed_one_resumes(app, unique_name):
    ok(app.deploy("v1", "1.0.0"))
    server, quote = app.server, '"' if app.server.engine == "postgresql" else "`"
    tenants = {}
    for number in range(1, 21):
        tenant_id = "tenant%02d" % number
        tenants[tenant_id] = "%s_%s" % (unique_name, tenant_id)
        server.create_database(tenants[tenant_id])
    add_tenants(server, app.central, tenants)
    # tenant07's database has a posts table already: its first tenant migration fails
    server.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY)", tenants["tenant07"])
    tenant_vars = dict(
        laravel_tenants_migrate=True,
        laravel_tenants_query="SELECT id, %sdatabase%s FROM tenants ORDER BY id" % (quote, quote),
        laravel_tenant_db=dict(engine=server.engine, login_host="127.0.0.1", login_port=server.port,
                               login_user=server.user, login_password=server.password, database=app.central),
    )
    try:
        proc = app.deploy("v2", "2.0.0", **tenant_vars)
        assert proc.returncode != 0
        assert server.password not in proc.stdout and SECRET not in proc.stdout
        assert "release v2 of %s was not switched to" % app.root in proc.stdout
        assert "tenant07" in proc.stdout
        # the central migration ran, the other 19 tenants are migrated, v1 serves again (maintenance lifted)
        assert "notes" in tables(server, app.central)
        for tenant_id, database in tenants.items():
            assert ("comments" in tables(server, database)) == (tenant_id != "tenant07")
        assert current_of(app.root) == "v1" and app.served() == (200, "1.0.0")
        assert not os.path.exists(os.path.join(app.root, "shared", "storage", "framework", "down"))
        state_file = os.path.join(app.root, ".safeship", "tenants", "v2.json")
        with open(state_file) as handle:
            state = json.load(handle)
        assert sorted(tid for tid, entry in state["tenants"].items() if entry["status"] == "ok") == sorted(
            tid for tid in tenants if tid != "tenant07")
        assert root_owned(os.path.join(app.root, "shared", "storage")) == []

        # fixed, the same deploy again runs tenant07 only and switches
        server.execute("DROP TABLE posts", tenants["tenant07"])
        extra = dict(app.vars, laravel_release_id="v2", laravel_artifact=artifact(app.base, "2.0.0"), **tenant_vars)
        proc = ok(app.playbook.run(DEPLOY_AND_REPORT_TENANTS, extra))
        assert 'RAN=[\\"tenant07\\"]' in proc.stdout or 'RAN=["tenant07"]' in proc.stdout
        assert "comments" in tables(server, tenants["tenant07"])
        assert current_of(app.root) == "v2" and app.served() == (200, "2.0.0")
        assert state_of(app.root) == {"v1": "good", "v2": "good"}
    finally:
        for database in tenants.values():
            server.drop_database(database)
