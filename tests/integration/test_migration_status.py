"""migration_status on the real Laravel 8 fixture, on real PostgreSQL and MariaDB servers, and with a
small status script (tool=command).

The release's .env has no DB_PASSWORD: the module passes it in `env`, so every successful
status proves the environment reached artisan, and the password is checked absent from every result."""

import os
import stat

import pytest

from helpers.laravel_app import LaravelLab, add_tenants, artisan, db_env, lab_server, migration_names, write_env
from helpers.modules import no_secret

NOTES = "2021_01_01_000000_create_notes_table"
NOTES_MIGRATION = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

class CreateNotesTable extends Migration
{
    public function up()
    {
        Schema::create('notes', function (Blueprint $table) {
            $table->id();
        });
    }

    public function down()
    {
        Schema::dropIfExists('notes');
    }
}
"""


@pytest.fixture(params=["postgresql", "mariadb"])
def lab(request, tmp_path, unique_name):
    """A release whose central database is empty; the password only in lab.env, as a deploy passes it."""
    lab = LaravelLab(lab_server(request), tmp_path / "release", unique_name, "1.0.0", password_in_env=True)
    yield lab
    lab.close()


def four_ways(run_module, args, state, secrets=()):
    """check -> real -> again -> check: the same state, never changed, no secret anywhere."""
    results = []
    for check_mode in (True, False, False, True):
        result = run_module("migration_status", args, check_mode=check_mode)
        assert not result.get("failed"), result
        assert result["changed"] is False
        assert result["state"] == state, result
        no_secret(result, *secrets)
        results.append(result)
    return results


def test_laravel_not_installed_migrate_up_to_date_pending(lab, run_module):
    args = dict(tool="laravel", chdir=lab.path, env=lab.env)
    central = migration_names(lab.path)

    # no migrations table yet: every migration file is pending
    result = four_ways(run_module, args, "not_installed", [lab.password])[-1]
    assert result["pending"] == central and result["applied"] == []
    assert result["counts"] == dict(pending=4, applied=0, failed=0, total=4)
    assert result["status_rc"] == 1 and result["tool"] == "laravel"
    assert result["executed_commands"][0].endswith("artisan migrate:status --no-ansi --no-interaction")
    # ...and the module really changed nothing
    assert lab.server.execute("SELECT 1", lab.central) == [(1,)]
    migrated = artisan(lab.path, "migrate", "--force", env=lab.env)
    assert migrated.returncode == 0, migrated.stdout

    result = four_ways(run_module, args, "up_to_date", [lab.password])[-1]
    assert result["applied"] == central and result["pending"] == []
    assert result["counts"] == dict(pending=0, applied=4, failed=0, total=4)
    assert result["status_rc"] == 0

    # a new migration in the release is pending, by name
    with open(os.path.join(lab.path, "database", "migrations", NOTES + ".php"), "w") as handle:
        handle.write(NOTES_MIGRATION)
    result = four_ways(run_module, args, "pending", [lab.password])[-1]
    assert result["pending"] == [NOTES] and result["applied"] == central
    assert result["counts"] == dict(pending=1, applied=4, failed=0, total=5)

    # fail_on: [pending] fails the task, naming it
    result = run_module("migration_status", dict(args, fail_on=["pending"]))
    assert result["failed"] and NOTES in result["msg"] and result["state"] == "pending"
    assert result["changed"] is False
    no_secret(result, lab.password)
    # still pending: the status changed nothing
    assert NOTES not in [row[0] for row in lab.server.execute("SELECT migration FROM migrations", lab.central)]


def test_laravel_tenant_database(lab, run_module):
    assert artisan(lab.path, "migrate", "--force", env=lab.env).returncode == 0
    tenant_db = lab.create_database(lab.central.replace("_central", "_tenant1"))
    add_tenants(lab.server, lab.central, {"tenant1": tenant_db})
    tenant_names = migration_names(lab.path, tenant=True)
    args = dict(tool="laravel", chdir=lab.path, env=dict(lab.env, DB_DATABASE=tenant_db),
                artisan_args=["--path=database/migrations/tenant"])

    result = four_ways(run_module, args, "not_installed", [lab.password])[-1]
    assert result["pending"] == tenant_names
    assert "--path=database/migrations/tenant" in result["executed_commands"][0]

    done = artisan(lab.path, "tenants:migrate", env=lab.env)
    assert done.returncode == 0, done.stdout
    result = four_ways(run_module, args, "up_to_date", [lab.password])[-1]
    assert result["applied"] == tenant_names and result["counts"]["total"] == 2
    # the central database is still reported on its own (its migrations, not the tenant's)
    central = run_module("migration_status", dict(tool="laravel", chdir=lab.path, env=lab.env))
    assert central["state"] == "up_to_date" and central["applied"] == migration_names(lab.path)


def test_laravel_wrong_password_and_stopped_server(lab, run_module):
    wrong = "Wr0ng-" + lab.password[::-1]
    args = dict(tool="laravel", chdir=lab.path, env={"DB_PASSWORD": wrong})
    for check_mode in (True, False):
        result = run_module("migration_status", args, check_mode=check_mode)
        assert result["failed"] and result["state"] == "error" and result["changed"] is False
        assert "exited with code 1" in result["msg"] and "SQLSTATE" in result["msg"], result["msg"]
        no_secret(result, wrong, lab.password)
    # reported only
    result = run_module("migration_status", dict(args, fail_on=[]))
    assert not result.get("failed") and result["state"] == "error" and "SQLSTATE" in result["message"]
    assert result["pending"] == [] and result["counts"]["total"] == 0
    no_secret(result, wrong, lab.password)

    # the database server is down: refused, a clear error, the right password nowhere
    with lab.server.stopped():
        result = run_module("migration_status", dict(tool="laravel", chdir=lab.path, env=lab.env))
    assert result["failed"] and result["state"] == "error"
    assert "refused" in result["msg"].lower() or "can't connect" in result["msg"].lower(), result["msg"]
    no_secret(result, lab.password)


def test_bad_input_is_one_clear_error(tmp_path, run_module):
    result = run_module("migration_status", dict(tool="laravel", chdir=str(tmp_path / "nope")))
    assert result["failed"] and "is not a directory" in result["msg"]
    result = run_module("migration_status", dict(tool="laravel", chdir=str(tmp_path)))
    assert result["failed"] and "no artisan file" in result["msg"]
    result = run_module("migration_status", dict(tool="command", chdir=str(tmp_path), command=["true"],
                                                 pending_regex="(unclosed"))
    assert result["failed"] and "pending_regex is not a valid regular expression" in result["msg"]
    result = run_module("migration_status", dict(tool="command", chdir=str(tmp_path), command=["true"]))
    assert result["failed"] and "pending_regex" in result["msg"]


STATUS_SCRIPT = """#!/bin/sh
# prints the status of three migrations from $STATE_FILE; exits 3 when told to
[ -n "$FAIL" ] && { echo "cannot connect with password $API_SECRET" >&2; exit 3; }
[ -n "$SLEEP" ] && sleep "$SLEEP"
echo "APPLIED 001_init"
if [ -f "$STATE_FILE" ]; then echo "APPLIED 002_orders"; else echo "PENDING 002_orders"; fi
echo "PENDING 003_refunds secret=$API_SECRET"
"""


def test_command_tool(tmp_path, run_module):
    script = tmp_path / "status.sh"
    script.write_text(STATUS_SCRIPT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    secret = "s3cr3t-api-key-4242"
    args = dict(tool="command", chdir=str(tmp_path), command=["./status.sh"],
                pending_regex=r"^PENDING (?P<name>\S+)", applied_regex=r"^APPLIED (\S+)",
                env={"API_SECRET": secret, "STATE_FILE": str(tmp_path / "applied")})
    result = four_ways(run_module, args, "pending", [secret])[-1]
    assert result["pending"] == ["002_orders", "003_refunds"] and result["applied"] == ["001_init"]
    assert result["counts"] == dict(pending=2, applied=1, failed=0, total=3)
    assert "secret=********" in result["stdout_tail"]
    assert result["executed_commands"] == ["./status.sh"]

    (tmp_path / "applied").write_text("")
    result = run_module("migration_status", args)
    assert result["pending"] == ["003_refunds"] and result["applied"] == ["001_init", "002_orders"]

    # no pending line: up to date
    result = run_module("migration_status", dict(args, pending_regex="^NEVER"))
    assert result["state"] == "up_to_date" and result["pending"] == []

    # non-zero exit: error, message from the output, secret masked
    failing = dict(args, env=dict(args["env"], FAIL="1"))
    result = run_module("migration_status", failing)
    assert result["failed"] and result["state"] == "error" and result["status_rc"] == 3
    assert "exited with code 3" in result["msg"] and "cannot connect with password ********" in result["msg"]
    no_secret(result, secret)

    # timeout: killed, error
    slow = dict(args, timeout=1, env=dict(args["env"], SLEEP="30"))
    result = run_module("migration_status", dict(slow, fail_on=[]))
    assert result["state"] == "error" and "timeout" in result["message"], result
    no_secret(result, secret)


def test_env_file_password_not_needed_in_argv(lab, run_module):
    """The password given in `env` never reaches argv, and .env stays as it was."""
    before = open(os.path.join(lab.path, ".env")).read()
    result = run_module("migration_status", dict(tool="laravel", chdir=lab.path, env=lab.env))
    assert result["state"] == "not_installed"
    assert all(lab.password not in command for command in result["executed_commands"])
    assert open(os.path.join(lab.path, ".env")).read() == before
    # with the password written into .env instead, the same status works without env
    write_env(lab.path, dict(db_env(lab.server, lab.central)))
    result = run_module("migration_status", dict(tool="laravel", chdir=lab.path))
    assert result["state"] == "not_installed" and result["counts"]["pending"] == 4
