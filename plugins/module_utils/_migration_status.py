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

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError, deprecated_aliases
from ansible_collections.safeship.webapp.plugins.module_utils._laravel import (
    laravel_paths,
    migration_files,
    parse_laravel,
)
from ansible_collections.safeship.webapp.plugins.module_utils._prisma import parse_prisma, prisma_local_migrations
from ansible_collections.safeship.webapp.plugins.module_utils._redact import Redactor
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandTimeout, quote_argv
from ansible_collections.safeship.webapp.plugins.module_utils._text import compile_regex, first_lines, tail

STATES = ("up_to_date", "pending", "failed", "not_installed", "drift", "error")
FAIL_ON = ("error", "pending", "failed", "not_installed", "drift")


def argument_spec():
    return dict(
        tool=dict(type="str", required=True, choices=["laravel", "prisma", "command"]),
        chdir=dict(type="path", required=True),
        env=dict(type="dict", default={}, no_log=True, aliases=["environment"],
                 deprecated_aliases=deprecated_aliases("environment")),
        php_binary=dict(type="str", default="php"),
        artisan_args=dict(type="list", elements="str", default=[]),
        prisma_binary=dict(type="str"),
        schema=dict(type="path"),
        command=dict(type="list", elements="str"),
        pending_regex=dict(type="str"),
        applied_regex=dict(type="str"),
        timeout=dict(type="float", default=300.0),
        fail_on=dict(type="list", elements="str", default=["error"], choices=list(FAIL_ON)),
    )


REQUIRED_IF = [("tool", "command", ("command", "pending_regex"))]


# ---------------------------------------------------------------- command


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


# ---------------------------------------------------------------- the module's action


class MigrationStatus(object):
    def __init__(self, module, runner):
        self.module = module
        self.runner = runner
        self.params = module.params
        env = dict((str(k), "" if v is None else str(v)) for k, v in (self.params.get("env") or {}).items())
        self.redact = Redactor(env.values())
        runner.update_env(NO_COLOR="1", FORCE_COLOR="0", PRISMA_HIDE_UPDATE_MESSAGE="1")
        runner.update_env(**env)

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
                raise SafeshipError("refusing to run the status command: an argument holds a value of env "
                                    "(secrets travel in the environment only).")
        try:
            rc, output, _err = self.runner.run(argv, check=False, cwd=p["chdir"], timeout=p["timeout"],
                                               merge_output=True)
            timed_out = False
        except CommandTimeout as exc:
            rc, output, timed_out = exc.rc, exc.stdout, True
        output = self.redact(output)
        failed = []
        total = None
        if timed_out:
            parsed = dict(state="error", pending=[], applied=[],
                          message="%s did not finish within %g s (timeout); it was stopped" % (
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


def run(module, runner):
    """The migration_status module's action."""
    return MigrationStatus(module, runner).run()
