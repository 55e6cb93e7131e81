# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: which parts of a migration command would destroy data.

``destructive_items(argv)`` returns the offending items of an argv (empty when it is safe):
Laravel commands that drop or roll back tables (``migrate:fresh``, ``migrate:reset``,
``migrate:refresh``, ``migrate:rollback``, ``db:wipe``, and the tenant variants such as
stancl/tenancy's ``tenants:migrate-fresh`` and ``tenants:rollback``), the flags ``--fresh``,
``--seed`` and ``--seeder`` (alone or with ``=value``), and Prisma's ``migrate reset``,
``--force-reset`` and ``--accept-data-loss``.

Arguments are also split on whitespace and shell separators, so a command wrapped in
``sh -c "php artisan migrate:fresh"`` is caught too. The callers refuse such a command unless
the user allowed destructive operations explicitly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# php artisan [namespace:]migrate:fresh|reset|refresh|rollback, db:wipe
_LARAVEL_COMMAND = re.compile(
    r"^(?:[A-Za-z0-9_-]+:)*(?:migrate:(?:fresh|reset|refresh|rollback)|db:wipe)$", re.I)
# tenant packages: tenants:migrate-fresh (stancl/tenancy), tenants:rollback, tenants:migrate:fresh ...
_TENANT_COMMAND = re.compile(r"^tenants?:(?:migrate[-:](?:fresh|reset|refresh|rollback)|rollback|wipe)$", re.I)
_FLAG = re.compile(r"^--(?:fresh|seed|seeder|force-reset|accept-data-loss)(?:=.*)?$", re.I)
_SPLIT = re.compile(r"[\s;&|()`'\"]+")


def _tokens(argv):
    tokens = []
    for arg in argv:
        text = "" if arg is None else str(arg)
        tokens.extend(token for token in _SPLIT.split(text) if token)
    return tokens


def destructive_items(argv):
    """The destructive items of argv, in order, each once (a list of str; empty when safe)."""
    found = []
    tokens = _tokens(argv)
    for index, token in enumerate(tokens):
        item = None
        if _LARAVEL_COMMAND.match(token) or _TENANT_COMMAND.match(token) or _FLAG.match(token):
            item = token
        elif token.lower() == "reset" and index > 0 and tokens[index - 1].lower() == "migrate":
            # prisma migrate reset (drops the database, then re-applies every migration)
            item = "migrate reset"
        if item is not None and item not in found:
            found.append(item)
    return found


def refusal_message(items, what="the command", option="allow_destructive"):
    """One sentence naming the offending items and the option that allows them."""
    return ("refusing to run %s: %s destroy%s data (drops or empties tables, or seeds them). "
            "Remove %s, or set %s=true if this is really wanted (never in production)."
            % (what, ", ".join(repr(item) for item in items), "s" if len(items) == 1 else "",
               "it" if len(items) == 1 else "them", option))
