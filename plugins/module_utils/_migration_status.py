# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the migration_status module - which migrations of an application are applied or pending.

Read-only: runs one status command (``php artisan migrate:status``, ``prisma migrate status`` or a
given argv) with LANG=C, parses its output and reports a state. Secrets travel in the environment
only; every environment value is masked in what is returned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import signal
import subprocess

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._runner import quote_argv

STATES = ("up_to_date", "pending", "failed", "not_installed", "drift", "error")
FAIL_ON = ("error", "pending", "failed", "not_installed", "drift")
MASK = "********"
_TAIL_LINES = 40
_MESSAGE_LINES = 5


def argument_spec():
    return dict(
        tool=dict(type="str", required=True, choices=["laravel", "prisma", "command"]),
        chdir=dict(type="path", required=True),
        environment=dict(type="dict", default={}, no_log=True),
        php_binary=dict(type="str", default="php"),
        artisan_args=dict(type="list", elements="str", default=[]),
        prisma_binary=dict(type="str"),
        schema=dict(type="path"),
        command=dict(type="list", elements="str"),
        pending_regex=dict(type="str"),
        applied_regex=dict(type="str"),
        timeout=dict(type="int", default=300),
        fail_on=dict(type="list", elements="str", default=["error"], choices=list(FAIL_ON)),
    )


REQUIRED_IF = [("tool", "command", ("command", "pending_regex"))]


# ---------------------------------------------------------------- secrets


class Redactor(object):
    """Masks every environment value (and the password part of URLs among them), longest first."""

    _URL_PASSWORD = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*:([^@/]+)@")

    def __init__(self, values):
        secrets = set()
        for value in values:
            text = "" if value is None else str(value)
            if not text:
                continue
            secrets.add(text)
            match = self._URL_PASSWORD.match(text)
            if match:
                secrets.add(match.group(1))
        self.secrets = sorted(secrets, key=len, reverse=True)

    def __call__(self, text):
        text = text or ""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def contains_secret(self, text):
        return any(secret in text for secret in self.secrets)


def tail(text, lines=_TAIL_LINES):
    kept = (text or "").rstrip().splitlines()
    return "\n".join(kept[-lines:])


def first_lines(text, lines=_MESSAGE_LINES, width=240):
    kept = [line.strip() for line in (text or "").splitlines() if line.strip()]
    kept = [line if len(line) <= width else line[:width] + "..." for line in kept[:lines]]
    return " / ".join(kept)


# ---------------------------------------------------------------- Laravel


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


def migration_files(paths):
    names = []
    for path in paths:
        if os.path.isfile(path) and path.endswith(".php"):
            names.append(os.path.basename(path)[:-4])
        elif os.path.isdir(path):
            names.extend(name[:-4] for name in os.listdir(path)
                         if name.endswith(".php") and os.path.isfile(os.path.join(path, name)))
    return sorted(set(names))


# ---------------------------------------------------------------- Prisma


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
                          _PRISMA_UNREACHABLE[code], code, first_lines(_from_error(output))))
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
                  "know: %s" % (rc, first_lines(_from_error(output))))
    return result


def _from_error(output):
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


# ---------------------------------------------------------------- command


def compile_regex(pattern, option):
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SafeshipError("%s is not a valid regular expression (%s): %s" % (option, exc, pattern))


def _match_name(regex, line):
    match = regex.search(line)
    if not match:
        return None
    if "name" in regex.groupindex:
        return match.group("name")
    if regex.groups:
        return match.group(1)
    return line.strip()


def parse_command(rc, output, pending_regex, applied_regex=None):
    pending, applied = [], []
    for line in output.splitlines():
        name = _match_name(pending_regex, line)
        if name:
            pending.append(name)
            continue
        if applied_regex is not None:
            name = _match_name(applied_regex, line)
            if name:
                applied.append(name)
    if rc != 0:
        return dict(state="error", pending=[], applied=[],
                    message="the status command exited with code %s: %s" % (rc, first_lines(output)))
    return dict(state="pending" if pending else "up_to_date", pending=pending, applied=applied, message=None)


# ---------------------------------------------------------------- running


def run_with_timeout(argv, cwd, env, timeout):
    """(rc, combined output, timed_out). The command runs in its own session; at the timeout the whole
    group is killed."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)
    except OSError as exc:
        raise SafeshipError("cannot run %s: %s" % (argv[0], exc.strerror or exc))
    try:
        out, _err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, _err = proc.communicate()
        timed_out = True
    return proc.returncode, out.decode("utf-8", "replace"), timed_out


class MigrationStatus(object):
    def __init__(self, module, runner, run=run_with_timeout):
        self.module = module
        self.runner = runner
        self.params = module.params
        self._run = run
        environment = self.params.get("environment") or {}
        self.redact = Redactor(environment.values())
        runner.update_env(NO_COLOR="1", FORCE_COLOR="0", PRISMA_HIDE_UPDATE_MESSAGE="1")
        runner.update_env(**dict((str(k), "" if v is None else str(v)) for k, v in environment.items()))

    def _validate(self):
        p = self.params
        chdir = p["chdir"]
        if not os.path.isdir(chdir):
            raise SafeshipError("chdir %s is not a directory: point it at the application (release) directory."
                                % chdir)
        if p["timeout"] <= 0:
            raise SafeshipError("timeout must be a positive number of seconds, not %s." % p["timeout"])
        if p["tool"] == "laravel" and not os.path.isfile(os.path.join(chdir, "artisan")):
            raise SafeshipError("%s has no artisan file: chdir must be the Laravel application directory." % chdir)

    def _argv(self):
        p = self.params
        chdir = p["chdir"]
        if p["tool"] == "laravel":
            php = p["php_binary"]
            if os.sep not in php:
                php = self.runner.find_binary(php, package="PHP (the php-cli package)")
            return [php, "artisan", "migrate:status", "--no-ansi", "--no-interaction"] + list(p["artisan_args"])
        if p["tool"] == "prisma":
            binary = p.get("prisma_binary")
            if binary:
                prefix = [binary if os.path.isabs(binary) or os.sep not in binary else os.path.join(chdir, binary)]
            else:
                local = os.path.join(chdir, "node_modules", ".bin", "prisma")
                if os.path.isfile(local) and os.access(local, os.X_OK):
                    prefix = [local]
                else:
                    prefix = [self.runner.find_binary("npx", package="Node.js (npm)"), "--no-install", "prisma"]
            argv = prefix + ["migrate", "status"]
            if p.get("schema"):
                argv += ["--schema", p["schema"]]
            return argv
        return list(p["command"])

    def run(self):
        p = self.params
        self._validate()
        pending_regex = applied_regex = None
        if p["tool"] == "command":
            if not p["command"]:
                raise SafeshipError("command must be a non-empty argv list when tool=command.")
            pending_regex = compile_regex(p["pending_regex"], "pending_regex")
            if p.get("applied_regex"):
                applied_regex = compile_regex(p["applied_regex"], "applied_regex")
        argv = [str(arg) for arg in self._argv()]
        for arg in argv:
            if self.redact.contains_secret(arg):
                raise SafeshipError("refusing to run the status command: an argument holds a value of "
                                    "environment (secrets travel in the environment only).")
        self.runner.executed_commands.append(quote_argv(argv))
        rc, output, timed_out = self._run(argv, p["chdir"], self.runner.environ(), p["timeout"])
        output = self.redact(output)
        failed = []
        total = None
        if timed_out:
            parsed = dict(state="error", pending=[], applied=[],
                          message="%s did not finish within %s s (timeout); it was killed" % (
                              quote_argv(argv[:4]), p["timeout"]))
        elif p["tool"] == "laravel":
            parsed = parse_laravel(rc, output)
            if parsed["pending"] is None:
                parsed["pending"] = migration_files(laravel_paths(p["chdir"], p["artisan_args"]))
        elif p["tool"] == "prisma":
            parsed = parse_prisma(rc, output)
            failed = parsed["failed"]
            local = prisma_local_migrations(p["chdir"], p.get("schema"))
            total = parsed["total"] if parsed["total"] is not None else len(local)
            if parsed["state"] in ("up_to_date", "pending", "failed"):
                parsed["applied"] = [name for name in local if name not in parsed["pending"] and name not in failed]
            else:
                parsed["applied"] = []
            if parsed["state"] == "not_installed":
                parsed["pending"] = local
        else:
            parsed = parse_command(rc, output, pending_regex, applied_regex)
        pending = [self.redact(name) for name in parsed["pending"]]
        applied = [self.redact(name) for name in parsed["applied"]]
        if total is None:
            total = len(pending) + len(applied) + len(failed)
        result = dict(
            changed=False,
            state=parsed["state"],
            tool=p["tool"],
            # not `rc` nor `failed`: Ansible fails a task whose result has a non-zero rc or a true `failed`,
            # and `migrate status` exits 1 for pending migrations
            status_rc=rc,
            pending=pending,
            applied=applied,
            failed_migrations=failed,
            counts=dict(pending=len(pending), applied=len(applied), failed=len(failed), total=total),
            stdout_tail=tail(output),
        )
        if parsed.get("message"):
            result["message"] = self.redact(parsed["message"])
        if result["state"] in p["fail_on"]:
            raise SafeshipError(self._failure(result), **result)
        return result

    @staticmethod
    def _failure(result):
        state = result["state"]
        if state == "error":
            return "Migration status unknown: %s" % result["message"]
        if state == "pending":
            return "%d migration(s) pending: %s" % (len(result["pending"]), ", ".join(result["pending"]))
        if state == "failed":
            return "Failed migration(s): %s" % (result.get("message") or ", ".join(result["failed_migrations"]))
        if state == "not_installed":
            return "Migrations are not installed (%s); %d migration(s) pending." % (
                result.get("message") or "no migrations table", len(result["pending"]))
        return "Migration history drift: %s" % result.get("message")
