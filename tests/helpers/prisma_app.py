"""Releases of the Prisma fixture app (tests/fixtures/prisma_app) and ways to run its Prisma CLI.

make_prisma_release(dest, version) writes release N (the major of `version`, 1 to 3) of the app: the
first N migrations, the schema of that release (schemas/N.prisma) and the version in package.json;
variant="fixed" replaces the failing third migration by its fixed SQL (fixes/), as a developer would
after `prisma migrate resolve --rolled-back`. Its node_modules is a copy of one installed tree kept per
package-lock.json sha under .build/prisma_app (the first use installs it from the npm registry; later
ones copy it in well under a second), so tests that do not test `npm ci` do not pay for it.
generate(path, url) runs `prisma generate` there (the client is never committed); run_prisma() runs
any Prisma CLI command the way a deploy does: the app's own node_modules/.bin/prisma with DATABASE_URL
in the environment."""

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import urllib.parse

from helpers.modules import REPO
from helpers.node_apps import set_version

APP = os.path.join(REPO, "tests", "fixtures", "prisma_app")
CACHE = os.path.join(REPO, ".build", "prisma_app")
MIGRATIONS_DIR = os.path.join("prisma", "migrations")
MIGRATIONS = sorted(name for name in os.listdir(os.path.join(APP, MIGRATIONS_DIR))
                    if os.path.isdir(os.path.join(APP, MIGRATIONS_DIR, name)))
FAILING = MIGRATIONS[2]
# what the fixture directory holds that a release does not take as is
_IGNORE = shutil.ignore_patterns("node_modules", "schemas", "fixes", ".env")
# the CLI quiet and offline: no update check, no colours in what the tests parse
QUIET_ENV = {"CHECKPOINT_DISABLE": "1", "PRISMA_HIDE_UPDATE_MESSAGE": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"}


def database_url(server, database):
    """The PostgreSQL URL of `database` on a throwaway server (helpers/servers.py), password quoted."""
    return "postgresql://%s:%s@127.0.0.1:%d/%s" % (
        urllib.parse.quote(server.user, safe=""), urllib.parse.quote(server.password, safe=""),
        server.port, urllib.parse.quote(database, safe=""))


def _lock_sha():
    with open(os.path.join(APP, "package-lock.json"), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


@contextlib.contextmanager
def _cache_lock():
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def installed_node_modules():
    """The node_modules of the fixture's lock file, installed once (npm ci, scripts off) and kept."""
    target = os.path.join(CACHE, _lock_sha())
    node_modules = os.path.join(target, "node_modules")
    if os.path.isdir(node_modules):
        return node_modules
    with _cache_lock():
        if os.path.isdir(node_modules):
            return node_modules
        work = target + ".tmp"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(os.path.join(APP, name), work)
        # install scripts off: Prisma's would try to download engines this setup never uses
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts"],
                              cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              check=False)
        if done.returncode:
            raise RuntimeError("npm ci of the Prisma fixture failed in %s:\n%s" % (work, done.stdout[-3000:]))
        shutil.rmtree(target, ignore_errors=True)
        os.rename(work, target)
    return node_modules


def install(path):
    """Copy the shared installed node_modules into the release at path (a real copy: `prisma generate`
    writes the client into node_modules/.prisma, which differs per release)."""
    dest = os.path.join(path, "node_modules")
    if os.path.lexists(dest):
        raise RuntimeError("%s already exists" % dest)
    subprocess.run(["cp", "-a", installed_node_modules(), dest], check=True)
    return path


def make_prisma_release(dest, version, variant="good", node_modules=True):
    """Release `version` of the fixture at dest: the first N migrations for major N (1-3), schema N,
    variant "fixed" for a third migration that works on a database with rows; node_modules copied in
    unless node_modules=False (for tests of `npm ci` itself)."""
    dest = str(dest)
    major = int(version.split(".")[0])
    if not 1 <= major <= len(MIGRATIONS):
        raise ValueError("the Prisma fixture has releases 1.x to %d.x, not %s" % (len(MIGRATIONS), version))
    if variant not in ("good", "fixed"):
        raise ValueError("variant is good or fixed, not %r" % variant)
    shutil.copytree(APP, dest, ignore=_IGNORE)
    for name in MIGRATIONS[major:]:
        shutil.rmtree(os.path.join(dest, MIGRATIONS_DIR, name))
    shutil.copy2(os.path.join(APP, "schemas", "%d.prisma" % major), os.path.join(dest, "prisma", "schema.prisma"))
    if variant == "fixed" and major >= 3:
        shutil.copy2(os.path.join(APP, "fixes", FAILING + ".sql"),
                     os.path.join(dest, MIGRATIONS_DIR, FAILING, "migration.sql"))
    set_version(dest, version)
    if node_modules:
        install(dest)
    return dest


def prisma_env(url=None, **extra):
    env = dict(os.environ, **QUIET_ENV)
    env.pop("DATABASE_URL", None)
    if url is not None:
        env["DATABASE_URL"] = url
    env.update(extra)
    return env


def run_prisma(path, *args, url=None, env=None, check=False, timeout=120):
    """node_modules/.bin/prisma <args> in the release; CompletedProcess with stdout and stderr merged."""
    done = subprocess.run([os.path.join(path, "node_modules", ".bin", "prisma")] + list(args), cwd=path,
                          env=env if env is not None else prisma_env(url), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout, check=False)
    if check and done.returncode:
        raise RuntimeError("prisma %s failed (rc %s) in %s:\n%s" % (" ".join(args), done.returncode, path, done.stdout))
    return done


def generate(path, url):
    """`prisma generate` in the release (the CLI reads env("DATABASE_URL") even here)."""
    run_prisma(path, "generate", url=url, check=True)
    return path


def prisma_release(dest, version, url, variant="good"):
    """A release ready to serve: made, node_modules in, client generated."""
    return generate(make_prisma_release(dest, version, variant), url)


def server_env(url, port):
    """The environment the app runs with (PORT, DATABASE_URL; no pm2 needed for a direct start)."""
    return dict(prisma_env(url), PORT=str(port), EXIT_DELAY_MS="0")


def migration_rows(server, database):
    """_prisma_migrations as {name: (finished, rolled_back, applied_steps_count)}."""
    rows = server.execute('SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, '
                          'applied_steps_count FROM "_prisma_migrations" ORDER BY started_at', dbname=database)
    return {name: (finished, rolled_back, steps) for name, finished, rolled_back, steps in rows}


def wait_for_answer(url, timeout=20.0):
    """(status, JSON body) of the first answer url gives (the server may still be starting)."""
    import time

    from helpers.node_apps import get_json
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get_json(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# the `_prisma_migrations` fix that `prisma migrate resolve --rolled-back NAME` makes
ROLLED_BACK_SQL = ("UPDATE _prisma_migrations SET rolled_back_at = CURRENT_TIMESTAMP "
                   "WHERE migration_name = '%s' AND finished_at IS NULL AND rolled_back_at IS NULL;")


def run_prisma_sql(path, sql, url):
    """`prisma db execute --stdin` in the release (works through the adapter)."""
    return subprocess.run([os.path.join(path, "node_modules", ".bin", "prisma"), "db", "execute", "--stdin",
                           "--schema", os.path.join("prisma", "schema.prisma")], cwd=path, env=prisma_env(url),
                          input=sql, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=120, check=False)
