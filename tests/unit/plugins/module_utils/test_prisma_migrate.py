"""prisma_migrate logic with the Prisma CLI replaced by recorded outputs (the seam is the command runner):
which commands run for each command and state, what is returned, the messages of a failed deploy
(native engine P3018 and driver-adapter outputs), the resolve fallback, destructive refusals and
secrets kept out of argv and output."""

import os

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _prisma_migrate as pm
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandTimeout

from .fake_module import FakeModule, ScriptedRunner

A, B, C = "20250101000000_create_note", "20250201000000_note_pinned", "20250301000000_note_author"
URL = "postgresql://app:p%40ss-w0rd@db.internal:5432/shop"
PASSWORD = "p@ss-w0rd"
HEAD = "Prisma schema loaded from prisma/schema.prisma\nDatasource \"db\": PostgreSQL database \"shop\"\n\n"
STATUS_PENDING = (1, HEAD + "3 migrations found in prisma/migrations\nFollowing migrations have not yet been "
                  "applied:\n%s\n%s\n\nTo apply migrations in production run prisma migrate deploy.\n" % (B, C))
STATUS_UP = (0, HEAD + "3 migrations found in prisma/migrations\n\nDatabase schema is up to date!\n")
STATUS_FAILED = (1, HEAD + "3 migrations found in prisma/migrations\nFollowing migration have failed:\n%s\n\n"
                 "The failed migration(s) can be marked as rolled back or applied:\n" % C)
STATUS_DOWN = (1, HEAD + "Error: Can't reach database server at `db.internal:5432`\n\nPlease make sure your "
               "database server is running at `db.internal:5432`.\n")
DEPLOY_OK = (0, HEAD + "3 migrations found in prisma/migrations\n\n\nThe following migration(s) have been applied:"
             u"\n\nmigrations/\n  \u2514\u2500 %s/\n    \u2514\u2500 migration.sql\n  \u2514\u2500 %s/\n"
             u"    \u2514\u2500 migration.sql\n      \nAll migrations have been successfully applied.\n" % (B, C))
DEPLOY_NOTHING = (0, HEAD + "3 migrations found in prisma/migrations\n\nNo pending migrations to apply.\n")
# the native schema engine's P3018
DEPLOY_P3018 = (1, HEAD + """3 migrations found in prisma/migrations

Applying migration `%s`
Applying migration `%s`
Error: P3018

A migration failed to apply. New migrations cannot be applied before the error is recovered from. Read more \
about how to resolve migration issues in a production database: https://pris.ly/d/migrate-resolve

Migration name: %s

Database error code: 23502

Database error:
ERROR: column "authorId" of relation "Note" contains null values

DbError { severity: "ERROR", code: SqlState(E23502) }
""" % (B, C, C))
# Prisma 6.19 through the pg driver adapter (engine "js"): no code, the engine's span trace
DEPLOY_ADAPTER = (1, HEAD + """3 migrations found in prisma/migrations

Error: external connector error
Null constraint failed:%s
   0: sql_schema_connector::apply_migration::apply_script
           with migration_name="%s"
             at schema-engine/connectors/sql-schema-connector/src/apply_migration.rs:113
   1: schema_engine_wasm::wasm::engine::ApplyMigrations
             at schema-engine/schema-engine-wasm/src/wasm/engine.rs:167
""" % (" ", C))
NO_ENGINE = (1, HEAD + "Error: Schema engine exited. Error: Could not find schema-engine binary. Searched in:\n"
             "- /srv/app/node_modules/@prisma/engines/schema-engine-debian-openssl-3.0.x\n")


def params(**values):
    base = dict(chdir=None, command="deploy", prisma_binary=None, schema=None, env={}, database_url=URL,
                timeout=900.0, resolve_migration=None, resolve_as=None, prisma_args=None, allow_destructive=False)
    base.update(values)
    return base


class Script(object):
    """Answers per subcommand ("migrate status", "migrate deploy", ...), in order; records every call."""

    def __init__(self, answers):
        self.answers = dict((key, list(value)) for key, value in answers.items())
        self.calls = []

    def __call__(self, call):
        key = " ".join(call["argv"][1:3])
        self.calls.append(dict(call, key=key))
        assert call["merge_output"] is True
        queue = self.answers.get(key)
        if not queue:
            raise AssertionError("unexpected command %s" % call["argv"])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(call) if callable(answer) else answer

    @property
    def keys(self):
        return [call["key"] for call in self.calls]


def app(tmp_path, migrations=(A, B, C)):
    binary = tmp_path / "node_modules" / ".bin" / "prisma"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    for name in migrations:
        folder = tmp_path / "prisma" / "migrations" / name
        folder.mkdir(parents=True)
        (folder / "migration.sql").write_text("SELECT 1;\n")
    (tmp_path / "prisma").mkdir(exist_ok=True)
    (tmp_path / "prisma" / "schema.prisma").write_text("// schema\n")
    return str(tmp_path)


def make(tmp_path, answers, check_mode=False, **values):
    chdir = values.pop("chdir", None) or app(tmp_path)
    module = FakeModule(params(chdir=chdir, **values), check_mode=check_mode)
    script = Script(answers)
    runner = ScriptedRunner(module, [script])
    return pm.PrismaMigrate(module, runner), runner, script


def failure(action):
    with pytest.raises(SafeshipError) as info:
        action()
    return info.value


def no_secret(text):
    assert URL not in text and PASSWORD not in text and "p%40ss-w0rd" not in text


# ------------------------------------------------------------------ deploy


def test_deploy_pending_applies_and_reports_by_name(tmp_path):
    job, runner, script = make(tmp_path, {"migrate status": [STATUS_PENDING, STATUS_UP], "migrate deploy": [DEPLOY_OK]})
    result = job.run()
    assert script.keys == ["migrate status", "migrate deploy", "migrate status"]
    assert (result["changed"], result["state"], result["pending"], result["applied"]) == (
        True, "up_to_date", [B, C], [B, C])
    assert result["failed_migration"] is None and result["error_code"] is None
    env = script.calls[1]["env"]
    assert env["DATABASE_URL"] == URL and env["CHECKPOINT_DISABLE"] == "1" and env["NO_COLOR"] == "1"
    assert env["LANG"] == "C" and "PATH" in env  # extended, not replaced
    for call in script.calls:
        no_secret(" ".join(call["argv"]))
        assert call["cwd"] == job.params["chdir"] and call["timeout"] == 900
    assert runner.executed_commands[1].endswith("node_modules/.bin/prisma migrate deploy")


def test_deploy_up_to_date_asks_deploy_and_changes_nothing(tmp_path):
    job, _runner, script = make(tmp_path, {"migrate status": [STATUS_UP], "migrate deploy": [DEPLOY_NOTHING]})
    result = job.run()
    assert script.keys == ["migrate status", "migrate deploy"]
    assert (result["changed"], result["state"], result["pending"], result["applied"]) == (
        False, "up_to_date", [], [])


def test_deploy_of_a_migration_status_does_not_list(tmp_path):
    # a migration marked rolled back: the status says up to date, deploy applies it again
    applied_one = (0, DEPLOY_OK[1].replace(u"  \u2514\u2500 %s/\n    \u2514\u2500 migration.sql\n" % B, ""))
    job, _runner, script = make(tmp_path, {"migrate status": [STATUS_UP], "migrate deploy": [applied_one]})
    result = job.run()
    assert (result["changed"], result["applied"], result["pending"]) == (True, [C], [C])


@pytest.mark.parametrize("before, changed", [(STATUS_PENDING, True), (STATUS_UP, False)])
def test_deploy_check_mode_runs_status_only(tmp_path, before, changed):
    job, _runner, script = make(tmp_path, {"migrate status": [before]}, check_mode=True)
    result = job.run()
    assert script.keys == ["migrate status"]
    assert result["changed"] is changed and result["applied"] == []
    if changed:
        assert result["pending"] == [B, C] and "would apply 2 migration(s): %s, %s" % (B, C) in result["message"]


def test_deploy_refused_before_running_when_a_migration_failed_earlier(tmp_path):
    for check_mode in (False, True):
        job, _runner, script = make(tmp_path / str(check_mode), {"migrate status": [STATUS_FAILED]},
                                    check_mode=check_mode)
        err = failure(job.run)
        assert script.keys == ["migrate status"]
        assert err.details["state"] == "failed" and err.details["failed_migration"] == C
        assert err.details["error_code"] == "P3009" and not err.details.get("changed")
        assert "prisma migrate deploy not run: migration %s failed earlier" % C in err.msg
        assert "--rolled-back %s" % C in err.msg and "--applied %s" % C in err.msg and "_prisma_migrations" in err.msg


def test_deploy_failure_native_engine_p3018(tmp_path):
    after = (1, HEAD + "Following migration have failed:\n%s\n" % C)
    job, _runner, script = make(tmp_path, {"migrate status": [STATUS_PENDING, after], "migrate deploy": [DEPLOY_P3018]})
    err = failure(job.run)
    assert script.keys == ["migrate status", "migrate deploy", "migrate status"]
    d = err.details
    assert (d["state"], d["failed_migration"], d["error_code"], d["applied"], d["changed"]) == (
        "failed", C, "P3018", [B], True)
    assert err.msg.startswith("prisma migrate deploy failed: migration %s failed (P3018): " % C)
    assert 'ERROR: column "authorId" of relation "Note" contains null values (database error code 23502)' in err.msg
    assert "Applied before it in this run: %s." % B in err.msg and "now failed" in err.msg
    assert "--rolled-back %s" % C in err.msg and "DbError" not in err.msg


def test_deploy_failure_through_a_driver_adapter(tmp_path):
    after = (1, HEAD + "Following migration have failed:\n%s\n" % C)
    pending_c = (1, HEAD + "Following migration have not yet been applied:\n%s\n" % C)
    job, _runner, _script = make(tmp_path, {"migrate status": [pending_c, after], "migrate deploy": [DEPLOY_ADAPTER]})
    err = failure(job.run)
    assert err.details["failed_migration"] == C and err.details.get("error_code") is None
    assert "migration %s failed: external connector error / Null constraint failed:." % C in err.msg
    assert "Applied before it in this run: none" in err.msg and "sql_schema_connector" not in err.msg
    assert "sql_schema_connector" in err.details["stdout_tail"]


def test_deploy_failure_without_a_migration_named(tmp_path):
    job, _runner, _script = make(tmp_path, {"migrate status": [STATUS_PENDING, STATUS_DOWN],
                                            "migrate deploy": [STATUS_DOWN]})
    err = failure(job.run)
    assert err.msg.startswith("prisma migrate deploy failed (rc 1): Can't reach database server")
    assert "Migration state now: error." in err.msg and err.details["changed"] is False


def test_deploy_stops_when_the_status_fails(tmp_path):
    job, _runner, script = make(tmp_path, {"migrate status": [STATUS_DOWN]})
    err = failure(job.run)
    assert script.keys == ["migrate status"] and err.details["state"] == "error"
    assert "prisma migrate status failed, so nothing was deployed" in err.msg and "cannot be reached" in err.msg


def test_engine_download_gets_a_hint(tmp_path):
    download = (1, "Error: request to https://binaries.prisma.sh/all_commits/x/libquery_engine.so.node.gz.sha256 "
                "failed, reason: getaddrinfo ENOTFOUND binaries.prisma.sh\n")
    job, _runner, _script = make(tmp_path, {"migrate status": [download]})
    assert "DATABASE_URL must be in the environment of every command" in failure(job.run).msg


# ------------------------------------------------------------------ secrets


def test_secrets_are_masked_in_every_text(tmp_path):
    leaky = (1, HEAD + "Error: P1001: Can't reach database server at %s (password %s)\n" % (URL, PASSWORD))
    job, _runner, _script = make(tmp_path, {"migrate status": [leaky]}, env={"API_TOKEN": "tok-123456"})
    err = failure(job.run)
    no_secret(err.msg + err.details["stdout_tail"])
    assert "********" in err.details["stdout_tail"]
    assert job.runner.environ()["API_TOKEN"] == "tok-123456"


def test_an_argument_holding_a_secret_is_refused(tmp_path):
    job, runner, script = make(tmp_path, {}, command="exec", prisma_args=["db", "execute", "--url", URL])
    assert "secrets travel in the environment only" in failure(job.run).msg
    assert script.calls == [] and runner.executed_commands == []


# ------------------------------------------------------------------ exec, generate


@pytest.mark.parametrize("args, item", [
    (["migrate", "reset", "--force"], "migrate reset"),
    (["db", "push", "--force-reset"], "--force-reset"),
    (["db", "push", "--accept-data-loss"], "--accept-data-loss"),
])
def test_exec_destructive_refused_before_anything(tmp_path, args, item):
    for check_mode in (False, True):
        job, _runner, script = make(tmp_path / str(check_mode), {}, check_mode=check_mode, command="exec",
                                    prisma_args=args)
        err = failure(job.run)
        assert script.calls == [] and repr(item) in err.msg and "allow_destructive" in err.msg
        assert err.details["destructive"] == [item]


def test_exec_runs_when_allowed_and_plans_in_check_mode(tmp_path):
    job, _runner, script = make(tmp_path / "check", {}, check_mode=True, command="exec", prisma_args=["db", "push"])
    assert job.run()["changed"] is True and script.calls == []
    job, _runner, script = make(tmp_path / "real", {"migrate reset": [(0, "Database reset successful\n")]},
                                command="exec", prisma_args=["migrate", "reset", "--force"], allow_destructive=True)
    result = job.run()
    assert result["changed"] is True and result["destructive"] == ["migrate reset"]
    assert script.calls[0]["argv"][1:] == ["migrate", "reset", "--force"]
    job, _runner, _script = make(tmp_path / "fail", {"db push": [(1, "Error: P1001 boom\n")]}, command="exec",
                                 prisma_args=["db", "push"])
    err = failure(job.run)
    assert err.msg.startswith("prisma db push failed (rc 1): Error: P1001 boom") and err.details["prisma_rc"] == 1


def test_generate(tmp_path):
    job, _runner, script = make(tmp_path / "check", {}, check_mode=True, command="generate")
    assert job.run()["changed"] is True and script.calls == []
    job, _runner, script = make(tmp_path / "real", {"generate --schema": [(0, "Generated Prisma Client\n")]},
                                command="generate", schema="prisma/schema.prisma")
    assert job.run()["changed"] is True
    assert script.calls[0]["argv"][1:] == ["generate", "--schema", "prisma/schema.prisma"]


# ------------------------------------------------------------------ resolve


def test_resolve_a_migration_that_is_not_failed_is_a_no_op(tmp_path):
    for check_mode in (False, True):
        job, _runner, script = make(tmp_path / str(check_mode), {"migrate status": [STATUS_UP]}, check_mode=check_mode,
                                    command="resolve", resolve_migration=C, resolve_as="applied")
        result = job.run()
        assert script.keys == ["migrate status"] and result["changed"] is False and result["method"] is None
        assert "is not in a failed state" in result["message"]


def test_resolve_check_mode_plans(tmp_path):
    job, _runner, script = make(tmp_path, {"migrate status": [STATUS_FAILED]}, check_mode=True, command="resolve",
                                resolve_migration=C, resolve_as="rolled-back")
    result = job.run()
    assert script.keys == ["migrate status"] and result["changed"] is True
    assert result["message"] == "would mark migration %s as rolled-back" % C


def test_resolve_applied(tmp_path):
    job, _runner, script = make(tmp_path, {"migrate status": [STATUS_FAILED, STATUS_UP],
                                           "migrate resolve": [(0, "Migration %s marked as applied.\n" % C)]},
                                command="resolve", resolve_migration=C, resolve_as="applied")
    result = job.run()
    assert script.calls[1]["argv"][1:] == ["migrate", "resolve", "--applied", C]
    assert (result["changed"], result["method"], result["state"], result["pending"]) == (
        True, "prisma migrate resolve", "up_to_date", [])


def test_resolve_rolled_back_falls_back_to_the_migrations_table(tmp_path):
    job, _runner, script = make(tmp_path, {"migrate status": [STATUS_FAILED, STATUS_UP], "migrate resolve": [NO_ENGINE],
                                           "db execute": [(0, "Script executed successfully.\n")]},
                                command="resolve", resolve_migration=C, resolve_as="rolled-back")
    result = job.run()
    assert script.keys == ["migrate status", "migrate resolve", "db execute", "migrate status"]
    execute = script.calls[2]
    assert execute["argv"][1:] == ["db", "execute", "--stdin", "--schema",
                                   os.path.join(job.params["chdir"], "prisma", "schema.prisma")]
    assert execute["data"] == ("UPDATE _prisma_migrations SET rolled_back_at = CURRENT_TIMESTAMP WHERE "
                               "migration_name = '%s' AND finished_at IS NULL AND rolled_back_at IS NULL;\n" % C)
    assert result["method"] == "_prisma_migrations" and "native schema engine" in job.warnings[0]
    # Prisma's status does not list it, but the next deploy applies it again
    assert result["state"] == "pending" and result["pending"] == [C] and "applies it again" in result["message"]


def test_resolve_failure_and_still_failed(tmp_path):
    job, _runner, _script = make(tmp_path / "a", {"migrate status": [STATUS_FAILED],
                                                  "migrate resolve": [(1, "Error: P3011 not found\n")]},
                                 command="resolve", resolve_migration=C, resolve_as="applied")
    err = failure(job.run)
    assert err.msg.startswith("marking migration %s as applied failed (rc 1): Error: P3011" % C)
    job, _runner, _script = make(tmp_path / "b", {"migrate status": [STATUS_FAILED],
                                                  "migrate resolve": [(0, "ok\n")]},
                                 command="resolve", resolve_migration=C, resolve_as="applied")
    assert "is still failed" in failure(job.run).msg


# ------------------------------------------------------------------ input


@pytest.mark.parametrize("values, message", [
    (dict(command="resolve", resolve_migration="x'; DROP TABLE t; --", resolve_as="applied"),
     "is not a migration name"),
    (dict(resolve_migration=C, resolve_as="applied"), "are for command=resolve"),
    (dict(prisma_args=["db", "push"]), "prisma_args is for command=exec"),
    (dict(command="exec", prisma_args=[""]), "must hold a Prisma subcommand"),
    (dict(timeout=0), "timeout must be a positive number"),
    (dict(schema="nope/schema.prisma"), "does not exist"),
])
def test_bad_input_one_clear_error(tmp_path, values, message):
    job, _runner, script = make(tmp_path, {}, **values)
    assert message in failure(job.run).msg and script.calls == []


def test_missing_cli_names_the_path_and_the_fix(tmp_path):
    chdir = tmp_path / "release"
    chdir.mkdir()
    job, _runner, script = make(tmp_path, {}, chdir=str(chdir))
    msg = failure(job.run).msg
    assert os.path.join(str(chdir), "node_modules", ".bin", "prisma") in msg
    assert "`dependencies`" in msg and "npm prune --omit=dev" in msg and script.calls == []
    assert "is not a directory" in failure(make(tmp_path, {}, chdir=str(tmp_path / "nope"))[0].run).msg


def test_timeout_is_an_error_naming_the_command(tmp_path):
    def slow(call):
        return CommandTimeout(call["argv"], call["timeout"], -15, "partial output with %s" % PASSWORD)
    job, _runner, _script = make(tmp_path, {"migrate status": [slow]}, timeout=1.5)
    err = failure(job.run)
    assert "prisma migrate status did not finish within 1.5 s (timeout)" in err.msg
    assert err.details["prisma_rc"] == -15 and err.details["stdout_tail"] == "partial output with ********"


def test_module_entry_point_runs_the_command(tmp_path):
    module = FakeModule(params(chdir=app(tmp_path), command="status"))
    runner = ScriptedRunner(module, [STATUS_UP])
    assert pm.run(module, runner)["state"] == "up_to_date"
    assert runner.executed_commands == ["%s migrate status" % runner.calls[0]["argv"][0]]


def test_pure_parsers():
    assert pm.applied_in_output(DEPLOY_OK[1]) == [B, C]
    assert pm.applied_in_output(DEPLOY_NOTHING[1]) == []
    assert pm.deploy_failure(DEPLOY_P3018[1])[0] == C and pm.deploy_failure(DEPLOY_P3018[1])[2] == "P3018"
    name, reason, code = pm.deploy_failure(DEPLOY_ADAPTER[1])
    assert (name, code) == (C, None) and reason == "external connector error / Null constraint failed:"


def test_status_is_read_only_and_has_no_rc_key(tmp_path):
    # Ansible fails any task whose result has a non-zero `rc`: `prisma migrate status` exits 1 when pending
    for check_mode in (False, True):
        job, _runner, script = make(tmp_path / str(check_mode), {"migrate status": [STATUS_PENDING]},
                                    check_mode=check_mode, command="status")
        result = job.run()
        assert script.keys == ["migrate status"] and result["changed"] is False
        assert (result["state"], result["pending"], result["applied"], result["prisma_rc"]) == (
            "pending", [B, C], [A], 1)
        assert "rc" not in result and "failed" not in result


def test_deploy_without_migrations_on_an_unmanaged_database_runs_nothing(tmp_path):
    # `migrate deploy` would create _prisma_migrations there although nothing is applied
    unmanaged = (1, HEAD + "No migration found in prisma/migrations\n\nThe current database is not managed by "
                 "Prisma Migrate.\n")
    chdir = tmp_path / "release"
    chdir.mkdir()
    job, _runner, script = make(tmp_path, {"migrate status": [unmanaged]}, chdir=app(chdir, migrations=()))
    result = job.run()
    assert script.keys == ["migrate status"]
    assert (result["changed"], result["state"], result["applied"]) == (False, "not_installed", [])
    assert "baseline" in job.warnings[0]
