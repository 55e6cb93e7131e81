"""Releases of the Laravel 8 multi-tenant fixture app (tests/fixtures/laravel_app) and ways to run them.

make_laravel_release(dest, version, env) copies the app, sets its version, runs `composer
dump-autoload -o` (offline: the framework is Debian's php-laravel-framework) and writes `.env`.
artisan(path, *args, env=...) runs `php artisan` in a release; php_server(path) serves its public/
with `php -S`. db_env(server, database) gives the DB_* settings of a throwaway server
(helpers/servers.py); add_tenants() fills the central `tenants` table; tables() lists a database's."""

import contextlib
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

from helpers.modules import REPO

APP = os.path.join(REPO, "tests", "fixtures", "laravel_app")
CONNECTIONS = {"postgresql": "pgsql", "mysql": "mysql"}
VERSION_DEFAULT = re.compile(r"env\('APP_VERSION', '[^']*'\)")
# what a release never takes from the fixture directory (left there by a manual run)
_IGNORE = shutil.ignore_patterns("vendor", ".env", "*.log")


def _env_value(value):
    """A .env value in double quotes: phpdotenv reads \\ and \" escapes there and expands only ${NAME}."""
    text = str(value)
    if "\n" in text or "${" in text:
        raise ValueError("a .env value cannot hold a newline or ${: %r" % text)
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def write_env(path, values):
    lines = ["%s=%s\n" % (key, _env_value(value)) for key, value in sorted(values.items())]
    env_path = os.path.join(path, ".env")
    with open(env_path, "w") as handle:
        handle.writelines(lines)
    os.chmod(env_path, 0o600)
    return env_path


def set_version(path, version):
    config = os.path.join(path, "config", "app.php")
    with open(config) as handle:
        text = handle.read()
    text, count = VERSION_DEFAULT.subn("env('APP_VERSION', '%s')" % version, text)
    if count != 1:
        raise RuntimeError("%s: the APP_VERSION default was not found exactly once" % config)
    with open(config, "w") as handle:
        handle.write(text)


def make_laravel_release(dest, version, env=None):
    """Copy the fixture to dest as `version` with its autoloader built; `.env` from env (a dict)."""
    dest = str(dest)
    shutil.copytree(APP, dest, ignore=_IGNORE)
    for cached in os.listdir(os.path.join(dest, "bootstrap", "cache")):
        if cached.endswith(".php"):
            os.unlink(os.path.join(dest, "bootstrap", "cache", cached))
    set_version(dest, version)
    done = subprocess.run(["composer", "dump-autoload", "-o", "--no-interaction", "--no-ansi"], cwd=dest,
                          env=dict(os.environ, COMPOSER_ALLOW_SUPERUSER="1", COMPOSER_DISABLE_NETWORK="1"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if done.returncode:
        raise RuntimeError("composer dump-autoload failed in %s:\n%s" % (dest, done.stdout))
    if env is not None:
        write_env(dest, env)
    return dest


def db_env(server, database, **extra):
    """The .env settings that point the app's central connection at `database` on a throwaway server."""
    values = {
        "APP_ENV": "production",
        "APP_DEBUG": "false",
        "LOG_CHANNEL": "stderr",
        "DB_CONNECTION": CONNECTIONS[server.engine],
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(server.port),
        "DB_DATABASE": database,
        "DB_USERNAME": server.user,
        "DB_PASSWORD": server.password,
    }
    values.update(extra)
    return values


def artisan(path, *args, env=None, timeout=120):
    """`php artisan ARGS` in a release: CompletedProcess with .returncode, .stdout (stderr merged).

    env adds to (or, with None values, removes from) the environment; real environment variables
    win over `.env`, as in Laravel."""
    run_env = dict(os.environ, LANG="C", LC_ALL="C")
    for key, value in (env or {}).items():
        if value is None:
            run_env.pop(key, None)
        else:
            run_env[key] = str(value)
    return subprocess.run(["php", "artisan", "--no-ansi", "--no-interaction"] + [str(arg) for arg in args],
                          cwd=str(path), env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout, check=False)


def migrate_status(output):
    """`migrate:status` table -> [(migration, ran, batch or None)] in the order shown."""
    rows = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] not in ("Yes", "No"):
            continue
        rows.append((cells[1], cells[0] == "Yes", int(cells[2]) if cells[2] else None))
    return rows


def migration_names(path, tenant=False):
    folder = os.path.join(str(path), "database", "migrations", *(["tenant"] if tenant else []))
    return sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".php"))


def add_tenants(server, central, tenants):
    """Insert {id: database} into the central tenants table."""
    placeholder = "%s"
    for tenant_id, database in tenants.items():
        server.execute("INSERT INTO tenants (id, %s) VALUES (%s, %s)" % (
            '"database"' if server.engine == "postgresql" else "`database`", placeholder, placeholder),
            central, (tenant_id, database))


def tables(server, database):
    """The names of the tables in a database (PostgreSQL: schema public)."""
    if server.engine == "postgresql":
        rows = server.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database)
    else:
        rows = server.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                              database, (database,))
    return sorted(row[0] for row in rows)


@contextlib.contextmanager
def php_server(path, port, env=None, timeout=10):
    """Serve the release's public/ with `php -S 127.0.0.1:port` (front controller public/index.php)."""
    run_env = dict(os.environ)
    run_env.update({key: str(value) for key, value in (env or {}).items()})
    log = open(os.path.join(str(path), "storage", "logs", "php-server.log"), "ab")
    process = subprocess.Popen(["php", "-S", "127.0.0.1:%d" % port, "-t", "public", "public/index.php"],
                               cwd=str(path), env=run_env, stdout=log, stderr=log, start_new_session=True)
    log.close()
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # it answers (404 for /)
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError("php -S did not start on port %d (exit %s)" % (port, process.poll()))
                time.sleep(0.05)
        yield "http://127.0.0.1:%d" % port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LaravelLab(object):
    """A release of the fixture at `path` whose central database is a new one on a throwaway server.

    With password_in_env the release's .env has no DB_PASSWORD: it is in .env_vars (the environment
    the commands get), as a deploy tool passes it. Every database made through create_database (the
    central one too) is dropped by close()."""

    def __init__(self, server, path, name, version, password_in_env=False):
        self.server = server
        self.created = []
        self.central = self.create_database(name + "_central")
        env = db_env(server, self.central)
        self.password = env.pop("DB_PASSWORD") if password_in_env else env["DB_PASSWORD"]
        self.env = {"DB_PASSWORD": self.password} if password_in_env else {}
        self.path = make_laravel_release(path, version, env)

    def create_database(self, name):
        self.server.create_database(name)
        self.created.append(name)
        return name

    def close(self):
        for database in self.created:
            self.server.drop_database(database)


def lab_server(request):
    """The throwaway server a fixture parametrized with "postgresql" / "mariadb" asks for."""
    return request.getfixturevalue("postgres_server" if request.param == "postgresql" else "mariadb_server")
