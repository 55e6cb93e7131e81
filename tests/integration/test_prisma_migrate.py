"""prisma_migrate for real: the fixture app's own Prisma 6.19 CLI (tests/fixtures/prisma_app) on a real
PostgreSQL whose password has characters a shell would mangle. Deploy four ways; the failing v3 stops
with what happened and the rows intact; the next deploy is refused before it runs; resolve (four ways)
then the fixed migration applies; destructive exec refused with the database untouched; generate;
bad input. DATABASE_URL (and its password, quoted or not) is never in a result nor in a recorded argv."""

import os
import shutil
import urllib.parse

import pytest

from helpers import modules, prisma_app

M1, M2, M3 = prisma_app.MIGRATIONS


@pytest.fixture()
def db(postgres_server, unique_name):
    postgres_server.create_database(unique_name)
    url = prisma_app.database_url(postgres_server, unique_name)
    yield unique_name, url
    postgres_server.drop_database(unique_name)


def secrets_of(server, url):
    return (server.password, urllib.parse.quote(server.password, safe=""), url)


def no_secret(result, secrets):
    modules.no_secret(result, *secrets)
    for cmd in result.get("executed_commands", []):
        assert "DATABASE_URL" not in cmd and "postgresql://" not in cmd


def call(run_module, path, url, check_mode=False, **args):
    return run_module("prisma_migrate", dict(chdir=str(path), database_url=url, **args), check_mode=check_mode)


def notes(server, database):
    return server.execute('SELECT "title" FROM "Note" ORDER BY "id"', database)


def test_deploy_four_ways_then_the_next_release(postgres_server, db, run_module, tmp_path):
    database, url = db
    secrets = secrets_of(postgres_server, url)
    v1 = prisma_app.make_prisma_release(tmp_path / "v1", "1.0.0")
    prisma = os.path.join(v1, "node_modules", ".bin", "prisma")

    check = call(run_module, v1, url, check_mode=True)
    assert not check.get("failed"), check
    assert (check["changed"], check["state"], check["pending"], check["applied"]) == (True, "pending", [M1], [])
    assert M1 in check["message"] and check["executed_commands"] == [prisma + " migrate status"]
    assert postgres_server.execute("SELECT to_regclass('public._prisma_migrations')", database) == [(None,)]

    real = call(run_module, v1, url)
    assert not real.get("failed"), real
    assert (real["changed"], real["state"], real["pending"], real["applied"]) == (True, "up_to_date", [M1], [M1])
    assert real["executed_commands"] == [prisma + " migrate status", prisma + " migrate deploy",
                                         prisma + " migrate status"]
    assert real["failed_migration"] is None and real["prisma_rc"] == 0
    assert prisma_app.migration_rows(postgres_server, database) == {M1: (True, False, 1)}

    for check_mode in (False, True):
        again = call(run_module, v1, url, check_mode=check_mode)
        assert not again.get("failed"), again
        assert (again["changed"], again["state"], again["pending"], again["applied"]) == (
            False, "up_to_date", [], [])
        # the real run asks `migrate deploy` too (Prisma's status does not list a rolled-back migration)
        assert again["executed_commands"] == [prisma + " migrate status"] + (
            [] if check_mode else [prisma + " migrate deploy"])
        no_secret(again, secrets)
    for result in (check, real):
        no_secret(result, secrets)

    v2 = prisma_app.make_prisma_release(tmp_path / "v2", "2.0.0")
    result = call(run_module, v2, url)
    assert (result["changed"], result["state"], result["pending"], result["applied"]) == (
        True, "up_to_date", [M2], [M2])
    assert prisma_app.migration_rows(postgres_server, database) == {M1: (True, False, 1), M2: (True, False, 1)}
    no_secret(result, secrets)


def test_failed_migration_stops_then_resolve_and_the_fixed_release(postgres_server, db, run_module, tmp_path):
    database, url = db
    pg = postgres_server
    secrets = secrets_of(pg, url)
    v2 = prisma_app.make_prisma_release(tmp_path / "v2", "2.0.0")
    assert call(run_module, v2, url)["applied"] == [M1, M2]
    pg.execute('INSERT INTO "Note" ("title") VALUES (%s), (%s)', database, ("first", "second"))

    # v3: CREATE TABLE "Author" succeeds, the required column fails on the rows
    v3 = prisma_app.make_prisma_release(tmp_path / "v3", "3.0.0")
    plan = call(run_module, v3, url, check_mode=True)
    assert (plan["changed"], plan["pending"], plan["state"]) == (True, [M3], "pending")
    failed = call(run_module, v3, url)
    assert failed["failed"] is True and failed["changed"] is True
    assert (failed["state"], failed["failed_migration"], failed["pending"], failed["applied"]) == (
        "failed", M3, [M3], [])
    msg = failed["msg"]
    assert msg.startswith("prisma migrate deploy failed: migration %s failed" % M3), msg
    assert "Null constraint failed" in msg and "Applied before it in this run: none" in msg
    assert "now failed" in msg and "--rolled-back %s" % M3 in msg and "_prisma_migrations" in msg
    assert "sql_schema_connector" not in msg  # the engine's span trace is left to stdout_tail
    no_secret(failed, secrets)
    assert notes(pg, database) == [("first",), ("second",)]
    assert prisma_app.migration_rows(pg, database)[M3] == (False, False, 0)

    # the next deploy (and its check mode) is refused before `migrate deploy` runs
    for check_mode in (True, False):
        blocked = call(run_module, v3, url, check_mode=check_mode)
        assert blocked["failed"] is True and blocked["changed"] is False
        assert (blocked["state"], blocked["failed_migration"], blocked["error_code"]) == ("failed", M3, "P3009")
        assert "not run" in blocked["msg"] and M3 in blocked["msg"] and "resolve" in blocked["msg"]
        assert [cmd.split()[-2:] for cmd in blocked["executed_commands"]] == [["migrate", "status"]]
        no_secret(blocked, secrets)

    # resolve --rolled-back four ways, after undoing the partial migration by hand
    args = dict(command="resolve", resolve_migration=M3, resolve_as="rolled-back")
    plan = call(run_module, v3, url, check_mode=True, **args)
    assert (plan["changed"], plan["state"], plan["method"]) == (True, "failed", None), plan
    assert prisma_app.migration_rows(pg, database)[M3] == (False, False, 0)
    pg.execute('DROP TABLE "Author"', database)
    done = call(run_module, v3, url, **args)
    assert not done.get("failed"), done
    assert done["changed"] is True and done["method"] == "_prisma_migrations"  # see the fixture's README
    assert any("native schema engine" in str(warning) for warning in done["warnings"]), done["warnings"]
    assert done["state"] == "pending" and done["pending"] == [M3] and "applies it again" in done["message"]
    assert prisma_app.migration_rows(pg, database)[M3] == (False, True, 0)
    no_secret(done, secrets)
    for check_mode in (False, True):
        again = call(run_module, v3, url, check_mode=check_mode, **args)
        assert not again.get("failed") and again["changed"] is False and again["method"] is None, again
        assert "not in a failed state" in again["message"]

    # the fixed v3 deploys; the rows get their author
    fixed = prisma_app.make_prisma_release(tmp_path / "v3fixed", "3.0.1", variant="fixed")
    result = call(run_module, fixed, url)
    assert not result.get("failed"), result
    assert (result["changed"], result["state"], result["applied"]) == (True, "up_to_date", [M3])
    assert pg.execute('SELECT "title", "authorId" FROM "Note" ORDER BY "id"', database) == [
        ("first", 1), ("second", 1)]


def test_destructive_exec_is_refused_and_the_database_untouched(postgres_server, db, run_module, tmp_path):
    database, url = db
    v1 = prisma_app.make_prisma_release(tmp_path / "v1", "1.0.0")
    assert call(run_module, v1, url)["applied"] == [M1]
    postgres_server.execute('INSERT INTO "Note" ("title") VALUES (%s)', database, ("kept",))
    for prisma_args, item in ((["migrate", "reset", "--force"], "migrate reset"),
                              (["db", "push", "--force-reset"], "--force-reset"),
                              (["db", "push", "--accept-data-loss"], "--accept-data-loss")):
        for check_mode in (True, False):
            refused = call(run_module, v1, url, check_mode=check_mode, command="exec", prisma_args=prisma_args)
            assert refused["failed"] is True and refused["changed"] is False
            assert repr(item) in refused["msg"] and "allow_destructive" in refused["msg"]
            assert refused["executed_commands"] == []
    assert notes(postgres_server, database) == [("kept",)]
    assert prisma_app.migration_rows(postgres_server, database) == {M1: (True, False, 1)}

    # a harmless subcommand runs (check mode plans it)
    plan = call(run_module, v1, url, check_mode=True, command="exec", prisma_args=["validate"])
    assert plan["changed"] is True and plan["executed_commands"] == []
    ran = call(run_module, v1, url, command="exec", prisma_args=["validate"])
    assert not ran.get("failed"), ran
    assert ran["changed"] is True and ran["prisma_rc"] == 0 and "is valid" in ran["stdout_tail"]
    no_secret(ran, secrets_of(postgres_server, url))


def test_generate_status_and_bad_input(postgres_server, db, run_module, tmp_path):
    database, url = db
    secrets = secrets_of(postgres_server, url)
    v1 = prisma_app.make_prisma_release(tmp_path / "v1", "1.0.0")
    client = os.path.join(v1, "node_modules", ".prisma", "client", "index.js")
    plan = call(run_module, v1, url, check_mode=True, command="generate")
    assert plan["changed"] is True and plan["executed_commands"] == [] and not os.path.exists(client)
    generated = call(run_module, v1, url, command="generate")
    assert not generated.get("failed"), generated
    assert generated["changed"] is True and os.path.isfile(client)
    no_secret(generated, secrets)

    status = call(run_module, v1, url, check_mode=True, command="status")
    assert (status["changed"], status["state"], status["pending"]) == (False, "pending", [M1])

    # the database is unreachable: one clear error, nothing deployed
    unreachable = url.replace(":%d/" % postgres_server.port, ":1/")
    down = call(run_module, v1, unreachable)
    assert down["failed"] is True and down["changed"] is False and down["state"] == "error"
    assert "nothing was deployed" in down["msg"] and "cannot be reached" in down["msg"]
    assert len(down["executed_commands"]) == 1
    no_secret(down, secrets)

    # no node_modules: the missing CLI is named with the fix
    bare = prisma_app.make_prisma_release(tmp_path / "bare", "1.0.0", node_modules=False)
    missing = call(run_module, bare, url)
    assert missing["failed"] is True and missing["executed_commands"] == []
    assert os.path.join(bare, "node_modules", ".bin", "prisma") in missing["msg"]
    assert "`dependencies`" in missing["msg"] and "npm prune --omit=dev" in missing["msg"]

    # a release without migrations on an unmanaged database: nothing to do, and nothing created
    empty = prisma_app.make_prisma_release(tmp_path / "empty", "1.0.0")
    shutil.rmtree(os.path.join(empty, "prisma", "migrations"))
    nothing = call(run_module, empty, url)
    assert not nothing.get("failed"), nothing
    assert (nothing["changed"], nothing["state"], nothing["applied"]) == (False, "not_installed", [])
    assert len(nothing["executed_commands"]) == 1 and "baseline" in str(nothing["warnings"])

    bad = call(run_module, v1, url, command="resolve", resolve_migration="x; DROP TABLE", resolve_as="applied")
    assert bad["failed"] is True and "is not a migration name" in bad["msg"] and bad["executed_commands"] == []
    assert postgres_server.execute("SELECT to_regclass('public._prisma_migrations')", database) == [(None,)]
