"""The Laravel fixture app deployed by the laravel role and served for real: a private nginx +
PHP-FPM (pool as www-data on a unix socket) and a private supervisord running the queue workers
(tests/helpers/web_stack.py), on PostgreSQL. The role renders its nginx site into that nginx's
sites dir (tested and reloaded with its -c) and its worker programs into that supervisord's conf.d.

One site is deployed for the module: r1 (1.0.0), then r2 (2.0.0, with a slow pending central
migration) with laravel_maintenance=always while a watcher polls /up. The tests check:
- maintenance: 200 from 1.0.0, then only 503 with Retry-After 60 while the role holds it (the
  secret path lets a browser through), then 200 from 2.0.0;
- the caches built in the release (config, route, event, view) are what serves;
- workers: supervisord runs `queue:work` from <app_root>/current as www-data; after the deploy
  (switch + queue:restart) the worker pids changed, they run in the new release and a job queued
  then is run by it;
- 6 switches of the role in one ansible-playbook run under 120 requests/s through nginx + PHP-FPM
  ($realpath_root): no request fails, every answer is one release's, both are served in turn;
and, as a control for the stack alone, a raw `current` swap under the same load; and that the
stack leaves no process behind when a test fails inside it."""

import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from helpers.laravel_app import db_env, make_laravel_release, tables
from helpers.load import LoadGenerator
from helpers.playbooks import Playbook
from helpers.ports import free_port
from helpers.web_stack import Nginx, PhpFpm, Supervisord, chown_tree, http_get, wait_until, web_tmpdir, write_site

WEB_USER = "www-data"
WEB_UID = 33
V1, V2 = "1.0.0", "2.0.0"
VERSIONS = {"r1": V1, "r2": V2}
SECRET = "let-me-in-8d1f3a"
RATE = 120  # asked of the load generator; an idle machine serves all of it (p50 ~6 ms)
# what the load must at least achieve: PHP-FPM is CPU-bound, and on a busy 2-CPU machine (other
# tests, ansible itself) it answers slower, so the rate served drops (60-80/s measured with a load
# average of 10, under 40/s beyond); below this floor the test would prove little
MIN_RATE = 30
LOAD_WORKERS = 32  # concurrent requests: the rate holds while answers slow down on a busy machine
SWITCHES = 10  # raw swaps in the control test
ROLE_SWITCHES = 6  # role runs (each one switches, restarts the workers and probes health)
WORKERS = 2
SLOW_MIGRATION_SECONDS = 3

ROLE = """\
---
- name: The Laravel app behind the test's private nginx, PHP-FPM and supervisord
  hosts: app
  gather_facts: false
  tasks:
    - name: Run the laravel role
      ansible.builtin.include_role:
        name: safeship.webapp.laravel
"""

SWITCHES_PLAY = """\
---
- name: Switch between releases built earlier, one after the other, in one run
  hosts: app
  gather_facts: false
  tasks:
    - name: Switch
      ansible.builtin.include_role:
        name: safeship.webapp.laravel
      vars:
        laravel_action: switch
        laravel_release_id: "{{ switch_release }}"
      loop: "{{ switch_order }}"
      loop_control:
        loop_var: switch_release
"""

# a central migration that takes a while, so the maintenance window is long enough to be watched
SLOW_MIGRATION = """<?php

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
        sleep(%d);
    }

    public function down()
    {
        Schema::dropIfExists('notes');
    }
}
"""


# ---- helpers ------------------------------------------------------------------------------------
def artisan_as(path, *args, **kwargs):
    """`php artisan ARGS` in path as the web user, as the role runs it (no root-owned file lands in
    the shared storage)."""
    done = subprocess.run(["runuser", "-u", WEB_USER, "--", "php", "artisan", "--no-ansi", "--no-interaction"]
                          + [str(arg) for arg in args], cwd=str(path), env=dict(os.environ, LANG="C", LC_ALL="C"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=kwargs.get("timeout", 120), check=False)
    assert done.returncode == 0, "artisan %s failed:\n%s" % (" ".join(args), done.stdout)
    return done


def up(url, headers=None):
    """GET /up -> (status, headers, JSON body or None)."""
    status, headers, body = http_get(url + "/up", headers=headers)
    data = json.loads(body) if headers.get("content-type", "").startswith("application/json") else None
    return status, headers, data


def served_version(url):
    status, dummy, data = up(url)
    assert status == 200, (status, data)
    return data["version"]


def pings(shared):
    """The lines the workers wrote to the shared storage/app/pings.log: [[message, version, pid]]."""
    path = os.path.join(shared, "storage", "app", "pings.log")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [line.split() for line in handle if line.strip()]


def ping(shared, release, message, log, timeout=30):
    """Queue `app:ping MESSAGE` from release; wait until a worker ran it -> [message, version, pid]."""
    artisan_as(release, "app:ping", message)
    found = []

    def done():
        found[:] = [line for line in pings(shared) if line[0] == message]
        return found
    wait_until(done, timeout, "a worker to run ping %s" % message, log=log)
    return found[0][0], found[0][1], int(found[0][2])


def new_workers(sup, program, before, count=WORKERS, timeout=60):
    """Wait until `count` processes of program are RUNNING, none of them one of before -> pids."""
    seen = []

    def replaced():
        seen[:] = sup.pids(program)  # one status read for both conditions
        return len(seen) == count and not set(before) & set(seen)
    wait_until(replaced, timeout, "new %s processes (were %s)" % (program, before), log=sup.logfile)
    return list(seen)


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line for pid %d" % pid)


def proc_cwd(pid):
    return os.path.realpath("/proc/%d/cwd" % pid)


class Watcher(threading.Thread):
    """GET /up every 50 ms until stopped -> seen [(status, Retry-After, version)]. The first time it
    sees 503 it also tries the maintenance secret -> bypass [(status of /SECRET, cookie name, status
    and version of /up with that cookie)], and a wrong secret and a forged cookie -> refused [status,
    status]."""

    def __init__(self, url):
        super(Watcher, self).__init__(daemon=True)
        self.url = url
        self.seen = []
        self.bypass = []
        self.refused = []
        self.errors = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                status, headers, data = up(self.url)
                self.seen.append((status, headers.get("retry-after"), (data or {}).get("version")))
                if status == 503 and not self.bypass:
                    code, headers, dummy = http_get(self.url + "/" + SECRET)
                    cookie = headers.get("set-cookie", "").split(";", 1)[0]
                    status, dummy, data = up(self.url, headers={"Cookie": cookie})
                    self.bypass.append((code, cookie.split("=", 1)[0], status, (data or {}).get("version")))
                    # neither a wrong secret nor a forged cookie gets through
                    self.refused.append(http_get(self.url + "/not-" + SECRET)[0])
                    self.refused.append(up(self.url, headers={"Cookie": "laravel_maintenance=e30="})[0])
            except Exception as exc:  # noqa: BLE001 - a failed request is a result
                self.errors.append(repr(exc))
            self.halt.wait(0.05)

    def stop(self):
        self.halt.set()
        self.join(30)

    def runs(self):
        """seen with repeats collapsed."""
        runs = []
        for item in self.seen:
            if not runs or runs[-1] != item:
                runs.append(item)
        return runs


# ---- the site, deployed by the role -------------------------------------------------------------
class RoleSite(object):
    """The fixture app deployed by the laravel role into <base>/app: its nginx site rendered into
    the private nginx's sites dir (tested and reloaded with that nginx's -c), its worker programs
    into the private supervisord's conf.d (supervisorctl -c)."""

    def __init__(self, base, workdir, fpm, nginx, supervisor, server, central):
        self.root = os.path.join(base, "app")
        self.shared = os.path.join(self.root, "shared")
        self.current = os.path.join(self.root, "current")
        self.artifacts = os.path.join(str(workdir), "artifacts")
        self.fpm, self.nginx, self.supervisor = fpm, nginx, supervisor
        self.server, self.central = server, central
        self.url = nginx.url
        self.worker_log = os.path.join(supervisor.child_logs, "worker.log")
        self.playbook = Playbook(os.path.join(str(workdir), "play"))
        self.vars = dict(
            laravel_app_root=self.root,
            laravel_env=db_env(server, central, APP_NAME="laravel-web"),
            laravel_scheduler=False,  # cron is global: the role's own tests cover it
            laravel_maintenance_secret=SECRET,
            laravel_nginx_conf_path=os.path.join(nginx.sites_dir, "laravel-web.conf"),
            laravel_nginx_listen="127.0.0.1:%d" % nginx.port,
            laravel_php_fpm_socket=fpm.socket,
            laravel_nginx_test_command=nginx.test_argv,
            laravel_nginx_reload_command=nginx.reload_argv,
            laravel_supervisor_programs=[dict(name="worker", numprocs=WORKERS, stopwaitsecs=15)],
            laravel_supervisor_conf_dir=supervisor.conf_dir,
            laravel_supervisor_log_dir=supervisor.child_logs,
            laravel_supervisorctl=supervisor.ctl_argv,
            laravel_health_url=nginx.url + "/up",
            laravel_health_delay=0.5,
        )

    def artifact(self, version, slow_migration=0):
        path = os.path.join(self.artifacts, version)
        if not os.path.isdir(path):
            make_laravel_release(path, version)
            if slow_migration:
                name = "2021_01_01_000000_create_notes_table.php"
                with open(os.path.join(path, "database", "migrations", name), "w") as handle:
                    handle.write(SLOW_MIGRATION % slow_migration)
        return path

    def run(self, text, **extra):
        proc = self.playbook.run(text, dict(self.vars, **extra))
        for secret in (SECRET, self.vars["laravel_env"]["DB_PASSWORD"]):
            assert secret not in proc.stdout, "a secret is in the playbook output"
        return proc

    def deploy(self, release_id, version, slow_migration=0, **extra):
        proc = self.run(ROLE, laravel_release_id=release_id, laravel_artifact=self.artifact(version, slow_migration),
                        **extra)
        assert proc.returncode == 0, "deploying %s failed:\n%s" % (release_id, proc.stdout[-6000:])
        return proc

    def switch(self, order):
        proc = self.run(SWITCHES_PLAY, switch_order=list(order))
        assert proc.returncode == 0, "the switches failed:\n%s" % proc.stdout[-6000:]
        return proc

    def release_dir(self, release_id):
        return os.path.join(self.root, "releases", release_id)


@pytest.fixture(scope="module")
def site(tmp_path_factory, postgres_server):
    """r1 then r2 (slow pending migration, maintenance always, watched) deployed by the role behind
    a private PHP-FPM + nginx + supervisord; what was seen along the way is kept on the site."""
    central = "t_%s_web" % uuid.uuid4().hex[:8]
    postgres_server.create_database(central)
    workdir = tmp_path_factory.mktemp("laravel_web")
    try:
        with web_tmpdir() as base:
            port = free_port()
            with PhpFpm(base, children=4) as fpm, Nginx(base, port, fpm.socket) as nginx, \
                    Supervisord(base) as supervisor:
                role_site = RoleSite(base, workdir, fpm, nginx, supervisor, postgres_server, central)
                role_site.deploy("r1", V1, laravel_maintenance="always")
                role_site.first = dict(version=served_version(nginx.url),
                                       down=os.path.exists(os.path.join(role_site.shared, "storage", "framework",
                                                                        "down")),
                                       workers=new_workers(supervisor, "worker", []))
                role_site.first["cwds"] = [proc_cwd(pid) for pid in role_site.first["workers"]]
                role_site.first["ping"] = ping(role_site.shared, role_site.release_dir("r1"), "before",
                                               role_site.worker_log)
                watcher = Watcher(nginx.url)
                watcher.start()
                try:
                    role_site.deploy("r2", V2, slow_migration=SLOW_MIGRATION_SECONDS, laravel_maintenance="always")
                finally:
                    watcher.stop()
                role_site.watcher = watcher
                role_site.second = dict(workers=new_workers(supervisor, "worker", role_site.first["workers"]))
                yield role_site
    finally:
        postgres_server.drop_database(central)


def test_role_maintenance_503_then_200_through_nginx(site):
    """laravel_maintenance=always and a pending central migration: while the role holds maintenance
    /up answers 503 with Retry-After through nginx + PHP-FPM, the secret lets a browser through,
    and after the deploy the new version answers 200."""
    assert site.first["version"] == V1 and not site.first["down"]
    watcher = site.watcher
    assert not watcher.errors, watcher.errors[:5]
    # 200 from 1.0.0, then 503 with Retry-After for the whole window, then 200 from 2.0.0; nothing else
    assert watcher.runs() == [(200, None, V1), (503, "60", None), (200, None, V2)], watcher.runs()
    # the window lasted at least the migration (a watcher poll every 50 ms)
    assert sum(1 for item in watcher.seen if item[0] == 503) >= SLOW_MIGRATION_SECONDS * 5
    # the secret path: a redirect setting the bypass cookie, with which /up answers 200 during maintenance
    assert len(watcher.bypass) == 1, watcher.bypass
    assert watcher.bypass[0][:3] == (302, "laravel_maintenance", 200), watcher.bypass
    assert watcher.bypass[0][3] in (V1, V2)
    assert watcher.refused == [503, 503], watcher.refused
    assert "notes" in tables(site.server, site.central)  # the migration ran
    assert not os.path.exists(os.path.join(site.shared, "storage", "framework", "down"))
    status, headers, data = up(site.url)
    assert status == 200 and data["version"] == V2 and "retry-after" not in headers


def test_role_caches_built_in_the_release_serve(site):
    for release_id in ("r1", "r2"):
        cache = os.path.join(site.release_dir(release_id), "bootstrap", "cache")
        assert {"config.php", "routes-v7.php", "events.php"} <= set(os.listdir(cache)), release_id
    views = os.path.join(site.shared, "storage", "framework", "views")
    assert [name for name in os.listdir(views) if name.endswith(".php")], "view:cache compiled nothing"
    live = os.path.realpath(site.current)
    version = VERSIONS[os.path.basename(live)]
    status, dummy, data = up(site.url)
    assert (status, data["version"], data["app"]) == (200, version, "laravel-web")
    # what serves is the cached configuration: a change to config/app.php is not seen
    config = os.path.join(live, "config", "app.php")
    with open(config) as handle:
        text = handle.read()
    try:
        with open(config, "w") as handle:
            handle.write(text.replace("'%s'" % version, "'9.9.9'"))
        assert served_version(site.url) == version
    finally:
        with open(config, "w") as handle:
            handle.write(text)


def test_role_workers_restart_into_the_new_release(site):
    sup = site.supervisor
    with open(os.path.join(sup.conf_dir, "worker.conf")) as handle:
        program = handle.read()
    assert "directory=%s\n" % site.current in program and "user=%s\n" % WEB_USER in program
    # r1's workers ran r1's code and ran the job queued then
    before = site.first["workers"]
    assert len(before) == WORKERS and site.first["cwds"] == [site.release_dir("r1")] * WORKERS
    message, version, pid = site.first["ping"]
    assert (version, pid in before) == (V1, True)
    # the deploy of r2 (switch + queue:restart) replaced every worker
    after = site.second["workers"]
    assert len(after) == WORKERS and not set(before) & set(after)
    # the workers that run now run as the web user in the live release, and run a job queued now
    now = new_workers(sup, "worker", [])
    live = os.path.realpath(site.current)
    for pid in now:
        assert proc_uid(pid) == WEB_UID and proc_cwd(pid) == live, pid
    message, version, pid = ping(site.shared, site.current, "after-%s" % uuid.uuid4().hex[:6], site.worker_log)
    assert version == VERSIONS[os.path.basename(live)] and pid in sup.pids("worker"), (pid, now)
    # no root-owned file in the shared storage
    for root, dirs, files in os.walk(os.path.join(site.shared, "storage")):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            assert os.lstat(name).st_uid == WEB_UID, name


def test_role_switches_under_load_fail_no_request(site):
    live = os.path.basename(os.path.realpath(site.current))
    other = "r1" if live == "r2" else "r2"
    fpm_workers = set(site.fpm.workers())
    order = [other if n % 2 == 0 else live for n in range(ROLE_SWITCHES)]
    with LoadGenerator(site.url + "/up", rate=RATE, workers=LOAD_WORKERS, timeout=2.0) as load:
        load.mark("switching")
        site.switch(order)
        load.mark("switched")
    summary = load.summary
    window = summary.window("switching", "switched")
    print(summary.report())
    assert summary.failed == 0 and summary.sent == summary.ok, summary.report()
    assert window.duration > 0 and window.rate >= MIN_RATE and window.longest_gap < 2.0, window.report()
    # every answer is one release's; both served in turn, ending on the last one switched to
    assert set(r["version"] for r in summary.records) == {V1, V2}, summary.report()
    settled = summary.settled()
    assert settled[0] == VERSIONS[live] and settled[-1] == VERSIONS[order[-1]], summary.report()
    assert all(a != b for a, b in zip(settled, settled[1:])), summary.report()
    assert len(settled) - 1 == ROLE_SWITCHES, summary.report()
    assert os.path.realpath(site.current) == site.release_dir(order[-1])
    # no PHP-FPM restart was needed ($realpath_root)
    assert set(site.fpm.workers()) == fpm_workers


# ---- control: the stack alone -------------------------------------------------------------------
def test_control_raw_current_swap_under_load(postgres_server, unique_name):
    """Without the role: two releases sharing storage, `current` swapped with os.replace under load.
    If this fails the stack (nginx $realpath_root + PHP-FPM) is at fault, not the role."""
    central = unique_name + "_central"
    postgres_server.create_database(central)
    try:
        with web_tmpdir() as base:
            root = os.path.join(base, "app")
            shared = os.path.join(root, "shared", "storage")
            current = os.path.join(root, "current")
            for release_id in ("r1", "r2"):
                path = make_laravel_release(os.path.join(root, "releases", release_id), VERSIONS[release_id],
                                            db_env(postgres_server, central))
                if not os.path.exists(shared):
                    os.makedirs(os.path.dirname(shared))
                    os.rename(os.path.join(path, "storage"), shared)
                    chown_tree(shared, WEB_USER)
                else:
                    subprocess.run(["rm", "-rf", os.path.join(path, "storage")], check=True)
                os.symlink("../../shared/storage", os.path.join(path, "storage"))
                os.chown(os.path.join(path, ".env"), 0, WEB_UID)
                os.chmod(os.path.join(path, ".env"), 0o640)
                chown_tree(os.path.join(path, "bootstrap", "cache"), WEB_USER)
                for kind in ("config", "route", "event", "view"):
                    artisan_as(path, kind + ":cache")

            def swap(release_id):
                os.symlink(os.path.join("releases", release_id), current + ".tmp")
                os.replace(current + ".tmp", current)

            swap("r1")
            port = free_port()
            with PhpFpm(base, children=4) as fpm, Nginx(base, port, fpm.socket) as nginx:
                write_site(nginx.sites_dir, "app", current, "127.0.0.1:%d" % port, fpm.socket)
                nginx.reload()
                assert served_version(nginx.url) == V1
                fpm_workers = set(fpm.workers())
                order = ["r2" if n % 2 == 0 else "r1" for n in range(SWITCHES)]
                with LoadGenerator(nginx.url + "/up", rate=RATE, workers=LOAD_WORKERS, timeout=2.0) as load:
                    time.sleep(0.5)
                    load.mark("switching")
                    for release_id in order:
                        swap(release_id)
                        time.sleep(0.6)  # >= 10 answers per release even at MIN_RATE (settled runs)
                    load.mark("switched")
                    time.sleep(0.5)
                assert set(fpm.workers()) == fpm_workers
    finally:
        postgres_server.drop_database(central)
    summary = load.summary
    window = summary.window("switching", "switched")
    print(summary.report())
    assert summary.failed == 0 and summary.sent == summary.ok, summary.report()
    assert window.rate >= MIN_RATE and window.longest_gap < 2.0, window.report()
    assert set(r["version"] for r in summary.records) == {V1, V2}, summary.report()
    settled = summary.settled()
    assert settled[0] == V1 and settled[-1] == VERSIONS[order[-1]], summary.report()
    assert len(settled) >= SWITCHES // 2 and all(a != b for a, b in zip(settled, settled[1:])), summary.report()


def test_stack_stops_every_process_it_started():
    """Leaving the blocks on an error stops nginx, PHP-FPM, supervisord and the programs it ran:
    no process of theirs is left, whatever the test did."""
    started = {}
    with pytest.raises(RuntimeError, match="the test failed"):
        with web_tmpdir() as base:
            port = free_port()
            with PhpFpm(base, pm="dynamic", children=3) as fpm, Nginx(base, port, fpm.socket) as nginx, \
                    Supervisord(base) as sup:
                with open(os.path.join(sup.conf_dir, "sleeper.conf"), "w") as handle:
                    handle.write("[program:sleeper]\ncommand = sleep 600\nuser = %s\nnumprocs = 2\n"
                                 "process_name = %%(program_name)s_%%(process_num)02d\nstartsecs = 0\n" % WEB_USER)
                assert "sleeper: added process group" in sup.ctl("update").stdout
                sleepers = new_workers(sup, "sleeper", [])
                fpm.reload()
                nginx.reload()
                for name, daemon in (("php-fpm", fpm), ("nginx", nginx), ("supervisord", sup)):
                    started[name] = [daemon.pid] + daemon.workers()
                started["sleepers"] = sleepers
                assert len(started["php-fpm"]) >= 2 and len(started["nginx"]) == 3
                assert all(proc_uid(pid) == WEB_UID for pid in sleepers + started["nginx"][1:])
                raise RuntimeError("the test failed")
    alive = [(name, pid) for name, pids in started.items() for pid in pids if running(pid)]
    assert not alive, alive


def running(pid):
    """pid is a process that has not exited (a zombie waiting for its reaper has)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
