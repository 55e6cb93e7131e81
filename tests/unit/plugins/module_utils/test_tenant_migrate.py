"""tenant_migrate logic without processes: placeholders, tenants, run_key, the work queue (canary, batches and
their retry, max_failures, timeouts) with a fake runner, the state file, the up-to-date check's scripts and
parsers, and the shaping of results and messages."""

import json
import os
import threading
import time

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _laravel
from ansible_collections.safeship.webapp.plugins.module_utils import _tenant_migrate as tm
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandTimeout

from .fake_module import FakeModule, ScriptedRunner

T = tm.Tenant


def tenants(*ids):
    return [T(i, "db_" + i) for i in ids]


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize("command,env,batch_size,message", [
    (["x", "{tenants}"], {}, 1, "uses {tenants}, which exists only with batch_size > 1"),
    (["x", "{databases}"], {}, 1, "exists only with batch_size > 1"),
    (["x", "{tenant}"], {}, 5, "uses {tenant}, but batch_size is 5"),
    (["x", "--db={database}"], {}, 2, "use {tenants} or {databases}"),
    (["x", "{tenantt}"], {}, 1, "unknown placeholder {tenantt}; known: {tenant}, {database}"),
    (["x", "{tenant.id}"], {}, 1, "unknown placeholder {tenant.id}"),
    (["x", "{0}"], {}, 1, "unknown placeholder {0}"),
    (["x", "{tenant!r}"], {}, 1, "cannot have a conversion or format spec"),
    (["x", "{tenant:>5}"], {}, 1, "cannot have a conversion or format spec"),
    (["x", "{tenant"], {}, 1, "not a valid template"),
    (["x"], {"DB": "{nope}"}, 1, "env value of DB uses an unknown placeholder {nope}"),
    (["x"], {"DB": "{tenant}"}, 3, "env value of DB uses {tenant}, but batch_size is 3"),
])
def test_bad_placeholders(command, env, batch_size, message):
    with pytest.raises(SafeshipError) as err:
        tm.check_templates(command, env, batch_size)
    assert message in err.value.msg


def test_env_values_are_not_repeated_in_errors():
    with pytest.raises(SafeshipError) as err:
        tm.check_templates(["x"], {"DB_PASSWORD": "pw-{oops}-secret"}, 1)
    assert "secret" not in err.value.msg and "DB_PASSWORD" in err.value.msg


def test_good_placeholders_and_literal_braces():
    tm.check_templates(["x", "{tenant}", "{database}", "{{json}}"], {"A": "{database}", "B": 5, "C": None}, 1)
    tm.check_templates(["x", "--tenants={tenants}"], {"DBS": "{databases}"}, 2)
    with pytest.raises(SafeshipError):
        tm.check_templates(["x"], {}, 1, database_template="{tenants}")


def test_render():
    one = tenants("a")
    assert tm.render("--tenants={tenant}", one, False) == "--tenants=a"
    assert tm.render("{database}", one, False) == "db_a"
    assert tm.render("{{x}}-{tenant}", one, False) == "{x}-a"
    assert tm.render("--tenants={tenants}", tenants("a", "b", "c"), True) == "--tenants=a,b,c"
    assert tm.render("{databases}", tenants("a", "b"), True, " ") == "db_a db_b"
    # a tenant retried alone after its batch failed
    assert tm.render("--tenants={tenants}", one, True) == "--tenants=a"


def test_tenants_from_list_and_rows():
    got = tm.tenants_from_list(["a", {"id": "b", "database": "other"}, {"id": "c"}, 7], "tenant_{tenant}")
    assert got == [T("a", "tenant_a"), T("b", "other"), T("c", "tenant_c"), T("7", "tenant_7")]
    got = tm.tenants_from_rows([["a"], ["b", "db_b"], ["c", ""]], "{tenant}")
    assert got == [T("a", "a"), T("b", "db_b"), T("c", "c")]


@pytest.mark.parametrize("items,message", [
    (["a", "b", "a", "b", "a"], "duplicate tenant id(s): a, b"),
    ([{"id": "a", "db": "x"}], "a dict with 'id'"),
    ([{"database": "x"}], "a dict with 'id'"),
    ([["a"]], "each entry is a tenant id"),
    ([True], "each entry is a tenant id"),
    (["-rf"], "tenant id '-rf' is not valid"),
    (["a;b"], "tenant id 'a;b' is not valid"),
    ([{"id": "a", "database": "x y"}], "database of tenant a 'x y' is not a valid name"),
])
def test_bad_tenants(items, message):
    with pytest.raises(SafeshipError) as err:
        tm.tenants_from_list(items, "{tenant}")
    assert message in err.value.msg


def test_bad_rows():
    with pytest.raises(SafeshipError) as err:
        tm.tenants_from_rows([["a", "b", "c"]], "{tenant}")
    assert "rows of (id) or (id, database)" in err.value.msg
    with pytest.raises(SafeshipError) as err:
        tm.tenants_from_rows([["a", "x"], ["a", "y"]], "{tenant}")
    assert "duplicate" in err.value.msg


def test_run_key(tmp_path):
    release = tmp_path / "releases" / "1"
    release.mkdir(parents=True)
    link = tmp_path / "current"
    link.symlink_to(release)
    base = tm.run_key(["php", "artisan", "x", "{tenant}"], {"DB_PASSWORD": "one"}, str(release), 1, ",", "{tenant}")
    # the same run: a symlink to the same release, another password value
    assert tm.run_key(["php", "artisan", "x", "{tenant}"], {"DB_PASSWORD": "two"}, str(link), 1, ",", "{tenant}") == base
    assert len(base) == 32 and "one" not in base
    others = [
        tm.run_key(["php", "artisan", "y", "{tenant}"], {"DB_PASSWORD": "one"}, str(release), 1, ",", "{tenant}"),
        tm.run_key(["php", "artisan", "x", "{tenant}"], {"DB_PASS": "one"}, str(release), 1, ",", "{tenant}"),
        tm.run_key(["php", "artisan", "x", "{tenant}"], {"DB_PASSWORD": "one"}, str(tmp_path), 1, ",", "{tenant}"),
        tm.run_key(["php", "artisan", "x", "{tenant}"], {"DB_PASSWORD": "one"}, str(release), 3, ",", "{tenant}"),
        tm.run_key(["php", "artisan", "x", "{tenant}"], {"DB_PASSWORD": "one"}, str(release), 1, ",", "t_{tenant}"),
    ]
    assert base not in others and len(set(others)) == len(others)
    # within batch mode the batch size itself does not matter, the separator does
    assert tm.run_key(["x", "{tenants}"], {}, None, 3, ",", "{tenant}") == tm.run_key(["x", "{tenants}"], {}, None, 9,
                                                                                      ",", "{tenant}")
    assert tm.run_key(["x", "{tenants}"], {}, None, 3, ",", "{tenant}") != tm.run_key(["x", "{tenants}"], {}, None, 3,
                                                                                      " ", "{tenant}")


# ---------------------------------------------------------------- the work queue


class FakeRunner(object):
    """run_unit stand-in: outcome per tenant id from `fail` (rc) / `hang` (timeout); records every call."""

    def __init__(self, fail=(), hang=(), delay=0.0, delays=None, raise_for=()):
        self.fail = dict((t, 1) for t in fail) if not isinstance(fail, dict) else fail
        self.hang = set(hang)
        self.delay = delay
        self.delays = delays or {}
        self.raise_for = set(raise_for)
        self.calls = []
        self.done = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def __call__(self, unit, batch):
        ids = [t.id for t in unit]
        with self.lock:
            self.calls.append((ids, batch))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(max([self.delay] + [self.delays.get(i, 0) for i in ids]))
            if self.raise_for & set(ids):
                raise OSError("boom")
            if self.hang & set(ids):
                return dict(rc=-15, output="killed", timed_out=True, duration=0.01)
            failing = [i for i in ids if i in self.fail]
            if failing:
                return dict(rc=self.fail[failing[0]], output="failed: %s" % failing, timed_out=False, duration=0.01)
            return dict(rc=0, output="ok %s" % ",".join(ids), timed_out=False, duration=0.01)
        finally:
            with self.lock:
                self.active -= 1
                self.done.extend(ids)


def run_executor(runner, ids, **kwargs):
    executor = tm.Executor(runner, **kwargs)
    results = executor.run(tenants(*ids))
    return executor, dict((i, results[i]["status"]) for i in ids), results


IDS = ["t%02d" % n for n in range(1, 11)]


def test_every_tenant_once_with_bounded_concurrency():
    runner = FakeRunner(delay=0.02)
    executor, status, _results = run_executor(runner, IDS, concurrency=3)
    assert status == dict((i, "ok") for i in IDS)
    assert sorted(ids[0] for ids, _b in runner.calls) == IDS
    assert runner.max_active == 3 and executor.runs == 10


def test_dynamic_queue_a_slow_tenant_does_not_hold_back_the_others():
    # t01 is slow; with fixed chunks of 5, t02-t05 would wait behind it. Here the other worker takes them all.
    runner = FakeRunner(delays={"t01": 1.0}, delay=0.01)
    _executor, status, _results = run_executor(runner, IDS, concurrency=2)
    assert set(status.values()) == {"ok"}
    assert runner.calls[0][0] == ["t01"] and len(runner.calls) == 10
    # t01 finished last: the other worker did every other tenant meanwhile
    assert runner.done == IDS[1:] + ["t01"]


def test_failures_and_timeouts_are_per_tenant():
    runner = FakeRunner(fail={"t03": 2}, hang=["t05"])
    _executor, status, results = run_executor(runner, IDS, concurrency=4)
    assert status["t03"] == "failed" and results["t03"]["rc"] == 2
    assert status["t05"] == "timeout"
    assert [i for i in IDS if status[i] == "ok"] == [i for i in IDS if i not in ("t03", "t05")]


def test_an_exception_in_the_runner_fails_only_that_tenant():
    runner = FakeRunner(raise_for=["t02"])
    _executor, status, results = run_executor(runner, IDS[:4], concurrency=2)
    assert status == dict(t01="ok", t02="failed", t03="ok", t04="ok")
    assert "internal error: boom" in results["t02"]["output"]


def test_batches_and_the_retry_of_a_failed_batch():
    runner = FakeRunner(fail=["t07"])
    executor, status, results = run_executor(runner, IDS, concurrency=1, batch_size=4)
    expected = dict((i, "ok") for i in IDS)
    expected["t07"] = "failed"
    assert status == expected
    assert runner.calls == [
        (["t01", "t02", "t03", "t04"], True),
        (["t05", "t06", "t07", "t08"], True),
        # the failed batch, tenant by tenant, before the next batch
        (["t05"], True), (["t06"], True), (["t07"], True), (["t08"], True),
        (["t09", "t10"], True),
    ]
    assert executor.runs == 7
    assert [i for i in IDS if results[i].get("retried")] == ["t05", "t06", "t07", "t08"]
    assert executor.failures == 1


def test_canary_failure_stops_everything():
    runner = FakeRunner(fail=["t02"])
    executor, status, results = run_executor(runner, IDS, concurrency=4, canary=3, batch_size=2)
    assert status["t01"] == "ok" and status["t02"] == "failed"
    assert all(status[i] == "not_run" and results[i]["reason"] == "canary t02 failed" for i in IDS[2:])
    # canaries run alone, one at a time, rendered as one-tenant batches
    assert runner.calls == [(["t01"], True), (["t02"], True)] and runner.max_active == 1
    assert executor.runs == 2


def test_canaries_first_then_the_pool():
    runner = FakeRunner(delay=0.01)
    _executor, status, _results = run_executor(runner, IDS, concurrency=4, canary=2)
    assert set(status.values()) == {"ok"}
    assert [c[0] for c in runner.calls[:2]] == [["t01"], ["t02"]]
    assert runner.max_active == 4


def test_max_failures_starts_no_new_work():
    runner = FakeRunner(fail=["t02", "t03", "t04"])
    executor, status, results = run_executor(runner, IDS, concurrency=1, max_failures=1)
    assert [status[i] for i in IDS] == ["ok", "failed", "failed"] + ["not_run"] * 7
    assert results["t04"]["reason"] == "stopped: more than 1 tenant(s) failed (max_failures)"
    assert executor.runs == 3


def test_max_failures_zero_stops_at_the_first():
    runner = FakeRunner(fail=["t01"])
    _executor, status, _results = run_executor(runner, IDS, concurrency=1, max_failures=0)
    assert status["t01"] == "failed" and set(status[i] for i in IDS[1:]) == {"not_run"}


def test_on_update_sees_running_tenants_and_progress():
    seen = []
    runner = FakeRunner(delay=0.01)

    def on_update(executor):
        seen.append((len(executor.results), list(executor.running)))

    executor = tm.Executor(runner, concurrency=2, on_update=on_update)
    executor.run(tenants(*IDS))
    assert seen[-1] == (10, [])
    assert max(len(running) for _done, running in seen) == 2
    done = [d for d, _r in seen]
    assert done == sorted(done)


def test_empty_run():
    executor = tm.Executor(FakeRunner(), concurrency=4)
    assert executor.run([]) == {} and executor.runs == 0


# ---------------------------------------------------------------- masking and tails


def test_masker():
    env = {"DB_PASSWORD": "pw-secret", "DB_DATABASE": "{database}", "URL": "mysql://u:urlpw@h/{database}",
           "TENANT_DB": "tenant_{tenant}"}
    masker = tm.Masker(env, ["login-pw", None])
    one = masker.for_unit(tenants("a"), False, ",")
    text = one("pw-secret login-pw mysql://u:urlpw@h/db_a db_a tenant_a urlpw")
    assert text == "******** ******** ******** db_a ******** ********"
    assert masker("x pw-secret") == "x ********"
    assert masker.contains_secret("--password=login-pw") and not masker.contains_secret("{database}")


def test_migration_files(tmp_path):
    folder = tmp_path / "database" / "migrations" / "tenant"
    folder.mkdir(parents=True)
    for name in ("2020_b.php", "2020_a.php", "README.md"):
        (folder / name).write_text("")
    (folder / "sub.php").mkdir()
    assert _laravel.migration_files(["database/migrations/tenant"], str(tmp_path), "migrations_path") == [
        "2020_a", "2020_b"]
    with pytest.raises(SafeshipError) as err:
        _laravel.migration_files(["nope"], str(tmp_path), "migrations_path")
    assert err.value.msg == "migrations_path %s is not a directory (relative paths are taken from chdir %s)." % (
        tmp_path / "nope", tmp_path)
    # without an option to blame, what is not there is skipped (migration_status lists what it finds)
    assert _laravel.migration_files([str(folder / "2020_a.php"), str(tmp_path / "nope")]) == ["2020_a"]


# ---------------------------------------------------------------- the state file


def test_state_file_written_and_resumed(tmp_path):
    path = str(tmp_path / "state.json")
    state = tm.StateFile(path, "key1", tenants("a", "b", "c"), {})
    state.write({"a": dict(status="ok", rc=0, duration=0.1, finished="T"),
                 "b": dict(status="timeout", rc=-9, duration=5.0, finished="T")}, ["c"], False)
    data = json.load(open(path))
    assert (data["total"], data["done"], data["ok"], data["failed"], data["timeout"]) == (3, 2, 1, 1, 1)
    assert data["running"] == ["c"] and data["finished"] is False and data["run_key"] == "key1"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"

    warnings = []
    assert list(tm.load_state(path, "key1", False, warnings.append)) == ["a"]
    assert warnings == []
    assert tm.load_state(path, "key2", False, warnings.append) == {}
    assert "belongs to another run" in warnings[-1]
    assert tm.load_state(path, "key1", True, warnings.append) == {}
    assert tm.load_state(str(tmp_path / "missing.json"), "key1", False, warnings.append) == {}
    (tmp_path / "bad.json").write_text("{not json")
    assert tm.load_state(str(tmp_path / "bad.json"), "key1", False, warnings.append) == {}
    assert "not valid JSON" in warnings[-1]

    # a resumed tenant keeps its entry, marked resumed, and counts as ok and done
    resumed = tm.StateFile(path, "key1", tenants("a", "b", "c"), tm.load_state(path, "key1", False, warnings.append))
    resumed.write({"b": dict(status="ok", rc=0, duration=1.0, finished="T2")}, [], True)
    data = json.load(open(path))
    assert data["tenants"]["a"]["resumed"] is True and data["ok"] == 2 and data["done"] == 2


# ---------------------------------------------------------------- the whole action with a fake process runner


def params(**values):
    spec = tm.argument_spec()
    result = dict((name, option.get("default")) for name, option in spec.items())
    result.update(values)
    return result


class FakeProcesses(object):
    """The tenants' commands, as the scripted runner's answer: a tenant in fail exits 1, one in slow times out."""

    def __init__(self, fail=(), slow=()):
        self.fail = set(fail)
        self.slow = set(slow)
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, call):
        argv, env = call["argv"], call["env"]
        assert call["merge_output"] is True
        with self.lock:
            self.calls.append((argv, call["cwd"], dict((k, env[k]) for k in ("DB_DATABASE", "DB_PASSWORD", "PGPASSWORD")
                                                       if k in env)))
        tenant = argv[-1].split("=")[-1]
        if tenant in self.slow:
            return CommandTimeout(argv, call["timeout"], -15, "tenant %s started (password %s)"
                                  % (tenant, env.get("DB_PASSWORD")))
        if tenant in self.fail:
            return 1, "tenant %s: password %s rejected" % (tenant, env.get("DB_PASSWORD"))
        return 0, "migrated %s" % tenant


def action(check_mode=False, fail=(), slow=(), outputs=None, **values):
    module = FakeModule(params(**values), check_mode=check_mode, outputs=outputs)
    processes = FakeProcesses(fail, slow)
    return tm.TenantMigrate(module, ScriptedRunner(module, [processes])), processes


ARGS = dict(tenants=["a", "b", "c"], database_template="tenant_{tenant}",
            command=["php", "artisan", "tenants:migrate", "--tenants={tenant}"],
            env={"DB_DATABASE": "{database}", "DB_PASSWORD": "pw-123"})


def test_action_runs_every_tenant_with_rendered_argv_and_env():
    migrate, processes = action(**ARGS)
    result = migrate.run()
    assert result["changed"] is True and result["failed"] == [] and result["failed_tenants"] == []
    assert [r["status"] for r in result["results"]] == ["ok", "ok", "ok"]
    assert sorted(processes.calls) == [
        (["/usr/bin/php", "artisan", "tenants:migrate", "--tenants=%s" % t], None,
         {"DB_DATABASE": "tenant_%s" % t, "DB_PASSWORD": "pw-123"}) for t in "abc"]
    assert result["summary"] == dict(total=3, ok=3, failed=0, timeout=0, skipped=0, not_run=0, runs=3,
                                     duration=result["summary"]["duration"], concurrency=4, batch_size=1)
    first = result["results"][0]
    assert first.pop("duration") >= 0
    assert first == dict(tenant="a", database="tenant_a", status="ok", rc=0, output_tail="migrated a")
    # every command that ran is returned, in the order it started
    assert sorted(migrate.runner.executed_commands) == [
        "/usr/bin/php artisan tenants:migrate --tenants=%s" % t for t in "abc"]


def test_action_failure_names_tenants_and_masks_secrets():
    migrate, _processes = action(fail=["b"], **ARGS)
    with pytest.raises(SafeshipError) as err:
        migrate.run()
    assert err.value.msg.startswith("tenant migrations failed for 1 of 3 tenants: b (exit 1).")
    details = err.value.details
    assert details["changed"] is True and details["failed"] == ["b"] and details["failed_tenants"] == ["b"]
    assert [r["status"] for r in details["results"]] == ["ok", "failed", "ok"]
    assert details["results"][1]["output_tail"] == "tenant b: password ******** rejected"
    assert "pw-123" not in json.dumps(details)


def test_action_check_mode_runs_nothing():
    migrate, processes = action(check_mode=True, **ARGS)
    result = migrate.run()
    assert processes.calls == []
    assert result["changed"] is True and result["would_run"] == ["a", "b", "c"]
    assert set((r["status"], r["reason"]) for r in result["results"]) == {("not_run", "check mode: would run")}


def test_action_resumes_from_the_state_file(tmp_path):
    state = str(tmp_path / "state.json")
    migrate, _processes = action(fail=["b"], state_file=state, **ARGS)
    with pytest.raises(SafeshipError):
        migrate.run()
    migrate, processes = action(state_file=state, **ARGS)
    result = migrate.run()
    assert [argv[-1] for argv, _cwd, _env in processes.calls] == ["--tenants=b"]
    assert [(r["status"], r.get("reason")) for r in result["results"]] == [
        ("skipped", "ok in state file"), ("ok", None), ("skipped", "ok in state file")]
    # check mode on the finished state: nothing would run
    migrate, processes = action(check_mode=True, state_file=state, **ARGS)
    result = migrate.run()
    assert result["changed"] is False and result["would_run"] == [] and processes.calls == []


@pytest.mark.parametrize("values,message", [
    (dict(command=["php", "artisan", "migrate:fresh"]), "'migrate:fresh' destroys data"),
    (dict(command=["php", "x", "pw-123"]), "secrets travel in env only"),
    (dict(concurrency=0), "concurrency must be at least 1"),
    (dict(batch_size=0), "batch_size must be at least 1"),
    (dict(canary=-1), "canary must be at least 0"),
    (dict(max_failures=-1), "max_failures must be 0 or more"),
    (dict(timeout=0), "timeout must be a positive number"),
    (dict(chdir="/nonexistent/release"), "chdir /nonexistent/release is not a directory"),
    (dict(command=["./bin/migrate"], chdir="/"), "is not an executable file"),
])
def test_action_refuses_bad_input_before_running(values, message):
    args = dict(ARGS)
    args.update(values)
    migrate, processes = action(**args)
    with pytest.raises(SafeshipError) as err:
        migrate.run()
    assert message in err.value.msg
    assert processes.calls == []


def test_action_allows_destructive_when_told():
    args = dict(ARGS)
    args.update(command=["php", "artisan", "tenants:migrate", "--tenants={tenant}", "--fresh"], allow_destructive=True)
    migrate, processes = action(**args)
    assert migrate.run()["summary"]["ok"] == 3 and len(processes.calls) == 3


def test_retries_of_a_single_big_batch_use_every_worker():
    # one batch holds every tenant: when it fails, its tenants are retried by all `concurrency` workers
    runner = FakeRunner(fail=["t03"], delay=0.02)
    executor, status, _results = run_executor(runner, IDS, concurrency=3, batch_size=10)
    assert status["t03"] == "failed" and [i for i in IDS if status[i] == "ok"] == [i for i in IDS if i != "t03"]
    assert executor.runs == 11 and runner.max_active == 3
    assert executor.in_flight == 0 and not executor.queue


def test_a_failing_progress_report_does_not_abandon_tenants():
    def on_update(executor):
        raise OSError(28, "No space left on device")

    executor = tm.Executor(FakeRunner(), concurrency=2, on_update=on_update)
    results = executor.run(tenants(*IDS))
    assert set(r["status"] for r in results.values()) == {"ok"} and len(results) == 10
    assert executor.update_error.errno == 28


def test_an_unwritable_state_file_fails_before_anything_runs(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "state.json").mkdir()  # rename() onto a directory fails
    migrate, processes = action(state_file=str(folder / "state.json"), **ARGS)
    with pytest.raises(SafeshipError) as err:
        migrate.run()
    assert "is a directory" in err.value.msg and processes.calls == []


def test_tenants_query_login_password_stays_out_of_the_commands():
    args = dict(ARGS, engine="postgresql", login_host="db", login_user="app", login_password="login-secret",
                database="central", tenants_query="SELECT id, database FROM tenants")
    del args["tenants"]
    migrate, processes = action(outputs=[(0, "a,db_a\nb,db_b\n", "")], **args)
    result = migrate.run()
    query_argv, query_kwargs = migrate.module.calls[0]
    assert query_argv[-1] == "SELECT id, database FROM tenants" and "login-secret" not in " ".join(query_argv)
    assert query_kwargs["environ_update"]["PGPASSWORD"] == "login-secret"
    assert [r["database"] for r in result["results"]] == ["db_a", "db_b"]
    # the tenant commands get env, not the module's own database login
    assert all("PGPASSWORD" not in env for _argv, _cwd, env in processes.calls) and len(processes.calls) == 2
    # the query and the commands are all in executed_commands, the password in none
    commands = migrate.runner.executed_commands
    assert len(commands) == 3 and "SELECT id, database FROM tenants" in commands[0]
    assert "login-secret" not in json.dumps(commands) + json.dumps(result)


def test_a_timed_out_tenant_is_reported_with_its_output_masked():
    migrate, _processes = action(slow=["b"], timeout=2.5, **ARGS)
    with pytest.raises(SafeshipError) as err:
        migrate.run()
    assert "b (timed out after 2.5 s)" in err.value.msg
    entry = err.value.details["results"][1]
    assert (entry["status"], entry["rc"], entry["output_tail"]) == ("timeout", -15, "tenant b started (password ********)")


def test_a_command_that_cannot_start_is_exit_127():
    def missing(call):
        raise SafeshipError("cannot run %s: No such file or directory" % call["argv"][0])
    module = FakeModule(params(**ARGS))
    migrate = tm.TenantMigrate(module, ScriptedRunner(module, [missing]))
    with pytest.raises(SafeshipError) as err:
        migrate.run()
    entry = err.value.details["results"][0]
    assert entry["rc"] == 127 and entry["output_tail"] == "cannot run /usr/bin/php: No such file or directory"


def test_sqlite_tenants_are_absolute_paths():
    tenants = tm.tenants_from_list(["a", {"id": "b", "database": "/srv/b.sqlite"}], "/srv/tenant_{tenant}.sqlite",
                                   "sqlite")
    assert [t.database for t in tenants] == ["/srv/tenant_a.sqlite", "/srv/b.sqlite"]
    with pytest.raises(SafeshipError, match="must be the absolute path of a SQLite file"):
        tm.tenants_from_list(["a"], "tenant_{tenant}", "sqlite")
