"""The Prisma fixture app for real: its own Prisma 6.19 CLI (WebAssembly schema engine through the pg
driver adapter, nothing downloaded) against a throwaway PostgreSQL, and its HTTP service on the
generated Prisma Client. v1 -> v2 apply one migration each, v3's migration fails on a table with rows
and leaves a failed _prisma_migrations row (the next deploy says P3009), the rows stay; the fixed v3
applies after the database is cleaned by hand and the migration resolved as rolled back."""

import signal
import subprocess

import pytest

from helpers import prisma_app
from helpers.node_apps import get_json, wait_for_version
from helpers.ports import free_port

M1, M2, M3 = prisma_app.MIGRATIONS


@pytest.fixture()
def serve():
    """serve(path, url) starts the release's server on a free port; every one is stopped (SIGINT) after."""
    started = []

    def start(path, url):
        port = free_port()
        proc = subprocess.Popen(["node", "src/server.js"], cwd=path, env=prisma_app.server_env(url, port),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        started.append(proc)
        return proc, "http://127.0.0.1:%d" % port

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_releases_migrate_serve_and_fail_realistically(postgres_server, prisma_db, serve, tmp_path):
    database, url = prisma_db
    pg = postgres_server

    # v1: one pending migration, deployed; the service counts notes through Prisma Client
    v1 = prisma_app.prisma_release(tmp_path / "v1", "1.0.0", url)
    status = prisma_app.run_prisma(v1, "migrate", "status", url=url)
    assert status.returncode == 1 and "Following migration have not yet been applied:\n%s" % M1 in status.stdout
    deployed = prisma_app.run_prisma(v1, "migrate", "deploy", url=url)
    assert deployed.returncode == 0, deployed.stdout
    assert M1 in deployed.stdout and "All migrations have been successfully applied." in deployed.stdout
    assert prisma_app.migration_rows(pg, database) == {M1: (True, False, 1)}

    proc, base = serve(v1, url)
    code, body = wait_for_version(base + "/health", "1.0.0")
    assert (code, body["status"], body["notes"], body["pid"]) == (200, "ok", 0, proc.pid)
    pg.execute('INSERT INTO "Note" ("title") VALUES (%s), (%s)', database, ("first", "second"))
    assert get_json(base + "/health")[1]["notes"] == 2
    code, body = get_json(base + "/")
    assert code == 200 and [note["title"] for note in body["notes"]] == ["first", "second"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0  # graceful stop

    # v2: exactly one more migration (a column with a default and an index); the rows get the default
    v2 = prisma_app.prisma_release(tmp_path / "v2", "2.0.0", url)
    deployed = prisma_app.run_prisma(v2, "migrate", "deploy", url=url)
    assert deployed.returncode == 0, deployed.stdout
    assert M2 in deployed.stdout and M1 not in deployed.stdout.split("have been applied:")[1]
    assert prisma_app.migration_rows(pg, database) == {M1: (True, False, 1), M2: (True, False, 1)}
    assert pg.execute('SELECT "title", "pinned" FROM "Note" ORDER BY "id"', database) == [
        ("first", False), ("second", False)]
    again = prisma_app.run_prisma(v2, "migrate", "status", url=url)
    assert again.returncode == 0 and "Database schema is up to date!" in again.stdout
    proc, base = serve(v2, url)
    code, body = wait_for_version(base + "/health", "2.0.0")
    assert (code, body["notes"]) == (200, 2)
    assert [note["pinned"] for note in get_json(base + "/")[1]["notes"]] == [False, False]

    # v3: its first statement (CREATE TABLE "Author") succeeds, the NOT NULL column fails on the rows
    v3 = prisma_app.prisma_release(tmp_path / "v3", "3.0.0", url)
    failed = prisma_app.run_prisma(v3, "migrate", "deploy", url=url)
    assert failed.returncode == 1
    # through the driver adapter Prisma 6.19 reports no P3018 code: the connector error and the name
    assert "Null constraint failed" in failed.stdout and 'migration_name="%s"' % M3 in failed.stdout
    rows = prisma_app.migration_rows(pg, database)
    assert rows[M3] == (False, False, 0) and rows[M2] == (True, False, 1)
    assert pg.execute("SELECT to_regclass('public.\"Author\"') IS NOT NULL", database) == [(True,)]
    blocked = prisma_app.run_prisma(v3, "migrate", "deploy", url=url)
    assert blocked.returncode == 1 and "Error: P3009" in blocked.stdout
    assert "The `%s` migration started at" % M3 in blocked.stdout and "failed" in blocked.stdout
    status = prisma_app.run_prisma(v3, "migrate", "status", url=url)
    assert status.returncode == 1 and "Following migration have failed:\n%s" % M3 in status.stdout
    # the rows are intact and v2 still serves them
    assert pg.execute('SELECT "title" FROM "Note" ORDER BY "id"', database) == [("first",), ("second",)]
    assert get_json(base + "/health")[1]["notes"] == 2

    # the way out: undo the partial migration by hand, resolve it as rolled back, deploy the fixed v3
    pg.execute('DROP TABLE "Author"', database)
    # Prisma 6.19's `migrate resolve --rolled-back` wants the native schema engine even with the
    # adapter (`--applied` does not): offline it fails, and the _prisma_migrations fix does the same
    resolved = prisma_app.run_prisma(v3, "migrate", "resolve", "--rolled-back", M3, url=url)
    assert resolved.returncode == 1 and "Could not find schema-engine binary" in resolved.stdout
    assert prisma_app.migration_rows(pg, database)[M3] == (False, False, 0)
    fixed = prisma_app.run_prisma_sql(v3, prisma_app.ROLLED_BACK_SQL % M3, url=url)
    assert fixed.returncode == 0 and "Script executed successfully." in fixed.stdout
    assert prisma_app.migration_rows(pg, database)[M3] == (False, True, 0)
    v3_fixed = prisma_app.prisma_release(tmp_path / "v3fixed", "3.0.1", url, variant="fixed")
    deployed = prisma_app.run_prisma(v3_fixed, "migrate", "deploy", url=url)
    assert deployed.returncode == 0, deployed.stdout
    assert pg.execute('SELECT "title", "authorId" FROM "Note" ORDER BY "id"', database) == [
        ("first", 1), ("second", 1)]
    ok = prisma_app.run_prisma(v3_fixed, "migrate", "status", url=url)
    assert ok.returncode == 0 and "Database schema is up to date!" in ok.stdout
    proc, base = serve(v3_fixed, url)
    assert wait_for_version(base + "/health", "3.0.1")[1]["notes"] == 2


def test_health_is_503_with_a_reason_when_the_database_fails(postgres_server, serve, tmp_path, unique_name):
    # a database that does not exist: the client is generated, every query fails
    url = prisma_app.database_url(postgres_server, unique_name + "_missing")
    v1 = prisma_app.prisma_release(tmp_path / "v1", "1.0.0", url)
    proc, base = serve(v1, url)
    code, body = prisma_app.wait_for_answer(base + "/health")
    assert code == 503 and body["status"] == "error" and body["version"] == "1.0.0" and body["reason"]
    assert postgres_server.password not in body["reason"]
    assert proc.poll() is None  # it keeps serving (503) rather than crashing


def test_releases_hold_the_first_n_migrations(tmp_path):
    for version, count in (("1.0.0", 1), ("2.3.4", 2), ("3.0.0", 3)):
        path = prisma_app.make_prisma_release(tmp_path / version, version, node_modules=False)
        migrations = sorted(p.name for p in (tmp_path / version / "prisma" / "migrations").iterdir() if p.is_dir())
        assert migrations == prisma_app.MIGRATIONS[:count]
        assert ('"version": "%s"' % version) in (tmp_path / version / "package.json").read_text()
        assert not (tmp_path / version / "node_modules").exists() and path == str(tmp_path / version)
    with pytest.raises(ValueError):
        prisma_app.make_prisma_release(tmp_path / "4", "4.0.0", node_modules=False)
