# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the tenant_migrate module - one migration command per tenant (or per batch of tenants).

* tenants from a list or from a SQL query on the central database (through _database, no driver);
* the command is an argv template ({tenant}, {database}; {tenants}, {databases} for batches), no shell;
* a dynamic work queue of ``concurrency`` threads, each running one child process (in its own
  process group, killed as a whole at the timeout); canaries first, alone; max_failures stops new work;
  a failed batch is retried tenant by tenant so the failure is pinned on the right tenant;
* a state file (written atomically after every finished command) to follow a run and to resume it;
* an optional read-only "up to date" check of every tenant's migrations table against the migration
  files (MySQL: one client process; PostgreSQL: ``concurrency`` psql processes reading a script);
* destructive commands refused unless allowed (_destructive); env values never returned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import hashlib
import json
import os
import re
import signal
import string
import subprocess
import threading
import time

from ansible_collections.safeship.webapp.plugins.module_utils._common import (
    SafeshipError,
    check_database_name,
    iso,
    read_json,
    utc_now,
    write_json_atomic,
)
from ansible_collections.safeship.webapp.plugins.module_utils._database import (
    MysqlEngine,
    connect,
    connection_argument_spec,
)
from ansible_collections.safeship.webapp.plugins.module_utils._destructive import (
    destructive_items,
    refusal_message,
)
from ansible_collections.safeship.webapp.plugins.module_utils._migration_status import Redactor

SINGLE = ("tenant", "database")
BATCH = ("tenants", "databases")
TAIL_LINES = 20
TAIL_BYTES = 2048
KILL_GRACE = 5
_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_OK_MARK = "@@safeship-ok"
_TENANT_MARK = "@@safeship-tenant "
_MYSQL_EMPTY = "SELECT 1 FROM DUAL WHERE FALSE"


def argument_spec():
    spec = connection_argument_spec(database_required=False)
    # The connection is only needed for tenants_query and skip_up_to_date (required_if below).
    spec["engine"] = dict(type="str", choices=["postgresql", "mysql"])
    spec.update(
        tenants=dict(type="list", elements="raw"),
        tenants_query=dict(type="str"),
        database_template=dict(type="str", default="{tenant}"),
        command=dict(type="list", elements="str", required=True),
        env=dict(type="dict", default={}, no_log=True, aliases=["environment"]),
        chdir=dict(type="path"),
        concurrency=dict(type="int", default=4),
        batch_size=dict(type="int", default=1),
        batch_separator=dict(type="str", default=","),
        canary=dict(type="int", default=0),
        max_failures=dict(type="int"),
        timeout=dict(type="int"),
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


def tenants_from_list(items, database_template):
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
        tenants.append(Tenant(tenant_id, check_database_name(database, "database of tenant %s" % tenant_id)))
    return check_duplicates(tenants)


def tenants_from_rows(rows, database_template):
    tenants = []
    for row in rows:
        if not row or len(row) > 2:
            raise SafeshipError("tenants_query must return rows of (id) or (id, database); got a row of %d "
                                "columns." % len(row or ()))
        tenant_id = check_tenant_id(row[0])
        database = row[1] if len(row) == 2 and row[1] else database_template.format(tenant=tenant_id)
        tenants.append(Tenant(tenant_id, check_database_name(database, "database of tenant %s" % tenant_id)))
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


def output_tail(text, lines=TAIL_LINES, limit=TAIL_BYTES):
    kept = "\n".join((text or "").rstrip().splitlines()[-lines:])
    if len(kept) > limit:
        kept = "..." + kept[-limit:]
    return kept


# ---------------------------------------------------------------- running one command


def run_process(argv, cwd, env, timeout):
    """Run argv (own process group) -> dict(rc, output, timed_out, duration). At the timeout the whole
    group gets SIGTERM, then SIGKILL after a short grace."""
    started = time.time()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)
    except OSError as exc:
        return dict(rc=127, output="cannot run %s: %s" % (argv[0], exc.strerror or exc), timed_out=False,
                    duration=time.time() - started)
    timed_out = False
    try:
        out, _err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _killpg(proc.pid, signal.SIGTERM)
        try:
            out, _err = proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            out = b""
        _killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            try:
                more, _err = proc.communicate(timeout=KILL_GRACE)
                out = (out or b"") + (more or b"")
            except subprocess.TimeoutExpired:  # pragma: no cover - a child that left the group keeps the pipe
                proc.kill()
                proc.wait()
    return dict(rc=proc.returncode, output=(out or b"").decode("utf-8", "replace"), timed_out=timed_out,
                duration=time.time() - started)


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


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


def migration_files(chdir, paths):
    names = set()
    for path in paths:
        folder = path if os.path.isabs(path) else os.path.join(chdir, path)
        if not os.path.isdir(folder):
            raise SafeshipError("migrations_path %s is not a directory (relative paths are taken from chdir "
                                "%s)." % (folder, chdir))
        names.update(name[:-4] for name in os.listdir(folder)
                     if name.endswith(".php") and os.path.isfile(os.path.join(folder, name)))
    return sorted(names)


def mysql_check_script(databases, table):
    """One script for the mariadb/mysql client: which tenant databases have the table (T rows), then
    every applied migration of all of them in one UNION ALL (M rows)."""
    in_list = ", ".join("'%s'" % check_database_name(db) for db in databases)
    where = ("FROM information_schema.tables WHERE table_name = '%s' AND table_type = 'BASE TABLE' "
             "AND table_schema IN (%s)" % (table, in_list))
    return "\n".join([
        "SET SESSION group_concat_max_len = 1073741824;",
        "SELECT 'T', table_schema %s;" % where,
        "SELECT GROUP_CONCAT(CONCAT('SELECT ''M'', ', QUOTE(table_schema), ', `migration` FROM `', table_schema, "
        "'`.`%s`') SEPARATOR ' UNION ALL ') INTO @safeship_q %s;" % (table, where),
        "SET @safeship_q = COALESCE(@safeship_q, '%s');" % _MYSQL_EMPTY,
        "PREPARE safeship_s FROM @safeship_q;",
        "EXECUTE safeship_s;",
        "DEALLOCATE PREPARE safeship_s;",
    ]) + "\n"


def parse_mysql_check(output):
    """-> {database: [applied migrations]} for the databases that have the table."""
    applied = {}
    for line in output.splitlines():
        cells = line.split("\t")
        if cells[0] == "T" and len(cells) == 2:
            applied.setdefault(cells[1], [])
        elif cells[0] == "M" and len(cells) == 3:
            applied.setdefault(cells[1], []).append(cells[2])
    return applied


def psql_check_script(databases, table):
    lines = []
    for database in databases:
        lines.append("\\echo '%s%s'" % (_TENANT_MARK, check_database_name(database)))
        lines.append("\\connect %s" % database)
        lines.append("SELECT '%s' UNION ALL SELECT migration FROM \"%s\";" % (_OK_MARK, table))
    return "\n".join(lines) + "\n"


def parse_psql_check(output):
    """-> {database: [applied]} for the databases whose query succeeded (the ok marker was printed)."""
    found = {}
    current = None
    rows = []
    ok = False

    def flush():
        if current is not None and ok:
            found[current] = rows

    for line in output.splitlines():
        if line.startswith(_TENANT_MARK):
            flush()
            current, rows, ok = line[len(_TENANT_MARK):].strip(), [], False
        elif line == _OK_MARK:
            ok = True
        elif current is not None and line:
            rows.append(line)
    flush()
    return found


def _spawn(argv, env, data):
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            close_fds=True)
    return proc, data


def check_up_to_date(params, runner, tenants, files, concurrency, warn):
    """{tenant id: list of pending migrations} for every tenant whose check succeeded; a tenant whose
    database or table is missing (or whose check failed) is absent, so it runs."""
    table = params["migrations_table"]
    if not _TABLE.match(table or ""):
        raise SafeshipError("migrations_table %r is not a valid table name." % (table,))
    if not tenants:
        return {}
    databases = sorted(set(t.database for t in tenants))
    engine = connect(params, runner, database=params.get("database") or databases[0])
    env = runner.environ()
    applied = {}
    if isinstance(engine, MysqlEngine):
        argv = engine.client_argv(with_database=False)
        argv.append("--skip-reconnect")
        proc, data = _spawn(argv, env, mysql_check_script(databases, table))
        out, err = proc.communicate(data.encode("utf-8"))
        if proc.returncode != 0:
            warn("the up-to-date check failed (every tenant runs): %s"
                 % engine.error(err.decode("utf-8", "replace"), proc.returncode).msg)
            return {}
        applied = parse_mysql_check(out.decode("utf-8", "replace"))
    else:
        initial = params.get("database") or "postgres"
        argv = [engine.binary("psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=0"] + engine.conn_args() + [
            "-d", initial, "-f", "-"]
        groups = [databases[n::concurrency] for n in range(min(concurrency, len(databases)))]
        procs = [_spawn(argv, env, psql_check_script(group, table)) for group in groups]
        outputs = [None] * len(procs)
        errors = []

        def collect(index):
            proc, data = procs[index]
            out, err = proc.communicate(data.encode("utf-8"))
            outputs[index] = out.decode("utf-8", "replace")
            if not outputs[index]:
                # not even the first marker: psql could not start or connect to the initial database. A tenant
                # that cannot be read (no database, no table) is simply not in the output: it runs.
                errors.append(err.decode("utf-8", "replace"))

        threads = [threading.Thread(target=collect, args=(n,)) for n in range(len(procs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for output in outputs:
            applied.update(parse_psql_check(output or ""))
        if errors:
            warn("the up-to-date check failed for some tenants (they run): %s"
                 % engine.error(errors[0], None, None, initial).msg.strip())
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
    def __init__(self, module, runner, run=run_process):
        self.module = module
        self.runner = runner
        self.params = module.params
        self._run = run
        self.warnings = []
        # taken before any database connection adds PGPASSWORD & co. to the runner's environment
        self.base_env = runner.environ()

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
            raise SafeshipError("timeout must be a positive number of seconds, not %d." % p["timeout"])
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
            return tenants_from_list(p["tenants"], p["database_template"])
        engine = connect(p, self.runner)
        try:
            rows = engine.query(p["tenants_query"])
        except SafeshipError as exc:
            raise SafeshipError("tenants_query failed: %s" % exc.msg, **exc.details)
        return tenants_from_rows(rows, p["database_template"])

    # -- running one unit

    def _environment(self, unit, batch):
        env = dict(self.base_env)
        env["NO_COLOR"] = "1"
        for key, value in (self.params.get("env") or {}).items():
            env[str(key)] = render("" if value is None else str(value), unit, batch, self.params["batch_separator"])
        return env

    def run_unit(self, unit, batch):
        p = self.params
        sep = p["batch_separator"]
        argv = [render(arg, unit, batch, sep) for arg in p["command"]]
        if "{" not in p["command"][0]:
            argv[0] = self.argv0
        outcome = self._run(argv, p.get("chdir"), self._environment(unit, batch), p.get("timeout"))
        outcome["output"] = output_tail(self.masker.for_unit(unit, batch, sep)(outcome["output"]))
        return outcome

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
            files = migration_files(p["chdir"], p["migrations_path"])
            candidates = [t for t in tenants if t.id not in skipped]
            pending = check_up_to_date(p, self.runner, candidates, files, p["concurrency"], self.warn)
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
                names.append("%s (timed out after %s s)" % (r["tenant"], self.params.get("timeout")))
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
