# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: what the modules know of Laravel migrations: the output of ``artisan migrate:status`` and the
migration files of an application (migration_status, tenant_migrate)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._text import first_lines


_LARAVEL_TABLE_ROW = re.compile(r"^\s*\|\s*(Yes|No)\s*\|\s*(\S+)\s*\|\s*(\d*)\s*\|\s*$")
# Laravel 9+: "  2014_10_12_000000_create_users_table ............ [1] Ran" / "... Pending"
_LARAVEL_DOTS_ROW = re.compile(r"^\s*(\S+)\s+\.+\s*(?:\[(\d+)\]\s+)?(Ran|Pending)\s*$")
_LARAVEL_NO_TABLE = re.compile(r"Migration table not found", re.I)
_LARAVEL_NO_MIGRATIONS = re.compile(r"No migrations found", re.I)
# the reason of a database failure in Laravel's log line or exception box, without the query
_LARAVEL_SQLSTATE = re.compile(r"(SQLSTATE\[[^\]]*\].*?)(?: \(SQL: |\s*$)", re.M)


def laravel_reason(output):
    match = _LARAVEL_SQLSTATE.search(output)
    if match:
        return first_lines(match.group(1), 1, 400)
    return first_lines(output)


def parse_laravel(rc, output):
    """`artisan migrate:status` output -> dict(state, applied, pending, message).

    state is None when the migrations table is missing (the caller lists the files)."""
    applied, pending = [], []
    for line in output.splitlines():
        match = _LARAVEL_TABLE_ROW.match(line)
        if match:
            (applied if match.group(1) == "Yes" else pending).append(match.group(2))
            continue
        match = _LARAVEL_DOTS_ROW.match(line)
        if match:
            (applied if match.group(3) == "Ran" else pending).append(match.group(1))
    if _LARAVEL_NO_TABLE.search(output):
        return dict(state="not_installed", applied=[], pending=None, message="the migrations table does not exist")
    if rc != 0:
        return dict(state="error", applied=[], pending=[],
                    message="php artisan migrate:status exited with code %s: %s" % (rc, laravel_reason(output)))
    if not applied and not pending and not _LARAVEL_NO_MIGRATIONS.search(output):
        return dict(state="error", applied=[], pending=[],
                    message="php artisan migrate:status printed no migration table: %s" % first_lines(output))
    return dict(state="pending" if pending else "up_to_date", applied=applied, pending=pending, message=None)


def laravel_paths(chdir, artisan_args):
    """The migration folders migrate:status looks at: --path values (relative to the app unless
    --realpath), else database/migrations."""
    paths = []
    realpath = "--realpath" in artisan_args
    args = list(artisan_args)
    for index, arg in enumerate(args):
        value = None
        if arg.startswith("--path="):
            value = arg[len("--path="):]
        elif arg == "--path" and index + 1 < len(args):
            value = args[index + 1]
        if value:
            paths.append(value if (realpath or os.path.isabs(value)) else os.path.join(chdir, value))
    return paths or [os.path.join(chdir, "database", "migrations")]


def migration_files(paths, base=None, option=None):
    """Sorted names (file names without .php) of the migrations in paths, each a folder of migrations or one
    .php file; relative paths are taken from base. A path that is neither is skipped, or, when option names
    the option the paths came from, an error."""
    names = set()
    for path in paths:
        if base and not os.path.isabs(path):
            path = os.path.join(base, path)
        if os.path.isfile(path) and path.endswith(".php"):
            names.add(os.path.basename(path)[:-4])
        elif os.path.isdir(path):
            names.update(name[:-4] for name in os.listdir(path)
                         if name.endswith(".php") and os.path.isfile(os.path.join(path, name)))
        elif option:
            raise SafeshipError("%s %s is not a directory (relative paths are taken from chdir %s)."
                                % (option, path, base))
    return sorted(names)
