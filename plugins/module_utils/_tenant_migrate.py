# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the tenant_migrate module - one migration command per tenant (or per batch of tenants).

* tenants from a list or from a SQL query on the central database (through _database, no driver);
* the command is an argv template ({tenant}, {database}; {tenants}, {databases} for batches), no shell;
* a dynamic work queue of ``concurrency`` threads, each running one child process through the module's
  command runner (in its own process group, stopped as a whole at the timeout); canaries first, alone;
  max_failures stops new work;
  a failed batch is retried tenant by tenant so the failure is pinned on the right tenant;
* a state file (written atomically after every finished command) to follow a run and to resume it;
* an optional read-only "up to date" check of every tenant's migrations table against the migration
  files (the engine's applied_migrations, _database);
* destructive commands refused unless allowed (_destructive); env values never returned; every command
  that ran is in executed_commands.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import hashlib
import json
import os
import re
import string
import threading
import time

from ansible_collections.safeship.webapp.plugins.module_utils._common import (
    SafeshipError,
    check_database_name,
    deprecated_aliases,
    iso,
    read_json,
    utc_now,
    write_json_atomic,
)
from ansible_collections.safeship.webapp.plugins.module_utils._database import (
    ENGINES,
    check_plain_table,
    connect,
    connection_argument_spec,
)
from ansible_collections.safeship.webapp.plugins.module_utils._destructive import (
    destructive_items,
    refusal_message,
)
from ansible_collections.safeship.webapp.plugins.module_utils._laravel import migration_files
from ansible_collections.safeship.webapp.plugins.module_utils._redact import Redactor
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandTimeout
from ansible_collections.safeship.webapp.plugins.module_utils._text import tail

SINGLE = ("tenant", "database")
BATCH = ("tenants", "databases")
TAIL_LINES = 20
TAIL_BYTES = 2048
_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def argument_spec():
    spec = connection_argument_spec(database_required=False)
    # The connection is only needed for tenants_query and skip_up_to_date (required_if below).
    spec["engine"] = dict(type="str", choices=list(ENGINES))
    spec.update(
        tenants=dict(type="list", elements="raw"),
        tenants_query=dict(type="str"),
        database_template=dict(type="str", default="{tenant}"),
        command=dict(type="list", elements="str", required=True),
        env=dict(type="dict", default={}, no_log=True, aliases=["environment"],
                 deprecated_aliases=deprecated_aliases("environment")),
        chdir=dict(type="path"),
        concurrency=dict(type="int", default=4),
        batch_size=dict(type="int", default=1),
        batch_separator=dict(type="str", default=","),
        canary=dict(type="int", default=0),
        max_failures=dict(type="int"),
        timeout=dict(type="float"),
        state_file=dict(type="path"),
        rerun_all=dict(type="bool", default=False),
        skip_up_to_date=dict(type="bool", default=False),
        migrations_path=dict(type="list", elements="path", default=["database/migrations/tenant"]),
        migrations_table=dict(type="str", default="migrations"),
        allow_destructive=dict(type="bool", default=False),
    )
    return spec


MUTUALLY_EXCLUSIVE = [("tenants", "tenants_query")]
REQUIRED_ONE_OF = [("tenants", "tenants_query")]
REQUIRED_IF = [
    ("skip_up_to_date", True, ("engine", "chdir")),
]
REQUIRED_BY = {"tenants_query": ("engine", "database")}


# ---------------------------------------------------------------- tenants and templates


class Tenant(object):
    __slots__ = ("id", "database")

    def __init__(self, tenant_id, database):
        self.id = tenant_id
        self.database = database

    def __repr__(self):
        return "Tenant(%r, %r)" % (self.id, self.database)

    def __eq__(self, other):
        return isinstance(other, Tenant) and (self.id, self.database) == (other.id, other.database)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self.id, self.database))


def placeholders(template, what):
    """The placeholder names used in template (str.format syntax; '{{' and '}}' are literal braces).
    `what` names the template in errors (the caller includes the template itself when it is not secret)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SafeshipError("%s is not a valid template (%s): write a literal brace as '{{' or '}}'." % (what, exc))
    names = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion:
            raise SafeshipError("%s: a placeholder cannot have a conversion or format spec; use "
                                "{tenant}, {database}, {tenants} or {databases} as they are." % what)
        names.append(field)
    return names


def check_templates(command, env, batch_size, database_template="{tenant}"):
    """Every placeholder of command and env values must be known and fit the batch size; raise otherwise."""
    allowed = BATCH if batch_size > 1 else SINGLE
    # an env value is never repeated in a message (it may be a secret): only its key is named
    items = [("command argument %r" % arg, arg) for arg in command]
    items += [("env value of %s" % key, "" if value is None else str(value)) for key, value in sorted(env.items())]
    for what, template in items:
        for name in placeholders(template, what):
            if name in allowed:
                continue
            if name in BATCH:
                raise SafeshipError("%s uses {%s}, which exists only with batch_size > 1 (batch_size is %d); "
                                    "use {tenant} or {database}." % (what, name, batch_size))
            if name in SINGLE:
                raise SafeshipError("%s uses {%s}, but batch_size is %d: a command runs for several tenants, "
                                    "use {tenants} or {databases} (joined with batch_separator)."
                                    % (what, name, batch_size))
            raise SafeshipError("%s uses an unknown placeholder {%s}; known: %s." % (
                what, name, ", ".join("{%s}" % n for n in allowed)))
    names = placeholders(database_template, "database_template %r" % database_template)
    for name in names:
        if name != "tenant":
            raise SafeshipError("database_template %r uses {%s}; only {tenant} is known there."
                                % (database_template, name))


def render(template, tenants, batch, separator=","):
    """template with the placeholders of tenants (a list): {tenant}/{database} for one, or
    {tenants}/{databases} joined with separator in batch mode (a retried tenant alone too)."""
    if batch:
        values = dict(tenants=separator.join(t.id for t in tenants),
                      databases=separator.join(t.database for t in tenants))
    else:
        values = dict(tenant=tenants[0].id, database=tenants[0].database)
    return template.format(**values)


def check_tenant_id(tenant_id):
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise SafeshipError("tenant id %r is not valid: use letters, digits, '_', '.' and '-' (at most 128 "
                            "characters, starting with a letter or digit)." % (tenant_id,))
    return tenant_id


def check_tenant_database(database, tenant_id, engine=None):
    """A tenant's database: a name, or with engine sqlite the absolute path of its file."""
    what = "database of tenant %s" % tenant_id
    if engine == "sqlite":
        if not isinstance(database, str) or not os.path.isabs(database) or "\n" in database:
            raise SafeshipError("%s %r must be the absolute path of a SQLite file with engine sqlite."
                                % (what, database))
        return os.path.normpath(database)
    return check_database_name(database, what)


def tenants_from_list(items, database_template, engine=None):
    tenants = []
    for item in items:
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(["id", "database"]))
            if unknown or "id" not in item:
                raise SafeshipError("tenants: each entry is a tenant id or a dict with 'id' (and optionally "
                                    "'database'); got %r." % (item,))
            tenant_id = check_tenant_id(str(item["id"]) if isinstance(item["id"], int) else item["id"])
            database = item.get("database") or database_template.format(tenant=tenant_id)
        elif isinstance(item, (str, int)) and not isinstance(item, bool):
            tenant_id = check_tenant_id(str(item))
            database = database_template.format(tenant=tenant_id)
        else:
            raise SafeshipError("tenants: each entry is a tenant id or a dict with 'id' and 'database'; got %r."
                                % (item,))
        tenants.append(Tenant(tenant_id, check_tenant_database(database, tenant_id, engine)))
    return check_duplicates(tenants)


def tenants_from_rows(rows, database_template, engine=None):
    tenants = []
    for row in rows:
        if not row or len(row) > 2:
            raise SafeshipError("tenants_query must return rows of (id) or (id, database); got a row of %d "
                                "columns." % len(row or ()))
        tenant_id = check_tenant_id(row[0])
        database = row[1] if len(row) == 2 and row[1] else database_template.format(tenant=tenant_id)
        tenants.append(Tenant(tenant_id, check_tenant_database(database, tenant_id, engine)))
    return check_duplicates(tenants)


def check_duplicates(tenants):
    seen = set()
    duplicates = []
    for tenant in tenants:
        if tenant.id in seen and tenant.id not in duplicates:
            duplicates.append(tenant.id)
        seen.add(tenant.id)
    if duplicates:
        raise SafeshipError("duplicate tenant id(s): %s. Each tenant must appear once." % ", ".join(duplicates))
    return tenants


def run_key(command, env, chdir, batch_size, batch_separator, database_template):
    """What identifies 'the same run' for resuming: never a secret (env keys only)."""
    data = dict(
        command=list(command),
        env_keys=sorted(str(k) for k in env),
        chdir=os.path.realpath(chdir) if chdir else None,
        batch=batch_size > 1,
        batch_separator=batch_separator if batch_size > 1 else None,
        database_template=database_template,
    )
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:32]


# ---------------------------------------------------------------- secrets


class Masker(object):
    """Masks env values (and login_password) in returned text. A value that is a single placeholder
    ("{database}") is the tenant's own id or database, already in the results: it is not masked."""

    def __init__(self, env, extra=()):
        self.static = [str(v) for k, v in env.items() if v is not None and "{" not in str(v)]
        self.static += [s for s in extra if s]
        self.templated = [str(v) for k, v in env.items()
                          if v is not None and "{" in str(v) and not re.match(r"^\{[a-z]+\}$", str(v))]
        self._static = Redactor(self.static)

    def for_unit(self, tenants, batch, separator):
        values = list(self.static)
        for template in self.templated:
            try:
                values.append(render(template, tenants, batch, separator))
            except (KeyError, IndexError, ValueError):
                values.append(template)
        return Redactor(values)

    def __call__(self, text):
        return self._static(text)

    def contains_secret(self, text):
        return self._static.contains_secret(text)


# ---------------------------------------------------------------- the work queue


class Executor(object):
    """Runs units of tenants through run_unit(tenants, batch) -> dict(rc, output, timed_out, duration).

    Canaries run first, one at a time; a canary failure stops everything. Then a dynamic queue of
    batches is served by `concurrency` threads. A failed batch goes back to the front of the queue as
    single tenants (each run alone, rendered as a one-tenant batch); workers wait while such retries may
    still come. Once more than max_failures tenants failed, no new unit starts. on_update(executor) is
    called (under the lock) after every settled unit and whenever work starts; an OSError there is kept
    in update_error and the run goes on.
    """

    def __init__(self, run_unit, concurrency=4, batch_size=1, canary=0, max_failures=None, on_update=None):
        self.run_unit = run_unit
        self.concurrency = max(1, concurrency)
        self.batch_size = max(1, batch_size)
        self.canary = max(0, canary)
        self.max_failures = max_failures
        self.on_update = on_update
        self.lock = threading.Lock()
        # workers wait on it while the queue is empty but a running batch may still put its retries back
        self.cond = threading.Condition(self.lock)
        self.in_flight = 0
        self.update_error = None
        self.results = {}
        self.running = []
        self.failures = 0
        self.runs = 0
        self.queue = collections.deque()

    @property
    def batch(self):
        return self.batch_size > 1

    def run(self, tenants):
        tenants = list(tenants)
        canaries, rest = tenants[:self.canary], tenants[self.canary:]
        for index, tenant in enumerate(canaries):
            self._start([tenant])
            self._execute([tenant])
            if self.results[tenant.id]["status"] != "ok":
                reason = "canary %s failed" % tenant.id
                with self.lock:
                    for other in canaries[index + 1:] + rest:
                        self._not_run(other, reason)
                    self._update()
                return self.results
        for start in range(0, len(rest), self.batch_size):
            self.queue.append(rest[start:start + self.batch_size])
        workers = [threading.Thread(target=self._worker, name="tenant-migrate-%d" % n)
                   for n in range(min(self.concurrency, len(rest)))]
        for worker in workers:
            worker.daemon = True
            worker.start()
        for worker in workers:
            worker.join()
        return self.results

    def stopped(self):
        return self.max_failures is not None and self.failures > self.max_failures

    def _not_run(self, tenant, reason):
        self.results[tenant.id] = dict(status="not_run", rc=None, duration=0.0, output="", reason=reason,
                                       finished=None)

    def _start(self, unit):
        with self.lock:
            self.in_flight += 1
            self.running.extend(t.id for t in unit)
            self._update()

    def _update(self):
        if self.on_update is None:
            return
        try:
            self.on_update(self)
        except (OSError, IOError, SafeshipError) as exc:
            # progress reporting (the state file) must not abandon tenants half-way: remember, go on
            if self.update_error is None:
                self.update_error = exc

    def _worker(self):
        while True:
            with self.cond:
                while not self.queue and self.in_flight:
                    self.cond.wait()
                if not self.queue:
                    self.cond.notify_all()
                    return
                unit = self.queue.popleft()
                if self.stopped():
                    for tenant in unit:
                        self._not_run(tenant, "stopped: more than %d tenant(s) failed (max_failures)"
                                      % self.max_failures)
                    self._update()
                    continue
                self.in_flight += 1
                self.running.extend(t.id for t in unit)
                self._update()
            self._execute(unit)

    def _execute(self, unit):
        try:
            outcome = self.run_unit(unit, self.batch)
        except Exception as exc:  # a bug or an OS error must not leave the tenant unaccounted for
            outcome = dict(rc=None, output="internal error: %s" % exc, timed_out=False, duration=0.0)
        finished = iso(utc_now())
        ok = outcome["rc"] == 0 and not outcome["timed_out"]
        with self.cond:
            try:
                self._settle(unit, outcome, finished, ok)
            finally:
                self.in_flight -= 1
                self.cond.notify_all()

    def _settle(self, unit, outcome, finished, ok):
        """Under the lock: record the outcome, or put a failed batch back as single tenants."""
        self.runs += 1
        for tenant in unit:
            if tenant.id in self.running:
                self.running.remove(tenant.id)
        if len(unit) > 1 and not ok:
            # pin the failure: each tenant of the batch again, alone, before anything else
            for tenant in reversed(unit):
                single = _Retry([tenant])
                self.queue.appendleft(single)
            self._update()
            return
        status = "ok" if ok else ("timeout" if outcome["timed_out"] else "failed")
        for tenant in unit:
            result = dict(status=status, rc=outcome["rc"], duration=round(outcome["duration"], 3),
                          output=outcome["output"], finished=finished)
            if isinstance(unit, _Retry):
                result["retried"] = True
            self.results[tenant.id] = result
            if not ok:
                self.failures += 1
        self._update()


class _Retry(list):
    """A one-tenant unit retried after its batch failed."""


# ---------------------------------------------------------------- the up-to-date check


def check_up_to_date(params, runner, tenants, files, concurrency, warn):
    """{tenant id: list of pending migrations} for every tenant whose check succeeded; a tenant whose
    database or table is missing (or whose check failed) is absent, so it runs."""
    table = check_plain_table(params["migrations_table"], "migrations_table")
    if not tenants:
        return {}
    databases = sorted(set(t.database for t in tenants))
    # where the check connects first: the central database, or one that always exists
    initial = params.get("database") or {"postgresql": "postgres"}.get(params["engine"], databases[0])
    engine = connect(params, runner, database=initial)
    applied, problems = engine.applied_migrations(databases, table, concurrency)
    if problems:
        warn("the up-to-date check failed for some tenants (they run): %s" % problems[0])
    pending = {}
    for tenant in tenants:
        if tenant.database in applied:
            done = set(applied[tenant.database])
            pending[tenant.id] = [name for name in files if name not in done]
    return pending


# ---------------------------------------------------------------- the state file


def load_state(path, key, rerun_all, warn):
    """{tenant id: entry} of the tenants that were ok in the state file of the same run."""
    if not path or rerun_all or not os.path.exists(path):
        return {}
    try:
        data = read_json(path)
    except SafeshipError as exc:
        warn("state file not resumed, starting over: %s" % exc.msg)
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("tenants"), dict):
        warn("state file %s is not a tenant_migrate state file: starting over." % path)
        return {}
    if data.get("run_key") != key:
        warn("state file %s belongs to another run (a different command, env keys, chdir or batch mode): "
             "not resumed, every tenant runs." % path)
        return {}
    return dict((tid, entry) for tid, entry in data["tenants"].items()
                if isinstance(entry, dict) and entry.get("status") == "ok")


class StateFile(object):
    def __init__(self, path, key, tenants, preserved):
        self.path = path
        self.key = key
        self.order = [t.id for t in tenants]
        self.preserved = preserved
        self.started = iso(utc_now())
        self.extra = {}

    def write(self, entries, running, finished):
        """entries: {tenant id: dict(status, rc, duration, finished[, reason])} settled in this run."""
        if not self.path:
            return
        tenants = {}
        for tid in self.order:
            if tid in self.preserved:
                entry = dict(self.preserved[tid])
                entry["resumed"] = True
                tenants[tid] = entry
            elif tid in entries:
                tenants[tid] = entries[tid]
        counts = collections.Counter(entry["status"] for entry in tenants.values())
        data = dict(
            run_key=self.key,
            started=self.started,
            updated=iso(utc_now()),
            total=len(self.order),
            done=len(tenants),
            ok=counts["ok"],
            failed=counts["failed"] + counts["timeout"],
            timeout=counts["timeout"],
            skipped=counts["skipped"],
            not_run=counts["not_run"],
            running=list(running),
            tenants=tenants,
            finished=finished,
        )
        write_json_atomic(self.path, data)


# ---------------------------------------------------------------- the module's action


class TenantMigrate(object):
    def __init__(self, module, runner):
        self.module = module
        self.runner = runner
        # the database queries get a runner of their own: PGPASSWORD & co. must not reach the tenants' commands
        self.db_runner = runner.derive()
        self.params = module.params
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)
        if hasattr(self.module, "warn"):
            self.module.warn(text)

    # -- validation, before anything runs

    def _validate(self):
        p = self.params
        if not p["command"]:
            raise SafeshipError("command must be a non-empty argv list, for example "
                                "['php', 'artisan', 'tenants:migrate', '--tenants={tenant}'].")
        for option, minimum in (("concurrency", 1), ("batch_size", 1), ("canary", 0)):
            if p[option] < minimum:
                raise SafeshipError("%s must be at least %d, not %d." % (option, minimum, p[option]))
        if p.get("max_failures") is not None and p["max_failures"] < 0:
            raise SafeshipError("max_failures must be 0 or more, not %d." % p["max_failures"])
        if p.get("timeout") is not None and p["timeout"] <= 0:
            raise SafeshipError("timeout must be a positive number of seconds, not %g." % p["timeout"])
        if p["batch_size"] > 1 and not p["batch_separator"]:
            raise SafeshipError("batch_separator cannot be empty.")
        env = p.get("env") or {}
        check_templates(p["command"], env, p["batch_size"], p["database_template"])
        if not p["allow_destructive"]:
            items = destructive_items(p["command"])
            if items:
                raise SafeshipError(refusal_message(items, "the tenant migration command"))
        self.masker = Masker(env, [p.get("login_password")])
        for arg in p["command"]:
            if self.masker.contains_secret(arg):
                raise SafeshipError("refusing to run the command: one of its arguments contains the value of an "
                                    "env variable (or login_password); secrets travel in env only.")
        chdir = p.get("chdir")
        if chdir and not os.path.isdir(chdir):
            raise SafeshipError("chdir %s is not a directory: point it at the application (release) directory."
                                % chdir)
        state_file = p.get("state_file")
        if state_file:
            parent = os.path.dirname(os.path.abspath(state_file))
            if not os.path.isdir(parent):
                raise SafeshipError("the directory of state_file %s does not exist; create it first." % state_file)
            if os.path.isdir(state_file):
                raise SafeshipError("state_file %s is a directory; give a file path." % state_file)
        self.argv0 = self._resolve_program(p["command"][0], chdir)

    def _resolve_program(self, program, chdir):
        if "{" in program:
            return program
        if os.sep not in program:
            found = self.module.get_bin_path(program)
            if not found:
                raise SafeshipError("%s (the first item of command) was not found in PATH on the managed host."
                                    % program)
            return found
        path = program if os.path.isabs(program) else os.path.join(chdir or os.getcwd(), program)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise SafeshipError("%s (the first item of command) is not an executable file." % path)
        return path

    def _tenants(self):
        p = self.params
        if p.get("tenants") is not None:
            return tenants_from_list(p["tenants"], p["database_template"], p.get("engine"))
        engine = connect(p, self.db_runner)
        try:
            rows = engine.query(p["tenants_query"])
        except SafeshipError as exc:
            raise SafeshipError("tenants_query failed: %s" % exc.msg, **exc.details)
        return tenants_from_rows(rows, p["database_template"], p.get("engine"))

    # -- running one unit

    def _environment(self, unit, batch):
        """What the unit's command gets on top of the module's environment: NO_COLOR and env, rendered."""
        env = {"NO_COLOR": "1"}
        for key, value in (self.params.get("env") or {}).items():
            env[str(key)] = render("" if value is None else str(value), unit, batch, self.params["batch_separator"])
        return env

    def run_unit(self, unit, batch):
        """Run the command for one unit -> dict(rc, output, timed_out, duration); a command that cannot start
        is rc 127, one that runs past timeout is stopped with its whole process group."""
        p = self.params
        sep = p["batch_separator"]
        argv = [render(arg, unit, batch, sep) for arg in p["command"]]
        if "{" not in p["command"][0]:
            argv[0] = self.argv0
        started = time.time()
        timed_out = False
        try:
            rc, output, _err = self.runner.run(argv, check=False, cwd=p.get("chdir"), env=self._environment(unit, batch),
                                               timeout=p.get("timeout"), merge_output=True)
        except CommandTimeout as exc:
            rc, output, timed_out = exc.rc, exc.stdout, True
        except SafeshipError as exc:  # the program could not be started
            rc, output = 127, exc.msg
        output = tail(self.masker.for_unit(unit, batch, sep)(output), TAIL_LINES, TAIL_BYTES)
        return dict(rc=rc, output=output, timed_out=timed_out, duration=time.time() - started)

    # -- the whole run

    def run(self):
        p = self.params
        started = time.time()
        self._validate()
        tenants = self._tenants()
        key = run_key(p["command"], p.get("env") or {}, p.get("chdir"), p["batch_size"], p["batch_separator"],
                      p["database_template"])
        preserved = load_state(p.get("state_file"), key, p["rerun_all"], self.warn)
        preserved = dict((t.id, preserved[t.id]) for t in tenants if t.id in preserved)
        skipped = dict((tid, "ok in state file") for tid in preserved)
        pending = {}
        if p["skip_up_to_date"]:
            files = migration_files(p["migrations_path"], p["chdir"], "migrations_path")
            candidates = [t for t in tenants if t.id not in skipped]
            pending = check_up_to_date(p, self.db_runner, candidates, files, p["concurrency"], self.warn)
            for tenant in candidates:
                if tenant.id in pending and not pending[tenant.id]:
                    skipped[tenant.id] = "up to date"
        to_run = [t for t in tenants if t.id not in skipped]

        if self.module.check_mode:
            would_run = dict(status="not_run", reason="check mode: would run")
            results = [self._result(tenant, pending, skipped, would_run) for tenant in tenants]
            return self._finish(results, tenants, started, runs=0, changed=bool(to_run),
                                extra=dict(would_run=[t.id for t in to_run]))

        state = StateFile(p.get("state_file"), key, tenants, preserved)
        base = {}
        for tenant in tenants:
            if tenant.id in skipped and tenant.id not in preserved:
                base[tenant.id] = dict(status="skipped", rc=None, duration=0.0, finished=None,
                                       reason=skipped[tenant.id])

        def entries(executor):
            settled = dict(base)
            for tid, outcome in executor.results.items():
                entry = dict((k, outcome.get(k)) for k in ("status", "rc", "duration", "finished"))
                if outcome.get("reason"):
                    entry["reason"] = outcome["reason"]
                settled[tid] = entry
            return settled

        def on_update(executor):
            state.write(entries(executor), executor.running, False)

        executor = Executor(self.run_unit, concurrency=p["concurrency"], batch_size=p["batch_size"],
                            canary=p["canary"], max_failures=p.get("max_failures"), on_update=on_update)
        try:
            state.write(entries(executor), [], False)
        except (OSError, IOError) as exc:
            raise SafeshipError("cannot write state_file %s: %s (nothing ran)." % (p["state_file"], exc.strerror or exc))
        executor.run(to_run)
        try:
            state.write(entries(executor), [], True)
        except (OSError, IOError) as exc:
            executor.update_error = executor.update_error or exc
        if executor.update_error is not None:
            self.warn("the state file %s could not be written: %s" % (
                p.get("state_file"), getattr(executor.update_error, "msg", None) or executor.update_error))

        never_started = dict(status="not_run", reason="internal error: never started")
        results = [self._result(tenant, pending, skipped, executor.results.get(tenant.id) or never_started)
                   for tenant in tenants]
        return self._finish(results, tenants, started, runs=executor.runs, changed=executor.runs > 0)

    @staticmethod
    def _result(tenant, pending, skipped, outcome):
        """One entry of RV(results): skipped (with its reason), or what the run (outcome) did."""
        result = dict(tenant=tenant.id, database=tenant.database, status=None, rc=None, duration=0.0,
                      output_tail="")
        if tenant.id in pending:
            result["pending"] = pending[tenant.id]
        if tenant.id in skipped:
            result.update(status="skipped", reason=skipped[tenant.id])
            return result
        result["status"] = outcome["status"]
        for key, name in (("rc", "rc"), ("duration", "duration"), ("output", "output_tail"), ("reason", "reason")):
            if outcome.get(key) is not None:
                result[name] = outcome[key]
        if outcome.get("retried"):
            result["retried"] = True
        return result

    def _finish(self, results, tenants, started, runs, changed, extra=None):
        p = self.params
        counts = collections.Counter(r["status"] for r in results)
        summary = dict(total=len(tenants), ok=counts["ok"], failed=counts["failed"], timeout=counts["timeout"],
                       skipped=counts["skipped"], not_run=counts["not_run"], runs=runs,
                       duration=round(time.time() - started, 3), concurrency=p["concurrency"],
                       batch_size=p["batch_size"])
        failed = [r for r in results if r["status"] in ("failed", "timeout")]
        failed_ids = [r["tenant"] for r in failed]
        # on failure fail_json replaces `failed` with true: failed_tenants carries the ids either way
        result = dict(changed=changed, results=results, summary=summary, failed=failed_ids,
                      failed_tenants=failed_ids, state_file=p.get("state_file"))
        result.update(extra or {})
        if failed and not self.module.check_mode:
            raise SafeshipError(self._failure_message(failed, results, len(tenants)), **result)
        return result

    def _failure_message(self, failed, results, total):
        names = []
        for r in failed[:10]:
            if r["status"] == "timeout":
                names.append("%s (timed out after %g s)" % (r["tenant"], self.params["timeout"]))
            else:
                names.append("%s (exit %s)" % (r["tenant"], r["rc"]))
        if len(failed) > 10:
            names.append("and %d more" % (len(failed) - 10))
        msg = "tenant migrations failed for %d of %d tenants: %s" % (len(failed), total, ", ".join(names))
        not_run = [r for r in results if r["status"] == "not_run"]
        if not_run:
            msg += "; %d not run (%s)" % (len(not_run), not_run[0].get("reason"))
        msg += ". See results for each tenant's output_tail; fix them and run again (with state_file, only the " \
               "tenants that did not succeed run)."
        return self.masker(msg)


def run(module, runner):
    """The tenant_migrate module's action."""
    return TenantMigrate(module, runner).run()
