"""The refusal rules of destructive migration commands (_destructive), as data."""

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils._destructive import destructive_items, refusal_message

SAFE = [
    ["php", "artisan", "migrate", "--force"],
    ["php", "artisan", "tenants:migrate", "--tenants={tenant}", "--no-interaction"],
    ["php", "artisan", "migrate:status"],
    ["php", "artisan", "migrate", "--path=database/migrations/tenant", "--database=tenant", "--step"],
    ["npx", "prisma", "migrate", "deploy"],
    ["npx", "prisma", "migrate", "status"],
    ["sh", "-c", "php artisan migrate --force && php artisan config:cache"],
    # words that only contain the dangerous ones
    ["./bin/migrate", "--freshness-check", "--seed-file-check", "reset-cache"],
    ["php", "artisan", "app:reset-password"],
]

DESTRUCTIVE = [
    (["php", "artisan", "migrate:fresh", "--force"], ["migrate:fresh"]),
    (["php", "artisan", "migrate:reset"], ["migrate:reset"]),
    (["php", "artisan", "migrate:refresh", "--seed"], ["migrate:refresh", "--seed"]),
    (["php", "artisan", "migrate:rollback", "--step=1"], ["migrate:rollback"]),
    (["php", "artisan", "db:wipe", "--force"], ["db:wipe"]),
    (["php", "artisan", "tenants:migrate", "--tenants=a", "--fresh"], ["--fresh"]),
    (["php", "artisan", "tenants:migrate", "--seed"], ["--seed"]),
    (["php", "artisan", "tenants:migrate", "--seeder=Database\\Seeders\\X"], ["--seeder=Database\\Seeders\\X"]),
    (["php", "artisan", "tenants:migrate", "--seed=1"], ["--seed=1"]),
    (["php", "artisan", "tenants:migrate-fresh"], ["tenants:migrate-fresh"]),
    (["php", "artisan", "tenants:rollback"], ["tenants:rollback"]),
    (["php", "artisan", "MIGRATE:FRESH"], ["MIGRATE:FRESH"]),
    (["npx", "prisma", "migrate", "reset", "--force"], ["migrate reset"]),
    (["npx", "prisma", "db", "push", "--accept-data-loss"], ["--accept-data-loss"]),
    (["npx", "prisma", "db", "push", "--force-reset"], ["--force-reset"]),
    # hidden in a shell string
    (["sh", "-c", "cd /srv/app && php artisan migrate:fresh --force"], ["migrate:fresh"]),
    (["bash", "-lc", "php artisan migrate;php artisan db:wipe"], ["db:wipe"]),
    (["sh", "-c", "npx prisma migrate reset"], ["migrate reset"]),
    # each item once, in order
    (["php", "artisan", "migrate:fresh", "--seed", "--seed"], ["migrate:fresh", "--seed"]),
]


@pytest.mark.parametrize("argv", SAFE)
def test_safe_commands(argv):
    assert destructive_items(argv) == []


@pytest.mark.parametrize("argv,items", DESTRUCTIVE)
def test_destructive_commands(argv, items):
    assert destructive_items(argv) == items


def test_message_names_items_and_option():
    msg = refusal_message(["--fresh"], "the tenant migration command")
    assert "'--fresh'" in msg and "allow_destructive=true" in msg and "the tenant migration command" in msg
    msg = refusal_message(["migrate:fresh", "--seed"], option="prisma_allow_destructive")
    assert "'migrate:fresh', '--seed' destroy data" in msg and "prisma_allow_destructive=true" in msg


def test_non_strings_are_read_as_text():
    assert destructive_items(["php", 1, None, "--fresh"]) == ["--fresh"]
