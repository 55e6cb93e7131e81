# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the prisma_migrate module - the application's own Prisma CLI in a release directory.

* ``deploy``: ``prisma migrate status`` first (parse_prisma); a failed migration in the database stops
  everything before ``migrate deploy`` runs; pending ones are deployed and reported by name; a deploy that
  fails names the migration, the database error and how to resolve it;
* ``generate``, ``status`` (read-only), ``resolve`` (only a migration in a failed state; idempotent),
  ``exec`` (any subcommand, destructive ones refused unless allowed);
* DATABASE_URL and ``env`` travel in the environment only, every value (and a URL's password,
  quoted or not) masked in every returned text; each command runs in its own process group, killed
  as a whole at the timeout.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError, deprecated_aliases
from ansible_collections.safeship.webapp.plugins.module_utils._destructive import (
    destructive_items,
    refusal_message,
)
from ansible_collections.safeship.webapp.plugins.module_utils._prisma import (
    error_part,
    parse_prisma,
    prisma_local_migrations,
    resolve_instructions,
)
from ansible_collections.safeship.webapp.plugins.module_utils._redact import Redactor
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandTimeout, quote_argv
from ansible_collections.safeship.webapp.plugins.module_utils._text import first_lines, tail

COMMANDS = ("deploy", "generate", "resolve", "status", "exec")
RESOLVE_AS = ("applied", "rolled-back")
_MIGRATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
# `migrate deploy`: "  └─ 20250101000000_create_note/" under "The following migration(s) have been applied:"
_APPLIED_DIR = re.compile(u"^\\s*(?:\u2514\u2500|\\|_|`-)\\s*([^/\\s]+)/\\s*$", re.M)
# P3018 (native schema engine): "Migration name: NAME", "Database error code: 23502", "Database error:\n..."
_P3018_NAME = re.compile(r"^Migration name: (\S+)\s*$", re.M)
_P3018_DB_CODE = re.compile(r"^Database error code: (\S+)\s*$", re.M)
_P3018_DB_ERROR = re.compile(r"^Database error:\s*\n(.*?)(?:\n\s*\n|\Z)", re.M | re.S)
# through a driver adapter (engine "js"): 'with migration_name="NAME"' in the engine's span trace
_SPAN_NAME = re.compile(r'migration_name="([^"]+)"')
_SPAN_LINE = re.compile(r"^\s*(?:\d+: |with |at )\S")
_NOTHING_TO_APPLY = re.compile(r"^No pending migrations to apply\.", re.M)
_PRISMA_CODE = re.compile(r"^Error: (P\d{4})\b", re.M)
_NO_SCHEMA_ENGINE = "Could not find schema-engine binary"
_ENGINE_DOWNLOAD = re.compile(r"binaries\.prisma\.sh|Could not find (?:schema-engine|query-engine) binary")
# the `_prisma_migrations` fix that `prisma migrate resolve --rolled-back NAME` makes
_ROLLED_BACK_SQL = ("UPDATE _prisma_migrations SET rolled_back_at = CURRENT_TIMESTAMP "
                    "WHERE migration_name = '%s' AND finished_at IS NULL AND rolled_back_at IS NULL;\n")


def argument_spec():
    return dict(
        chdir=dict(type="path", required=True),
        command=dict(type="str", default="deploy", choices=list(COMMANDS)),
        prisma_binary=dict(type="path"),
        schema=dict(type="path"),
        env=dict(type="dict", default={}, no_log=True, aliases=["environment"],
                 deprecated_aliases=deprecated_aliases("environment")),
        database_url=dict(type="str", no_log=True),
        timeout=dict(type="float", default=900.0),
        resolve_migration=dict(type="str"),
        resolve_as=dict(type="str", choices=list(RESOLVE_AS)),
        prisma_args=dict(type="list", elements="str"),
        allow_destructive=dict(type="bool", default=False),
    )


REQUIRED_IF = [
    ("command", "resolve", ("resolve_migration", "resolve_as")),
    ("command", "exec", ("prisma_args",)),
]
REQUIRED_BY = {"resolve_migration": ("resolve_as",), "resolve_as": ("resolve_migration",)}


def applied_in_output(output):
    """Names `prisma migrate deploy` lists as applied."""
    index = output.find("have been applied")
    if index < 0:
        return []
    names = []
    for name in _APPLIED_DIR.findall(output[index:]):
        if name != "migrations" and name not in names:
            names.append(name)
    return names


def deploy_failure(output):
    """(failed migration or None, database error (first lines), Prisma error code or None) of a failed deploy."""
    code = _PRISMA_CODE.search(output)
    code = code.group(1) if code else None
    name = _P3018_NAME.search(output) or _SPAN_NAME.search(output)
    name = name.group(1) if name else None
    db_error = _P3018_DB_ERROR.search(output)
    if db_error:
        reason = first_lines(db_error.group(1), 3, 400)
        db_code = _P3018_DB_CODE.search(output)
        if db_code:
            reason += " (database error code %s)" % db_code.group(1)
    else:
        index = output.find("Error:")
        text = output[index + len("Error:"):] if index >= 0 else output
        kept = [line for line in text.splitlines() if line.strip() and not _SPAN_LINE.match(line)]
        reason = first_lines("\n".join(kept), 3, 400)
    return name, reason, code


class PrismaMigrate(object):
    def __init__(self, module, runner):
        self.module = module
        self.runner = runner
        self.params = module.params
        p = self.params
        env = dict((str(k), "" if v is None else str(v)) for k, v in (p.get("env") or {}).items())
        if p.get("database_url"):
            env["DATABASE_URL"] = p["database_url"]
        # every value, and the password of a URL among them (as written and decoded), is masked
        self.redact = Redactor(env.values())
        for secret in self.redact.secrets:
            runner.add_secret(secret)
        # no colours, no update check or telemetry call from a deploy
        runner.update_env(NO_COLOR="1", FORCE_COLOR="0", PRISMA_HIDE_UPDATE_MESSAGE="1", CHECKPOINT_DISABLE="1")
        runner.update_env(**env)
        self.warnings = []

    # ------------------------------------------------------------ plumbing

    def _validate(self):
        p = self.params
        chdir = p["chdir"]
        if not os.path.isdir(chdir):
            raise SafeshipError("chdir %s is not a directory: point it at the release (project) directory." % chdir)
        if p["timeout"] <= 0:
            raise SafeshipError("timeout must be a positive number of seconds, not %s." % p["timeout"])
        if p["command"] != "resolve" and (p.get("resolve_migration") or p.get("resolve_as")):
            raise SafeshipError("resolve_migration and resolve_as are for command=resolve, not %s." % p["command"])
        if p["command"] != "exec" and p.get("prisma_args"):
            raise SafeshipError("prisma_args is for command=exec, not %s." % p["command"])
        if p["command"] == "resolve" and not _MIGRATION_NAME.match(p["resolve_migration"] or ""):
            raise SafeshipError("resolve_migration %r is not a migration name (the directory name under "
                                "prisma/migrations, for example 20250301000000_note_author)." % p["resolve_migration"])
        if p["command"] == "exec" and not [arg for arg in p["prisma_args"] if arg]:
            raise SafeshipError("prisma_args must hold a Prisma subcommand and its arguments, for example "
                                "[db, push].")
        if p.get("schema") and not os.path.isfile(self._schema_path()):
            raise SafeshipError("schema %s does not exist." % self._schema_path())
        binary = self.binary()
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise SafeshipError(
                "the Prisma CLI %s was not found (or is not executable). Install the release's dependencies "
                "(npm ci) with `prisma` in `dependencies` - not `devDependencies`, which `npm prune --omit=dev` "
                "removes - or set prisma_binary." % binary)

    def binary(self):
        p = self.params
        binary = p.get("prisma_binary") or os.path.join("node_modules", ".bin", "prisma")
        return binary if os.path.isabs(binary) else os.path.join(p["chdir"], binary)

    def _schema_path(self):
        schema = self.params.get("schema")
        if not schema:
            return None
        return schema if os.path.isabs(schema) else os.path.join(self.params["chdir"], schema)

    def _schema_args(self):
        schema = self.params.get("schema")
        return ["--schema", schema] if schema else []

    def prisma(self, args, data=None, what=None):
        """Run the CLI; (rc, masked output). A timeout is an error naming the command."""
        argv = [self.binary()] + [str(arg) for arg in args]
        for arg in argv:
            if self.redact.contains_secret(arg):
                raise SafeshipError("refusing to run prisma: an argument holds the database URL or a value of env "
                                    "(secrets travel in the environment only).")
        try:
            rc, output, _err = self.runner.run(argv, data=data, check=False, cwd=self.params["chdir"],
                                               timeout=self.params["timeout"], merge_output=True)
        except CommandTimeout as exc:
            raise SafeshipError("%s did not finish within %g s (timeout); its process group was stopped."
                                % (what or quote_argv(["prisma"] + list(args)[:3]), self.params["timeout"]),
                                stdout_tail=tail(self.redact(exc.stdout)), prisma_rc=exc.rc)
        return rc, self.redact(output)

    def _hint(self, output):
        if _ENGINE_DOWNLOAD.search(output):
            return (" Prisma looked for an engine binary it could not find or download: with a prisma.config.ts "
                    "(engine \"js\" and a driver adapter) DATABASE_URL must be in the environment of every "
                    "command (database_url), or the CLI falls back to native engines.")
        return ""

    def status(self):
        """`prisma migrate status`, parsed as migration_status does, plus the applied names."""
        rc, output = self.prisma(["migrate", "status"] + self._schema_args(), what="prisma migrate status")
        parsed = parse_prisma(rc, output)
        local = prisma_local_migrations(self.params["chdir"], self.params.get("schema"))
        failed = parsed["failed"]
        if parsed["state"] in ("up_to_date", "pending", "failed", "drift"):
            applied = [name for name in local if name not in parsed["pending"] and name not in failed]
        else:
            applied = []
        pending = local if parsed["state"] == "not_installed" else parsed["pending"]
        return dict(state=parsed["state"], pending=list(pending), failed=list(failed), applied=applied,
                    message=parsed.get("message"), rc=rc, output=output)

    def _status_error(self, before, doing):
        return SafeshipError("prisma migrate status failed, so %s: %s%s" % (
            doing, before["message"], self._hint(before["output"])), state="error", prisma_rc=before["rc"],
            stdout_tail=tail(before["output"]))

    @staticmethod
    def _details(base, **values):
        details = dict(base)
        details.update(values)
        return details

    def _warn(self):
        warn = getattr(self.module, "warn", None)
        for warning in self.warnings if warn else ():
            warn(warning)

    # ------------------------------------------------------------ commands

    def run(self):
        self._validate()
        try:
            return getattr(self, "cmd_" + self.params["command"])()
        finally:
            self._warn()

    def cmd_status(self):
        st = self.status()
        result = dict(changed=False, command="status", state=st["state"], pending=st["pending"],
                      applied=st["applied"], failed_migrations=st["failed"],
                      failed_migration=st["failed"][0] if st["failed"] else None, prisma_rc=st["rc"],
                      stdout_tail=tail(st["output"]))
        if st["message"]:
            result["message"] = st["message"]
        if st["state"] == "error":
            raise SafeshipError("Migration status unknown: %s%s" % (st["message"], self._hint(st["output"])),
                                **result)
        return result

    def cmd_deploy(self):
        before = self.status()
        base = dict(command="deploy", pending=before["pending"], applied=[], failed_migration=None, error_code=None)
        if before["state"] == "error":
            raise self._status_error(before, "nothing was deployed")
        if before["state"] == "failed":
            name = before["failed"][0] if before["failed"] else None
            raise SafeshipError(
                "prisma migrate deploy not run: migration %s failed earlier in this database (it is recorded in "
                "_prisma_migrations without finished_at) and Prisma refuses new migrations until it is resolved "
                "(P3009). %s" % (", ".join(before["failed"]) or "(see stdout_tail)", resolve_instructions(name)),
                **self._details(base, state="failed", failed_migration=name, error_code="P3009",
                                prisma_rc=before["rc"], stdout_tail=tail(before["output"])))
        if before["state"] == "drift":
            self.warnings.append("the database's migration history differs from this release's: %s"
                                 % before["message"])
        if before["state"] == "not_installed" and not before["pending"]:
            # no migration in the release and none in the database: deploy would only create _prisma_migrations
            self.warnings.append(before["message"])
            return dict(base, changed=False, state=before["state"], stdout_tail=tail(before["output"]))
        if self.module.check_mode:
            if not before["pending"]:
                return dict(base, changed=False, state=before["state"], stdout_tail=tail(before["output"]))
            plan = "would apply %d migration(s): %s" % (len(before["pending"]), ", ".join(before["pending"]))
            return dict(base, changed=True, state=before["state"], stdout_tail=tail(before["output"]), message=plan)
        # `migrate deploy` runs even when the status says up to date: Prisma's status does not list a
        # migration marked rolled back, which deploy applies again; its output says what it did
        rc, output = self.prisma(["migrate", "deploy"] + self._schema_args(), what="prisma migrate deploy")
        applied = applied_in_output(output)
        if rc == 0 and not applied and _NOTHING_TO_APPLY.search(output):
            return dict(base, changed=False, state=before["state"], prisma_rc=rc, stdout_tail=tail(output))
        after = self.status()
        base["pending"] = before["pending"] + [name for name in applied if name not in before["pending"]]
        if rc == 0:
            applied = applied or [name for name in before["pending"] if name in after["applied"]]
            if after["state"] != "up_to_date":
                self.warnings.append("after the deploy the status is %s: %s" % (after["state"], after["message"]))
            return dict(base, changed=True, state=after["state"], applied=applied, prisma_rc=rc,
                        stdout_tail=tail(output))
        name, reason, code = deploy_failure(output)
        if after["failed"]:
            name = after["failed"][0]
        applied = [n for n in before["pending"] if n in after["applied"]]
        changed = bool(applied) or after["state"] == "failed"
        details = self._details(base, changed=changed, state=after["state"], applied=applied, failed_migration=name,
                                error_code=code, prisma_rc=rc, stdout_tail=tail(output))
        if name:
            msg = ("prisma migrate deploy failed: migration %s failed%s: %s. Applied before it in this run: %s. "
                   "The database's migration state is now %s. %s" % (
                       name, " (%s)" % code if code else "", reason, ", ".join(applied) or "none",
                       after["state"], resolve_instructions(name)))
        else:
            msg = "prisma migrate deploy failed (rc %s): %s.%s Migration state now: %s." % (
                rc, reason, self._hint(output), after["state"])
        raise SafeshipError(msg, **details)

    def cmd_generate(self):
        base = dict(command="generate")
        if self.module.check_mode:
            return dict(base, changed=True, message="would run prisma generate")
        rc, output = self.prisma(["generate"] + self._schema_args(), what="prisma generate")
        if rc != 0:
            raise SafeshipError("prisma generate failed (rc %s): %s%s" % (
                rc, first_lines(error_part(output)),
                self._hint(output)), prisma_rc=rc, stdout_tail=tail(output), **base)
        return dict(base, changed=True, prisma_rc=rc, stdout_tail=tail(output))

    def cmd_resolve(self):
        p = self.params
        name, how = p["resolve_migration"], p["resolve_as"]
        before = self.status()
        base = dict(command="resolve", resolve_migration=name, resolve_as=how, pending=before["pending"])
        if before["state"] == "error":
            raise self._status_error(before, "nothing was resolved")
        if name not in before["failed"]:
            return dict(base, changed=False, state=before["state"], method=None, stdout_tail=tail(before["output"]),
                        message="migration %s is not in a failed state (state %s): nothing to resolve"
                        % (name, before["state"]))
        if self.module.check_mode:
            return dict(base, changed=True, state=before["state"], method=None, stdout_tail=tail(before["output"]),
                        message="would mark migration %s as %s" % (name, how))
        method = "prisma migrate resolve"
        rc, output = self.prisma(["migrate", "resolve", "--" + how, name] + self._schema_args(),
                                 what="prisma migrate resolve")
        if rc != 0 and how == "rolled-back" and _NO_SCHEMA_ENGINE in output:
            # Prisma 6.x: `--rolled-back` wants the native schema engine even with a driver adapter (engine
            # "js"); the same update of _prisma_migrations through `prisma db execute` does what it does
            method = "_prisma_migrations"
            self.warnings.append("prisma migrate resolve --rolled-back needs the native schema engine, which "
                                 "is not installed; %s was marked rolled back in _prisma_migrations through "
                                 "prisma db execute instead" % name)
            schema = self._schema_path() or os.path.join(p["chdir"], "prisma", "schema.prisma")
            rc, output = self.prisma(["db", "execute", "--stdin", "--schema", schema], data=_ROLLED_BACK_SQL % name,
                                     what="prisma db execute")
        if rc != 0:
            raise SafeshipError("marking migration %s as %s failed (rc %s): %s%s" % (
                name, how, rc, first_lines(error_part(output)),
                self._hint(output)), prisma_rc=rc, state=before["state"], method=method, stdout_tail=tail(output),
                **base)
        after = self.status()
        if name in after["failed"]:
            raise SafeshipError("migration %s is still failed after %s." % (name, method), changed=True,
                                state=after["state"], method=method, stdout_tail=tail(after["output"]), **base)
        pending, state, message = after["pending"], after["state"], None
        if how == "rolled-back" and name not in pending and name in prisma_local_migrations(
                p["chdir"], p.get("schema")):
            # Prisma's status does not list a rolled-back migration, but the next deploy applies it again
            pending = pending + [name]
            state = "pending" if state == "up_to_date" else state
            message = "migration %s is marked rolled back; the next deploy applies it again" % name
        result = dict(base, changed=True, state=state, pending=pending, method=method, prisma_rc=rc,
                      stdout_tail=tail(output))
        if message:
            result["message"] = message
        return result

    def cmd_exec(self):
        p = self.params
        args = [str(arg) for arg in p["prisma_args"]]
        items = destructive_items(args)
        if items and not p["allow_destructive"]:
            raise SafeshipError(refusal_message(items, "prisma %s" % " ".join(args[:2]), "allow_destructive"),
                                command="exec", destructive=items)
        base = dict(command="exec", destructive=items)
        if self.module.check_mode:
            return dict(base, changed=True, message="would run prisma %s" % self.redact(quote_argv(args)))
        rc, output = self.prisma(args, what="prisma %s" % " ".join(args[:2]))
        if rc != 0:
            raise SafeshipError("prisma %s failed (rc %s): %s%s" % (
                " ".join(args[:2]), rc, first_lines(error_part(output)),
                self._hint(output)), changed=True, prisma_rc=rc, stdout_tail=tail(output), **base)
        return dict(base, changed=True, prisma_rc=rc, stdout_tail=tail(output))


def run(module, runner):
    """The prisma_migrate module's action."""
    return PrismaMigrate(module, runner).run()
