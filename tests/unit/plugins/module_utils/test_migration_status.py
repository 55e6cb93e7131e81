"""migration_status parsers (Laravel 8/9+ migrate:status, prisma migrate status, regexes) and the run()
logic with the command replaced by recorded outputs. The Prisma samples are the CLI's real outputs
(prisma 4.3+ / 5: exit 1 for everything that is not up to date), as data."""

import os

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _laravel, _prisma, _text
from ansible_collections.safeship.webapp.plugins.module_utils import _migration_status as ms
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandTimeout

from .fake_module import FakeModule, ScriptedRunner

HEADER = """Environment variables loaded from .env
Prisma schema loaded from prisma/schema.prisma
Datasource "db": PostgreSQL database "shop", schema "public" at "localhost:5432"

"""

PRISMA = {
    "up_to_date": (0, HEADER + """3 migrations found in prisma/migrations


Database schema is up to date!
"""),
    "pending_one": (1, HEADER + """3 migrations found in prisma/migrations

Following migration have not yet been applied:
20240501093000_add_orders

To apply migrations in development run prisma migrate dev.
To apply migrations in production run prisma migrate deploy.
"""),
    "pending_two": (1, HEADER + """3 migrations found in prisma/migrations

Following migrations have not yet been applied:
20240415000000_add_index
20240501093000_add_orders

To apply migrations in development run prisma migrate dev.
To apply migrations in production run prisma migrate deploy.
"""),
    "failed": (1, HEADER + """3 migrations found in prisma/migrations

Following migration have failed:
20240501093000_add_orders

During development if the failed migration(s) have not been deployed to a production database \
you can then fix the migration(s) and run prisma migrate dev.

The failed migration(s) can be marked as rolled back or applied:

- If you rolled back the migration(s) manually:
prisma migrate resolve --rolled-back "20240501093000_add_orders"

- If you fixed the database manually (hotfix):
prisma migrate resolve --applied "20240501093000_add_orders"

Read more about how to resolve migration issues in a production database:
https://pris.ly/d/migrate-resolve
"""),
    "diverged": (1, HEADER + """3 migrations found in prisma/migrations

Your local migration history and the migrations table from your database are different:

The last common migration is: 20240101000000_init

The migration have not yet been applied:
20240501093000_add_orders

The migrations from the database are not found locally in prisma/migrations:
20240415000000_hotfix_index
"""),
    "not_managed": (1, HEADER + """3 migrations found in prisma/migrations

The current database is not managed by Prisma Migrate.

Read more about how to baseline an existing production database:
https://pris.ly/d/migrate-baseline
"""),
    "unreachable": (1, """Prisma schema loaded from prisma/schema.prisma
Datasource "db": PostgreSQL database "shop", schema "public" at "db.internal:5432"

Error: P1001: Can't reach database server at `db.internal:5432`

Please make sure your database server is running at `db.internal:5432`.
"""),
    "auth": (1, HEADER + """Error: P1000: Authentication failed against database server at `localhost`, \
the provided database credentials for `shop` are not valid.

Please make sure to provide valid database credentials for the database server at `localhost`.
"""),
    "p3009": (1, HEADER + """3 migrations found in prisma/migrations

Error: P3009

migrate found failed migrations in the target database, new migrations will not be applied. \
Read more about how to resolve migration issues in a production database: https://pris.ly/d/migrate-resolve
The `20240501093000_add_orders` migration started at 2024-05-01 09:31:02.117 UTC failed
"""),
    "no_migrations": (0, HEADER + """No migration found in prisma/migrations

Database schema is up to date!
"""),
    "old_cli_pending_exit_0": (0, HEADER + """3 migrations found in prisma/migrations

Following migration have not yet been applied:
20240501093000_add_orders
"""),
}

# Prisma 6.19 through a driver adapter (prisma.config.ts with engine "js", tests/fixtures/prisma_app):
# the real CLI's outputs, stdout and stderr merged; its database errors carry no P1xxx code
ADAPTER_HEADER = """Loaded Prisma config from prisma.config.ts.

Prisma config detected, skipping environment variable loading.
Prisma schema loaded from prisma/schema.prisma
Datasource "db": PostgreSQL database "shop", schema "public" using driver adapter "@prisma/adapter-pg"

WARNING: Your schema specifies the following datasource properties but you are using a Driver Adapter \
via prisma.config.ts:
- url

The values from your schema will NOT be used!

We recommend you to remove those properties from your schema to avoid confusion if you are only using driver \
adapters.

"""
PRISMA.update({
    "adapter_pending": (1, ADAPTER_HEADER + """2 migrations found in prisma/migrations
Following migrations have not yet been applied:
20250101000000_create_note
20250201000000_note_pinned

To apply migrations in development run prisma migrate dev.
To apply migrations in production run prisma migrate deploy.
"""),
    "adapter_up_to_date": (0, ADAPTER_HEADER + """2 migrations found in prisma/migrations

Database schema is up to date!
"""),
    "adapter_failed": (1, ADAPTER_HEADER + """3 migrations found in prisma/migrations
Following migration have failed:
20250301000000_note_author

During development if the failed migration(s) have not been deployed to a production database you can then \
fix the migration(s) and run prisma migrate dev.

The failed migration(s) can be marked as rolled back or applied:

- If you rolled back the migration(s) manually:
prisma migrate resolve --rolled-back "20250301000000_note_author"

- If you fixed the database manually (hotfix):
prisma migrate resolve --applied "20250301000000_note_author"

Read more about how to resolve migration issues in a production database:
https://pris.ly/d/migrate-resolve
"""),
    "adapter_not_managed": (1, ADAPTER_HEADER + """No migration found in prisma/migrations

The current database is not managed by Prisma Migrate.

Read more about how to baseline an existing production database:
https://pris.ly/d/migrate-baseline
"""),
    "adapter_unreachable": (1, ADAPTER_HEADER + """Error: Can't reach database server at `127.0.0.1:1`

Please make sure your database server is running at `127.0.0.1:1`.
"""),
    "adapter_auth": (1, ADAPTER_HEADER + """Error: Authentication failed against database server, the provided database \
credentials for `postgres` are not valid.

Please make sure to provide valid database credentials for the database server at the configured address.
"""),
    "adapter_no_database": (1, ADAPTER_HEADER + """Error: Database `shop_gone` does not exist
"""),
})


@pytest.mark.parametrize("sample, state, pending, failed, total", [
    ("adapter_pending", "pending", ["20250101000000_create_note", "20250201000000_note_pinned"], [], 2),
    ("adapter_up_to_date", "up_to_date", [], [], 2),
    ("adapter_failed", "failed", [], ["20250301000000_note_author"], 3),
    ("adapter_not_managed", "not_installed", [], [], 0),
    ("adapter_unreachable", "error", [], [], None),
    ("adapter_auth", "error", [], [], None),
    ("adapter_no_database", "error", [], [], None),
    ("up_to_date", "up_to_date", [], [], 3),
    ("pending_one", "pending", ["20240501093000_add_orders"], [], 3),
    ("pending_two", "pending", ["20240415000000_add_index", "20240501093000_add_orders"], [], 3),
    ("failed", "failed", [], ["20240501093000_add_orders"], 3),
    ("diverged", "drift", ["20240501093000_add_orders"], [], 3),
    ("not_managed", "not_installed", [], [], 3),
    ("unreachable", "error", [], [], None),
    ("auth", "error", [], [], None),
    ("p3009", "failed", [], ["20240501093000_add_orders"], 3),
    ("no_migrations", "up_to_date", [], [], 0),
    ("old_cli_pending_exit_0", "pending", ["20240501093000_add_orders"], [], 3),
])
def test_parse_prisma(sample, state, pending, failed, total):
    rc, output = PRISMA[sample]
    parsed = _prisma.parse_prisma(rc, output)
    assert parsed["state"] == state
    assert parsed["pending"] == pending
    assert parsed["failed"] == failed
    assert parsed["total"] == total
    if state in ("up_to_date", "pending"):
        assert parsed["message"] is None
    else:
        assert parsed["message"]


@pytest.mark.parametrize("sample, reason", [
    ("adapter_unreachable", "the database server cannot be reached (P1001): Error: Can't reach database server"),
    ("adapter_auth", "authentication failed (P1000): Error: Authentication failed"),
    ("adapter_no_database", "the database does not exist (P1003): Error: Database `shop_gone` does not exist"),
])
def test_prisma_adapter_errors_are_named_without_their_code(sample, reason):
    assert reason in _prisma.parse_prisma(*PRISMA[sample])["message"]


def test_prisma_messages_name_the_reason():
    assert "cannot be reached (P1001)" in _prisma.parse_prisma(*PRISMA["unreachable"])["message"]
    assert "Can't reach database server at `db.internal:5432`" in _prisma.parse_prisma(*PRISMA["unreachable"])["message"]
    assert "authentication failed (P1000)" in _prisma.parse_prisma(*PRISMA["auth"])["message"]
    assert "20240415000000_hotfix_index" in _prisma.parse_prisma(*PRISMA["diverged"])["message"]
    assert "20240501093000_add_orders" in _prisma.parse_prisma(*PRISMA["failed"])["message"]
    assert "baseline" in _prisma.parse_prisma(*PRISMA["not_managed"])["message"]
    unknown = _prisma.parse_prisma(1, "Error: Could not find a schema.prisma file that is required for this command.")
    assert unknown["state"] == "error" and "Could not find a schema.prisma" in unknown["message"]
    # exit 1 and "up to date" never reads as up to date
    assert _prisma.parse_prisma(1, "Database schema is up to date!\nsomething odd")["state"] == "error"


LARAVEL8 = """+------+------------------------------------------------+-------+
| Ran? | Migration                                      | Batch |
+------+------------------------------------------------+-------+
| Yes  | 2014_10_12_000000_create_users_table           | 1     |
| Yes  | 2019_08_19_000000_create_failed_jobs_table     | 1     |
| No   | 2021_01_01_000000_create_notes_table           |       |
+------+------------------------------------------------+-------+
"""

LARAVEL10 = """
  Migration name .............................................................................. Batch / Status
  2014_10_12_000000_create_users_table ................................................................ [1] Ran
  2019_08_19_000000_create_failed_jobs_table .......................................................... [2] Ran
  2021_01_01_000000_create_notes_table ................................................................ Pending

"""


def test_parse_laravel_tables():
    for output in (LARAVEL8, LARAVEL10):
        parsed = _laravel.parse_laravel(0, output)
        assert parsed["state"] == "pending"
        assert parsed["applied"] == ["2014_10_12_000000_create_users_table",
                                     "2019_08_19_000000_create_failed_jobs_table"]
        assert parsed["pending"] == ["2021_01_01_000000_create_notes_table"]
    up = _laravel.parse_laravel(0, LARAVEL8.replace("| No   |", "| Yes  |").replace("|       |\n+", "| 2     |\n+"))
    assert up["state"] == "up_to_date" and len(up["applied"]) == 3
    assert _laravel.parse_laravel(0, "No migrations found.\n")["state"] == "up_to_date"


def test_parse_laravel_not_installed_and_errors():
    assert _laravel.parse_laravel(1, "Migration table not found.\n")["state"] == "not_installed"
    assert _laravel.parse_laravel(1, "\n   ERROR  Migration table not found.  \n")["pending"] is None
    error = _laravel.parse_laravel(1, '[2026-01-01 10:00:00] production.ERROR: SQLSTATE[08006] [7] connection to '
                                   'server at "127.0.0.1", port 5432 failed: Connection refused (SQL: select * from x) '
                                   '{"exception":"[object] ..."}\n')
    assert error["state"] == "error"
    assert error["message"] == ('php artisan migrate:status exited with code 1: SQLSTATE[08006] [7] connection to '
                                'server at "127.0.0.1", port 5432 failed: Connection refused')
    # exit 0 but no table: not silently up to date
    assert _laravel.parse_laravel(0, "Some unexpected banner\n")["state"] == "error"


def test_laravel_paths_and_files(tmp_path):
    app = str(tmp_path)
    assert _laravel.laravel_paths(app, []) == [os.path.join(app, "database", "migrations")]
    assert _laravel.laravel_paths(app, ["--database=tenant", "--path=database/migrations/tenant"]) == [
        os.path.join(app, "database/migrations/tenant")]
    assert _laravel.laravel_paths(app, ["--path", "/abs/m", "--path=x"]) == ["/abs/m", os.path.join(app, "x")]
    assert _laravel.laravel_paths(app, ["--realpath", "--path=rel"]) == ["rel"]
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("b_two.php", "a_one.php", "README.md"):
        (folder / name).write_text("")
    assert _laravel.migration_files([str(folder), str(tmp_path / "missing")]) == ["a_one", "b_two"]


def test_parse_command_and_groups():
    output = "APPLIED 001\nPENDING 002 (x)\nnoise\nPENDING 003\n"
    named = ms.parse_command(0, output, _text.compile_regex(r"^PENDING (?P<name>\d+)", "p"),
                             _text.compile_regex(r"^APPLIED (\d+)", "a"))
    assert named == dict(state="pending", pending=["002", "003"], applied=["001"], message=None)
    whole = ms.parse_command(0, output, _text.compile_regex(r"^PENDING", "p"))
    assert whole["pending"] == ["PENDING 002 (x)", "PENDING 003"] and whole["applied"] == []
    assert ms.parse_command(0, "APPLIED 001\n", _text.compile_regex("^PENDING", "p"))["state"] == "up_to_date"
    failed = ms.parse_command(2, "boom\n", _text.compile_regex("^PENDING", "p"))
    assert failed["state"] == "error" and "exited with code 2: boom" in failed["message"]
    with pytest.raises(SafeshipError, match="pending_regex is not a valid regular expression"):
        _text.compile_regex("(", "pending_regex")


def params(**values):
    base = dict(tool="laravel", chdir=None, env={}, php_binary="php", artisan_args=[],
                prisma_binary=None, schema=None, command=None, pending_regex=None, applied_regex=None,
                timeout=300.0, fail_on=["error"])
    base.update(values)
    return base


def status(tmp_path, rc, output, timed_out=False, check_mode=False, **values):
    """(action, runner): the action's status command answers (rc, output), or times out after printing output."""
    module = FakeModule(params(**dict(dict(chdir=str(tmp_path)), **values)), check_mode=check_mode)
    answer = (rc, output)
    if timed_out:
        def answer(call):
            return CommandTimeout(call["argv"], call["timeout"], rc, output)
    runner = ScriptedRunner(module, [answer])
    return ms.MigrationStatus(module, runner), runner


def laravel_app(tmp_path):
    (tmp_path / "artisan").write_text("<?php\n")
    folder = tmp_path / "database" / "migrations"
    folder.mkdir(parents=True)
    for name in ("2014_10_12_000000_create_users_table", "2021_01_01_000000_create_notes_table"):
        (folder / (name + ".php")).write_text("")


def test_run_laravel_not_installed_lists_files_and_env(tmp_path):
    laravel_app(tmp_path)
    action, runner = status(tmp_path, 1, "Migration table not found.\n", check_mode=True,
                            env={"DB_PASSWORD": "hunter22", "DB_PORT": 5432})
    result = action.run()
    assert result["state"] == "not_installed" and result["changed"] is False
    assert result["pending"] == ["2014_10_12_000000_create_users_table", "2021_01_01_000000_create_notes_table"]
    assert result["counts"] == dict(pending=2, applied=0, failed=0, total=2)
    call = runner.calls[0]
    assert call["argv"] == ["/usr/bin/php", "artisan", "migrate:status", "--no-ansi", "--no-interaction"]
    assert call["cwd"] == str(tmp_path) and call["timeout"] == 300 and call["merge_output"] is True
    assert call["env"]["DB_PASSWORD"] == "hunter22" and call["env"]["DB_PORT"] == "5432"
    assert call["env"]["LANG"] == "C" and call["env"]["NO_COLOR"] == "1"
    assert runner.executed_commands == ["/usr/bin/php artisan migrate:status --no-ansi --no-interaction"]


def test_run_error_fails_by_default_with_secrets_masked(tmp_path):
    laravel_app(tmp_path)
    output = "SQLSTATE[HY000] [1045] Access denied for user 'shop' (password hunter22) (SQL: select 1)\n"
    action, _runner = status(tmp_path, 1, output, env={"DB_PASSWORD": "hunter22"})
    with pytest.raises(SafeshipError) as caught:
        action.run()
    assert "Migration status unknown" in caught.value.msg and "Access denied" in caught.value.msg
    assert "hunter22" not in repr(caught.value.msg) + repr(caught.value.details)
    assert caught.value.details["state"] == "error" and caught.value.details["changed"] is False
    action, _runner = status(tmp_path, 1, output, env={"DB_PASSWORD": "hunter22"}, fail_on=[])
    result = action.run()
    assert result["state"] == "error" and "********" in result["stdout_tail"]


def test_run_refuses_secret_in_argv(tmp_path):
    laravel_app(tmp_path)
    action, runner = status(tmp_path, 0, "", env={"DB_PASSWORD": "hunter22"}, artisan_args=["--password=hunter22"])
    with pytest.raises(SafeshipError, match="secrets travel in the environment only"):
        action.run()
    assert runner.calls == [] and runner.executed_commands == []


def test_run_timeout_is_error(tmp_path):
    action, runner = status(tmp_path, -15, "PENDING 1\n", timed_out=True, tool="command", command=["./slow"],
                            pending_regex="PENDING", timeout=2.5, fail_on=[])
    result = action.run()
    assert result["state"] == "error" and "./slow did not finish within 2.5 s (timeout)" in result["message"]
    assert result["pending"] == [] and result["stdout_tail"] == "PENDING 1" and result["status_rc"] == -15
    assert runner.calls[0]["timeout"] == 2.5


def test_run_prisma_local_migrations_and_binary(tmp_path):
    migrations = tmp_path / "prisma" / "migrations"
    for name in ("20240101000000_init", "20240415000000_add_index", "20240501093000_add_orders"):
        (migrations / name).mkdir(parents=True)
        (migrations / name / "migration.sql").write_text("")
    url = "postgresql://shop:s3cret@db:5432/shop"
    action, runner = status(tmp_path, *PRISMA["pending_one"], tool="prisma", env={"DATABASE_URL": url})
    result = action.run()
    assert result["state"] == "pending" and result["pending"] == ["20240501093000_add_orders"]
    assert result["applied"] == ["20240101000000_init", "20240415000000_add_index"]
    assert result["counts"] == dict(pending=1, applied=2, failed=0, total=3)
    # no node_modules/.bin/prisma: npx, never installing
    assert runner.calls[0]["argv"] == ["/usr/bin/npx", "--no-install", "prisma", "migrate", "status"]
    assert runner.calls[0]["env"]["DATABASE_URL"] == url

    binary = tmp_path / "node_modules" / ".bin" / "prisma"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    action, runner = status(tmp_path, *PRISMA["failed"], tool="prisma", schema="prisma/schema.prisma",
                            fail_on=["error", "failed"])
    with pytest.raises(SafeshipError) as caught:
        action.run()
    assert runner.calls[0]["argv"] == [str(binary), "migrate", "status", "--schema", "prisma/schema.prisma"]
    assert caught.value.details["failed_migrations"] == ["20240501093000_add_orders"]
    assert caught.value.details["applied"] == ["20240101000000_init", "20240415000000_add_index"]

    action, _runner = status(tmp_path, *PRISMA["not_managed"], tool="prisma", fail_on=[])
    result = action.run()
    assert result["state"] == "not_installed" and len(result["pending"]) == 3 and result["applied"] == []


def test_run_bad_input(tmp_path):
    action, _runner = status(tmp_path, 0, "", chdir=str(tmp_path / "nope"))
    with pytest.raises(SafeshipError, match="is not a directory"):
        action.run()
    action, _runner = status(tmp_path, 0, "")
    with pytest.raises(SafeshipError, match="no artisan file"):
        action.run()
    action, _runner = status(tmp_path, 0, "", tool="command", command=["x"], pending_regex="x", timeout=0)
    with pytest.raises(SafeshipError, match="timeout must be a positive"):
        action.run()
