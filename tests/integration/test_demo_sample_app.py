"""The demo's sample app (demo/sample_app, 2.0.0 overlaid from demo/sample_app_v2) for real: npm ci once
per module, pm2 in a private PM2_HOME per test, real HTTP, the SQLite file read back with Python's sqlite3."""

import hashlib
import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest

from helpers.demo_app import BASE, OVERLAYS, assemble_release, install_release, migrate
from helpers.node_apps import get_json
from helpers.pm2_checks import write_ecosystem
from helpers.ports import free_port

V2_ERROR = {"status": "error", "version": "2.0.0", "error": "PAYMENTS_URL is not set"}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """{"1": path, "2": path}: both versions assembled and installed once (npm ci) for the module."""
    base = tmp_path_factory.mktemp("demo_releases")
    return {v: install_release(assemble_release(str(base / ("v" + v)), v)) for v in ("1", "2")}


@pytest.fixture()
def database(tmp_path):
    # where the deploy keeps it: <app_root>/shared/data/app.sqlite (migrate creates data/)
    return str(tmp_path / "shared" / "data" / "app.sqlite")


def start(pm2_home, tmp_path, name, release_dir, **env):
    """Start server.js of a release under pm2 (fork mode, wait_ready) on a free port; the port once it answers."""
    for inherited in ("DATABASE_PATH", "PAYMENTS_URL"):  # only what the test gives reaches the app
        pm2_home.env.pop(inherited, None)
    port = free_port()
    app = {"name": name, "script": "server.js", "cwd": release_dir, "exec_mode": "fork", "wait_ready": True,
           "listen_timeout": 10000, "kill_timeout": 3000,
           "env": dict(env, PORT=str(port), HOST="127.0.0.1")}
    pm2_home.run("start", write_ecosystem(str(tmp_path / ("%s.json" % name)), [app]))
    health(port)
    return port


def health(port, timeout=20.0):
    """(status, body) of /health, once the app answers at all."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get_json("http://127.0.0.1:%d/health" % port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def post_note(port, data):
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    request = urllib.request.Request("http://127.0.0.1:%d/notes" % port, data=body, method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read().decode())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read().decode())


def notes(port):
    status, body = get_json("http://127.0.0.1:%d/notes" % port)
    assert status == 200, body
    return [note["body"] for note in body["notes"]]


def still_up(pm2_home, name):
    """The app is online and pm2 never had to restart it."""
    [(pid, status, restarts)] = pm2_home.apps()[name]
    assert (status, restarts) == ("online", 0)
    return pid


def schema(database):
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        applied = [row[0] for row in conn.execute("SELECT id FROM migrations ORDER BY id")]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(notes)")]
    conn.close()
    return applied, columns


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_v1_stores_notes_and_is_healthy(pm2_home, release, database, tmp_path):
    migrated = migrate(release["1"], database)
    assert migrated.returncode == 0 and migrated.stdout.splitlines() == ["applied 001_create_notes"], migrated.stdout
    port = start(pm2_home, tmp_path, "notes", release["1"], DATABASE_PATH=database)

    assert health(port) == (200, {"status": "ok", "version": "1.0.0", "notes": 0})
    assert get_json("http://127.0.0.1:%d/" % port)[1]["version"] == "1.0.0"
    status, note = post_note(port, {"body": "buy tea"})
    assert status == 201 and note["id"] == 1 and note["body"] == "buy tea" and note["created_at"], note
    assert notes(port) == ["buy tea"]
    assert health(port) == (200, {"status": "ok", "version": "1.0.0", "notes": 1})

    assert post_note(port, b"not json")[0] == 400
    assert post_note(port, {"body": "  "})[0] == 400
    assert health(port)[1]["notes"] == 1
    still_up(pm2_home, "notes")


def test_v2_on_the_same_database_fails_health_and_v1_still_works(pm2_home, release, database, tmp_path):
    assert migrate(release["1"], database).returncode == 0
    v1 = start(pm2_home, tmp_path, "notes", release["1"], DATABASE_PATH=database)
    assert post_note(v1, {"body": "written by 1.0.0"})[0] == 201

    migrated = migrate(release["2"], database)
    assert migrated.returncode == 0 and migrated.stdout.splitlines() == ["applied 002_add_notes_plan"], migrated.stdout
    assert schema(database) == (["001_create_notes", "002_add_notes_plan"], ["id", "body", "created_at", "plan"])

    v2 = start(pm2_home, tmp_path, "notes-v2", release["2"], DATABASE_PATH=database)
    assert health(v2) == (503, V2_ERROR)
    assert notes(v2) == ["written by 1.0.0"]  # it serves; only its health check fails
    time.sleep(1)
    assert health(v2) == (503, V2_ERROR)
    still_up(pm2_home, "notes-v2")

    # what a rollback leaves: 1.0.0's code on the migrated database
    assert health(v1) == (200, {"status": "ok", "version": "1.0.0", "notes": 1})
    assert post_note(v1, {"body": "after the rollback"})[0] == 201
    assert notes(v1) == ["written by 1.0.0", "after the rollback"]
    still_up(pm2_home, "notes")

    # the missing setting is the only thing wrong with 2.0.0
    fixed = start(pm2_home, tmp_path, "notes-v2-fixed", release["2"], DATABASE_PATH=database,
                  PAYMENTS_URL="http://127.0.0.1:9/payments")
    assert health(fixed) == (200, {"status": "ok", "version": "2.0.0", "notes": 2})


def test_migrate_applies_nothing_the_second_time(release, database):
    first = migrate(release["2"], database)
    assert first.returncode == 0
    assert first.stdout.splitlines() == ["applied 001_create_notes", "applied 002_add_notes_plan"]
    before = sha256(database)

    second = migrate(release["2"], database)
    assert second.returncode == 0 and "nothing to apply" in second.stdout and "applied 0" not in second.stdout
    assert sha256(database) == before, "a migrate with nothing to apply rewrote the database"

    # 1.0.0's migrate after a rollback: nothing to apply, 2.0.0's migration kept
    older = migrate(release["1"], database)
    assert older.returncode == 0 and "nothing to apply" in older.stdout
    assert "applied by a newer release, kept: 002_add_notes_plan" in older.stdout
    assert schema(database)[0] == ["001_create_notes", "002_add_notes_plan"]


def test_migrate_without_database_path_fails_naming_it(release):
    before = sorted(os.listdir(release["1"]))
    result = migrate(release["1"], None)
    assert result.returncode != 0
    assert "DATABASE_PATH is not set" in result.stdout and "applied" not in result.stdout
    assert sorted(os.listdir(release["1"])) == before


def test_two_processes_writing_lose_no_note(pm2_home, release, database, tmp_path):
    """The live release and a candidate beside it write the same file: the lock keeps every note."""
    assert migrate(release["1"], database).returncode == 0
    ports = [start(pm2_home, tmp_path, name, release["1"], DATABASE_PATH=database) for name in ("a", "b")]
    statuses = []

    def writer(port, first):
        for n in range(first, first + 15):
            statuses.append(post_note(port, {"body": "note %d" % n})[0])

    threads = [threading.Thread(target=writer, args=(port, 100 * i)) for i, port in enumerate(ports * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 60
    assert health(ports[0])[1]["notes"] == 60
    assert sorted(notes(ports[1])) == sorted("note %d" % (100 * i + n) for i in range(4) for n in range(15))


def test_v2_overlay_holds_only_what_changes():
    """demo/sample_app_v2 changes the version, not the dependencies; every file in it differs from 1.0.0's."""
    [overlay] = OVERLAYS["2"]

    def load(root, name):
        with open(os.path.join(root, name)) as handle:
            return json.load(handle)

    for name in ("package.json", "package-lock.json"):
        v1, v2 = load(BASE, name), load(overlay, name)
        assert v2["version"] == "2.0.0" and v1["version"] == "1.0.0"
        v1["version"] = v2["version"]
        if name == "package-lock.json":
            assert v2["packages"][""]["version"] == "2.0.0"
            v1["packages"][""]["version"] = "2.0.0"
        assert v1 == v2, "%s of sample_app_v2 differs from sample_app's in more than the version" % name

    for top, _dirs, files in os.walk(overlay):
        for name in files:
            rel = os.path.relpath(os.path.join(top, name), overlay)
            base = os.path.join(BASE, rel)
            if os.path.exists(base):
                with open(base, "rb") as one, open(os.path.join(overlay, rel), "rb") as two:
                    assert one.read() != two.read(), "%s is the same in sample_app_v2: leave it out" % rel
