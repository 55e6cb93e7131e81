# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: what the modules know of the Prisma CLI: the output of ``prisma migrate status``, the local
migrations of a schema and how to get out of a failed migration (migration_status, prisma_migrate)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.safeship.webapp.plugins.module_utils._text import first_lines


_PRISMA_ERROR_CODE = re.compile(r"\b(P\d{4})\b")
_PRISMA_FOUND = re.compile(r"^\s*(\d+) migrations? found in ", re.M)
_PRISMA_NAME = re.compile(r"^\s*(\d{14}_\S*|\d+_[A-Za-z0-9_.-]+)\s*$")
_PRISMA_UNREACHABLE = {
    "P1000": "authentication failed",
    "P1001": "the database server cannot be reached",
    "P1002": "the database server timed out",
    "P1003": "the database does not exist",
    "P1010": "access denied",
    "P1011": "TLS connection failed",
    "P1017": "the server closed the connection",
}
# Through a driver adapter (prisma.config.ts, engine "js") Prisma 6 prints these errors without their code
_PRISMA_ERROR_TEXT = (
    ("P1001", re.compile(r"^Error: Can't reach database server at ", re.M)),
    ("P1000", re.compile(r"^Error: Authentication failed against database server", re.M)),
    ("P1003", re.compile(r"^Error: Database `[^`]*` does not exist", re.M)),
    ("P1002", re.compile(r"^Error: The database server at .* was reached but timed out", re.M)),
)
_SECTIONS = (
    ("pending", re.compile(r"^\s*(?:Following|The) migrations? (?:have|has) not yet been applied:?\s*$", re.I)),
    ("failed", re.compile(r"^\s*Following migrations? (?:have|has) failed:?\s*$", re.I)),
    ("db_only", re.compile(r"^\s*The migrations? from the database (?:are|is) not found locally", re.I)),
    ("other", re.compile(r"^\s*The last common migration is", re.I)),
)


def _prisma_sections(output):
    """Names listed under each heading: {'pending': [...], 'failed': [...], 'db_only': [...]}."""
    found = {"pending": [], "failed": [], "db_only": [], "other": []}
    current = None
    for line in output.splitlines():
        heading = None
        for key, pattern in _SECTIONS:
            if pattern.match(line):
                heading = key
                break
        if heading:
            current = heading
            continue
        if current is None:
            continue
        match = _PRISMA_NAME.match(line)
        if match:
            if match.group(1) not in found[current]:
                found[current].append(match.group(1))
        elif line.strip():
            current = None
    return found


def resolve_instructions(name):
    """How to get out of a failed Prisma migration, for the messages (migration_status, prisma_migrate)."""
    name = name or "<migration>"
    return ("To resolve: fix the database by hand (undo what the migration did, or finish it), then mark it - "
            "`prisma migrate resolve --rolled-back %s` (this module: command=resolve resolve_as=rolled-back) "
            "if you undid it, or `--applied %s` if you completed it by hand - or fix its row in "
            "`_prisma_migrations` (finished_at NULL: set rolled_back_at, or finished_at once completed); then "
            "deploy again." % (name, name))


# P3009 (deploy and status with older CLIs): "The `NAME` migration started at <time> failed"
_PRISMA_FAILED_AT = re.compile(r"^The `([^`]+)` migration started at .* failed\s*$", re.M)


def parse_prisma(rc, output):
    """`prisma migrate status` output (stdout and stderr) -> dict(state, pending, failed, total, message).

    It exits 1 for pending, failed, diverged, unmanaged and unreachable alike: the text tells them apart."""
    sections = _prisma_sections(output)
    found = _PRISMA_FOUND.search(output)
    total = int(found.group(1)) if found else None
    if re.search(r"No migrations? found in ", output):
        total = 0
    failed = list(sections["failed"])
    failed += [name for name in _PRISMA_FAILED_AT.findall(output) if name not in failed]
    result = dict(pending=sections["pending"], failed=failed, total=total, message=None)
    codes = _PRISMA_ERROR_CODE.findall(output)
    codes += [code for code, pattern in _PRISMA_ERROR_TEXT if pattern.search(output)]
    unreachable = [code for code in codes if code in _PRISMA_UNREACHABLE]
    if unreachable:
        code = unreachable[0]
        result.update(state="error", pending=[], failed=[],
                      message="prisma migrate status: %s (%s): %s" % (
                          _PRISMA_UNREACHABLE[code], code, first_lines(error_part(output))))
        return result
    if failed or "P3009" in codes or re.search(r"migrations? ha(?:ve|s) failed", output, re.I):
        result.update(state="failed", message="failed migration(s) in the database: %s (Prisma applies no new "
                      "migration until it is resolved). %s" % (", ".join(failed) or "see stdout_tail",
                                                               resolve_instructions(failed[0] if failed else None)))
        return result
    if (re.search(r"Your local migration history and the migrations table from your database are different", output)
            or re.search(r"\bdrift(?: detected)?\b", output, re.I) or sections["db_only"]):
        extra = ""
        if sections["db_only"]:
            extra = "; applied in the database but missing locally: %s" % ", ".join(sections["db_only"])
        result.update(state="drift", message="the migration history of the database differs from the local "
                      "migrations%s" % extra)
        return result
    if re.search(r"The current database is not managed by Prisma Migrate", output):
        result.update(state="not_installed", message="the database is not managed by Prisma Migrate "
                      "(no _prisma_migrations table); baseline it")
        return result
    if sections["pending"]:
        result.update(state="pending")
        return result
    if re.search(r"Database schema is up to date", output) and rc == 0:
        result.update(state="up_to_date")
        return result
    result.update(state="error", pending=[], failed=[],
                  message="prisma migrate status exited with code %s and an output this module does not "
                  "know: %s" % (rc, first_lines(error_part(output))))
    return result


def error_part(output):
    """The output from its first `Error:` line on (the reason), else all of it."""
    index = output.find("Error:")
    return output[index:] if index >= 0 else output


def prisma_local_migrations(chdir, schema):
    schema_path = schema or os.path.join(chdir, "prisma", "schema.prisma")
    if not os.path.isabs(schema_path):
        schema_path = os.path.join(chdir, schema_path)
    folder = os.path.join(os.path.dirname(schema_path), "migrations")
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, name, "migration.sql")))
