"""migration_status tool=prisma against the real Prisma 6.19 CLI of the fixture app
(tests/fixtures/prisma_app) on a real PostgreSQL: pending, up_to_date, failed, not_installed and the
database errors (server unreachable, wrong password, missing database). DATABASE_URL travels in
`env` only; its password (with characters a shell would mangle) is never in a result."""

import os
import shutil
import urllib.parse

import pytest

from helpers import prisma_app
from helpers.modules import no_secret
from helpers.ports import free_port

M1, M2, M3 = prisma_app.MIGRATIONS


def status(run_module, path, url, check_mode=False, **extra):
    return run_module("migration_status", dict(tool="prisma", chdir=str(path), env={"DATABASE_URL": url},
                                               **extra), check_mode=check_mode)


def four_ways(run_module, path, url, state, secrets, modes=(True, False, False, True)):
    """check -> real -> again -> check (or the modes given): the same state, never changed, no secret."""
    results = []
    for check_mode in modes:
        result = status(run_module, path, url, check_mode=check_mode)
        assert result.get("msg") is None, result  # (its `failed` is the list of failed migrations)
        assert result["changed"] is False and result["state"] == state, result
        no_secret(result, *secrets)
        results.append(result)
    return results[-1]


def test_pending_up_to_date_failed(postgres_server, prisma_db, run_module, tmp_path):
    database, url = prisma_db
    secrets = (postgres_server.password, url)
    v2 = prisma_app.make_prisma_release(tmp_path / "v2", "2.0.0")

    # an empty database: both migrations pending (Prisma says so, not "not managed")
    result = four_ways(run_module, v2, url, "pending", secrets)
    assert result["pending"] == [M1, M2] and result["applied"] == [] and result["status_rc"] == 1
    assert result["counts"] == dict(pending=2, applied=0, failed=0, total=2)
    assert result["executed_commands"] == [os.path.join(str(v2), "node_modules", ".bin", "prisma") + " migrate status"]
    # read-only: still nothing in the database
    assert postgres_server.execute("SELECT to_regclass('public._prisma_migrations')", database) == [(None,)]

    assert prisma_app.run_prisma(v2, "migrate", "deploy", url=url).returncode == 0
    result = four_ways(run_module, v2, url, "up_to_date", secrets)
    assert result["applied"] == [M1, M2] and result["pending"] == [] and result["status_rc"] == 0
    assert result["counts"] == dict(pending=0, applied=2, failed=0, total=2)

    # v3 is pending by name, then fails on the rows: state failed, named, with how to resolve it
    postgres_server.execute('INSERT INTO "Note" ("title") VALUES (%s)', database, ("kept",))
    v3 = prisma_app.make_prisma_release(tmp_path / "v3", "3.0.0")
    result = four_ways(run_module, v3, url, "pending", secrets, modes=(False,))
    assert result["pending"] == [M3] and result["applied"] == [M1, M2]
    assert prisma_app.run_prisma(v3, "migrate", "deploy", url=url).returncode == 1
    result = four_ways(run_module, v3, url, "failed", secrets, modes=(True, False))
    assert result["failed_migrations"] == [M3] and result["pending"] == [] and result["applied"] == [M1, M2]
    assert M3 in result["message"] and "prisma migrate resolve" in result["message"]
    assert result["counts"] == dict(pending=0, applied=2, failed=1, total=3)
    failed = status(run_module, v3, url, fail_on=["failed"])
    assert failed["failed"] is True and "Failed migration(s)" in failed["msg"] and M3 in failed["msg"]
    no_secret(failed, *secrets)
    assert postgres_server.execute('SELECT "title" FROM "Note"', database) == [("kept",)]


def test_not_installed_without_local_migrations(postgres_server, prisma_db, run_module, tmp_path):
    _database, url = prisma_db
    path = prisma_app.make_prisma_release(tmp_path / "v1", "1.0.0")
    shutil.rmtree(os.path.join(path, "prisma", "migrations"))
    result = four_ways(run_module, path, url, "not_installed", (postgres_server.password,), modes=(True, False))
    assert result["pending"] == [] and result["counts"]["total"] == 0 and "baseline" in result["message"]


@pytest.mark.parametrize("fault", ["unreachable", "wrong_password", "missing_database"])
def test_database_errors(postgres_server, prisma_db, run_module, tmp_path, fault):
    database, url = prisma_db
    wrong = "Wr0ng-" + postgres_server.password[::-1]
    bad_url, reason = {
        "unreachable": (url.replace(":%d/" % postgres_server.port, ":%d/" % free_port()),
                        "the database server cannot be reached"),
        "wrong_password": (url.replace(urllib.parse.quote(postgres_server.password, safe=""),
                                       urllib.parse.quote(wrong, safe="")), "authentication failed"),
        "missing_database": (url.replace("/" + database, "/" + database + "_gone"), "the database does not exist"),
    }[fault]
    path = prisma_app.make_prisma_release(tmp_path / "v1", "1.0.0")
    result = status(run_module, path, bad_url)
    assert result["failed"] is True and result["state"] == "error" and result["changed"] is False, result
    assert reason in result["msg"], result["msg"]
    no_secret(result, postgres_server.password, wrong, bad_url)
    reported = status(run_module, path, bad_url, check_mode=True, fail_on=[])
    no_secret(reported, postgres_server.password, wrong, bad_url)
    assert "msg" not in reported and reported["state"] == "error" and reason in reported["message"]
    assert reported["pending"] == [] and reported["applied"] == []
