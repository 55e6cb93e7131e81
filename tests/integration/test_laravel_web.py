"""The Laravel fixture app served for real: private nginx + PHP-FPM (pool as www-data, unix socket)
and a private supervisord running queue workers (tests/helpers/web_stack.py), on PostgreSQL.

- maintenance: while `artisan down --retry=60 --secret=...` holds, GET /up through nginx answers
  503 with Retry-After, the secret path lets a browser through (cookie), then `artisan up` -> 200;
- a switch of `current` under ~120 requests/s through nginx + PHP-FPM with the $realpath_root site:
  no request fails, both versions are served, every answer is one release's;
- workers: supervisord runs `queue:work` from <app_root>/current; after a switch and
  `queue:restart` the worker pids change and a job queued then is run by the new release;
- the caches built in the release (config, route, event, view) are what serves /up."""

import json
import os
import subprocess
import time

import pytest

from helpers.laravel_app import db_env, make_laravel_release
from helpers.load import LoadGenerator
from helpers.node_apps import free_port
from helpers.web_stack import Nginx, PhpFpm, Supervisord, chown_tree, http_get, wait_until, web_tmpdir, write_site

WEB_USER = "www-data"
V1, V2 = "1.0.0", "2.0.0"
SECRET = "let-me-in-8d1f3a"
RATE = 120
SWITCHES = 10


@pytest.fixture()
def base():
    with web_tmpdir() as path:
        yield path


@pytest.fixture()
def central(postgres_server, unique_name):
    database = unique_name + "_central"
    postgres_server.create_database(database)
    yield database
    postgres_server.drop_database(database)


def artisan_as(path, *args, **kwargs):
    """`php artisan ARGS` in path as the web user (as the role runs it): no root-owned file lands
    in the shared storage."""
    done = subprocess.run(["runuser", "-u", WEB_USER, "--", "php", "artisan", "--no-ansi", "--no-interaction"]
                          + [str(arg) for arg in args], cwd=str(path), env=dict(os.environ, LANG="C", LC_ALL="C"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=kwargs.get("timeout", 120), check=False)
    if kwargs.get("check", True):
        assert done.returncode == 0, "artisan %s failed:\n%s" % (" ".join(args), done.stdout)
    return done


class App(object):
    """<root>/releases/<id> of the fixture, sharing <root>/shared/storage and <root>/shared/.env (the
    role's layout), `current` a relative symlink; served by nginx + PHP-FPM from current/public."""

    def __init__(self, base, env):
        self.root = os.path.join(base, "app")
        self.shared = os.path.join(self.root, "shared")
        self.current = os.path.join(self.root, "current")
        os.makedirs(os.path.join(self.root, "releases"))
        os.makedirs(self.shared)
        self.env = env

    def release(self, release_id, version):
        path = make_laravel_release(os.path.join(self.root, "releases", release_id), version, self.env)
        storage = os.path.join(self.shared, "storage")
        if not os.path.exists(storage):
            os.rename(os.path.join(path, "storage"), storage)
            chown_tree(storage, WEB_USER)
        else:
            subprocess.run(["rm", "-rf", os.path.join(path, "storage")], check=True)
        os.symlink("../../shared/storage", os.path.join(path, "storage"))
        os.chown(os.path.join(path, ".env"), 0, 33)  # root:www-data 0640: PHP-FPM and workers read it
        os.chmod(os.path.join(path, ".env"), 0o640)
        chown_tree(os.path.join(path, "bootstrap", "cache"), WEB_USER)
        return path

    def switch(self, release_id):
        """The atomic swap: a new relative link renamed over `current`."""
        tmp = self.current + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join("releases", release_id), tmp)
        os.replace(tmp, self.current)

    def caches(self, path):
        for kind in ("config", "route", "event", "view"):
            artisan_as(path, kind + ":cache")


@pytest.fixture()
def stack(base, postgres_server, central):
    """App layout + PHP-FPM + nginx (site on a free port) + supervisord, all private to the test."""
    app = App(base, db_env(postgres_server, central))
    port = free_port()
    with PhpFpm(base, children=4) as fpm, Nginx(base, port, fpm.socket) as nginx, Supervisord(base) as sup:
        write_site(nginx.sites_dir, "app", app.current, "127.0.0.1:%d" % port, fpm.socket)
        app.fpm, app.nginx, app.supervisor = fpm, nginx, sup
        app.url = nginx.url
        yield app


def up(url):
    status, headers, body = http_get(url + "/up")
    data = None
    if headers.get("content-type", "").startswith("application/json"):
        data = json.loads(body)
    return status, headers, data


def served_version(url):
    status, dummy, data = up(url)
    assert status == 200, (status, data)
    return data["version"]


def test_maintenance_through_nginx_and_php_fpm(stack):
    v1 = stack.release("r1", V1)
    artisan_as(v1, "migrate", "--force")
    stack.switch("r1")
    stack.nginx.reload()
    assert served_version(stack.url) == V1

    artisan_as(v1, "down", "--retry=60", "--secret=" + SECRET)
    # the down file is in the shared storage, owned by the web user
    down = os.path.join(stack.shared, "storage", "framework", "down")
    assert os.stat(down).st_uid == 33
    status, headers, data = up(stack.url)
    assert status == 503 and headers.get("retry-after") == "60", (status, headers)
    assert data is None or data.get("version") is None
    # the secret path sets the bypass cookie and sends the browser home; with it /up answers
    status, headers, body = http_get(stack.url + "/" + SECRET)
    assert status == 302 and "laravel_maintenance=" in headers.get("set-cookie", ""), (status, headers, body)
    cookie = headers["set-cookie"].split(";", 1)[0]
    status, headers, body = http_get(stack.url + "/up", headers={"Cookie": cookie})
    assert status == 200 and json.loads(body)["version"] == V1, (status, body)
    # a wrong secret is no way in
    assert http_get(stack.url + "/not-the-secret")[0] == 503
    assert http_get(stack.url + "/up", headers={"Cookie": "laravel_maintenance=bm9wZQ=="})[0] == 503

    artisan_as(v1, "up")
    assert not os.path.exists(down)
    status, headers, data = up(stack.url)
    assert status == 200 and data["version"] == V1 and "retry-after" not in headers


def test_caches_built_in_the_release_serve(stack):
    v1 = stack.release("r1", V1)
    stack.caches(v1)
    cache = os.path.join(v1, "bootstrap", "cache")
    assert {"config.php", "routes-v7.php", "events.php"} <= set(os.listdir(cache))
    views = os.path.join(stack.shared, "storage", "framework", "views")
    assert [name for name in os.listdir(views) if name.endswith(".php")], "view:cache compiled nothing"
    stack.switch("r1")
    stack.nginx.reload()
    assert served_version(stack.url) == V1
    # the served configuration is the cached one: a change to config/app.php is not seen
    config = os.path.join(v1, "config", "app.php")
    with open(config) as handle:
        text = handle.read()
    with open(config, "w") as handle:
        handle.write(text.replace("'%s'" % V1, "'9.9.9'"))
    assert served_version(stack.url) == V1
    artisan_as(v1, "config:clear")
    assert served_version(stack.url) == "9.9.9"


def test_switch_under_load_serves_one_release_per_request(stack):
    """Control: the stack alone (a raw `current` swap, no role): $realpath_root lets PHP-FPM serve
    the new release at once, with no reload of nginx or PHP-FPM and no failed request."""
    for release_id, version in (("r1", V1), ("r2", V2)):
        stack.caches(stack.release(release_id, version))
    stack.switch("r1")
    stack.nginx.reload()
    assert served_version(stack.url) == V1
    fpm_workers = set(stack.fpm.workers())
    nginx_workers = set(stack.nginx.workers())

    order = ["r2" if n % 2 == 0 else "r1" for n in range(SWITCHES)]
    with LoadGenerator(stack.url + "/up", rate=RATE, workers=16, timeout=2.0) as load:
        time.sleep(1)
        load.mark("switching")
        for release_id in order:
            stack.switch(release_id)
            time.sleep(0.4)
        load.mark("switched")
        time.sleep(0.5)
    summary = load.summary
    window = summary.window("switching", "switched")
    print(summary.report())
    assert summary.failed == 0 and summary.sent == summary.ok, summary.report()
    assert window.rate >= 100, window.report()
    # every answer is one release's, and both were served in turn, ending on the last one
    assert set(r["version"] for r in summary.records) == {V1, V2}, summary.report()
    settled = summary.settled()
    assert settled[0] == V1 and settled[-1] == {"r1": V1, "r2": V2}[order[-1]], summary.report()
    assert len(settled) >= SWITCHES // 2 and all(a != b for a, b in zip(settled, settled[1:])), summary.report()
    # nothing was reloaded
    assert set(stack.fpm.workers()) == fpm_workers and set(stack.nginx.workers()) == nginx_workers


WORKER = """\
[program:%(name)s]
command = php artisan queue:work --sleep=1 --tries=3
directory = %(current)s
user = www-data
numprocs = 2
process_name = %%(program_name)s_%%(process_num)02d
autostart = true
autorestart = true
startsecs = 1
stopwaitsecs = 15
stdout_logfile = %(logs)s/%(name)s.log
redirect_stderr = true
"""


def pings(stack):
    path = os.path.join(stack.shared, "storage", "app", "pings.log")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [line.split() for line in handle if line.strip()]


def ping(stack, release, message, timeout=20):
    """Queue app:ping MESSAGE from release; wait until a worker logged it: [message, version, pid]."""
    artisan_as(release, "app:ping", message)
    found = []
    wait_until(lambda: found.extend(p for p in pings(stack) if p[0] == message) or found, timeout,
               "a worker to run ping %s" % message, log=os.path.join(stack.supervisor.child_logs, "worker.log"))
    return found[0]


def new_workers(sup, program, before, count=2, timeout=30):
    """Wait until `count` processes of program run, none of them one of before; their pids."""
    seen = []

    def replaced():
        seen[:] = sup.pids(program)  # one status read: both conditions on the same answer
        return len(seen) == count and not set(before) & set(seen)
    wait_until(replaced, timeout, "new %s processes (were %s)" % (program, before), log=sup.logfile)
    return list(seen)


def test_workers_restart_into_the_new_release(stack):
    v1 = stack.release("r1", V1)
    v2 = stack.release("r2", V2)
    artisan_as(v1, "migrate", "--force")
    stack.switch("r1")
    with open(os.path.join(stack.supervisor.conf_dir, "worker.conf"), "w") as handle:
        handle.write(WORKER % dict(name="worker", current=stack.current, logs=stack.supervisor.child_logs))
    sup = stack.supervisor
    assert "worker: added process group" in sup.ctl("update").stdout
    before = new_workers(sup, "worker", [])
    message, version, pid = ping(stack, v1, "before")
    assert (version, int(pid) in before) == (V1, True)

    stack.switch("r2")
    artisan_as(v2, "queue:restart")
    after = new_workers(sup, "worker", before)
    for pid in after:  # each new worker runs in the new release
        assert os.path.realpath("/proc/%d/cwd" % pid) == v2
    message, version, pid = ping(stack, v2, "after")
    assert (version, int(pid) in after) == (V2, True), (pid, after, pings(stack))
