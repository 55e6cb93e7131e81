"""tenant_migrate on the real Laravel 8 fixture (its `php artisan tenants:migrate --tenants=...`) with 20 tenant
databases on real PostgreSQL and MariaDB servers, plus small shell commands for what the app cannot show
(hangs, progress of a slow run).

The release's .env has no DB_PASSWORD: the module passes it in `env`, so every tenant that migrates proves the
environment reached artisan, and the password is checked absent from every result."""

import json
import os
import shutil
import stat
import time

import pytest

from helpers.laravel_app import LaravelLab, add_tenants, artisan, lab_server, migrate_status, migration_names, tables
from helpers.modules import no_secret
from helpers.playbooks import Playbook, recap

TENANTS = ["t%02d" % n for n in range(1, 21)]
TENANT_TABLES = ["comments", "migrations", "posts"]


@pytest.fixture(params=["postgresql", "mariadb"])
def lab(request, tmp_path, unique_name):
    """A migrated central DB with 20 tenants (ids t01..t20, databases <unique>_t01...) and their empty DBs."""

    class Lab(LaravelLab):
        def args(self, **extra):
            """Module arguments: tenants from the central table, the fixture's per-tenant command."""
            args = dict(self.server.conn_params(self.central), tenants_query="SELECT id, %s FROM tenants ORDER BY id" % (
                '"database"' if self.server.engine == "postgresql" else "`database`"),
                command=["php", "artisan", "tenants:migrate", "--tenants={tenant}", "--no-interaction"],
                env=dict(self.env), chdir=self.path)
            args.update(extra)
            return args

        def migrations(self, tenant):
            return sorted(self.server.execute("SELECT migration, batch FROM migrations", self.databases[tenant]))

    lab = Lab(lab_server(request), tmp_path / "release", unique_name, "1.0.0", password_in_env=True)
    migrated = artisan(lab.path, "migrate", "--force", env=lab.env)
    assert migrated.returncode == 0, migrated.stdout
    lab.databases = dict((tenant, lab.create_database("%s_%s" % (unique_name, tenant))) for tenant in TENANTS)
    add_tenants(lab.server, lab.central, lab.databases)
    lab.state_file = str(tmp_path / "tenants-state.json")
    yield lab
    lab.close()


def by_tenant(result):
    return dict((r["tenant"], r) for r in result["results"])


def statuses(result):
    return dict((r["tenant"], r["status"]) for r in result["results"])


def break_tenant(lab, tenant):
    """A conflicting `comments` table: the tenant's second migration fails (posts is created first)."""
    lab.server.execute("CREATE TABLE comments (id INT)", lab.databases[tenant])


def test_pending_migrate_up_to_date_four_ways(lab, run_module):
    args = lab.args(skip_up_to_date=True, concurrency=4)
    names = migration_names(lab.path, tenant=True)

    # check: nothing has a migrations table yet, so every tenant would run; nothing changes
    result = run_module("tenant_migrate", args, check_mode=True)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["would_run"] == TENANTS
    assert set(statuses(result).values()) == {"not_run"}
    assert all(tables(lab.server, db) == [] for db in lab.databases.values())

    # real: every tenant migrated, by its own command run
    result = run_module("tenant_migrate", args)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert statuses(result) == dict((t, "ok") for t in TENANTS)
    assert result["summary"]["ok"] == 20 and result["summary"]["runs"] == 20 and result["failed"] == []
    assert [r["database"] for r in result["results"]] == [lab.databases[t] for t in TENANTS]
    assert all(r["rc"] == 0 and r["duration"] > 0 for r in result["results"])
    assert "create_posts_table" in by_tenant(result)["t05"]["output_tail"]
    no_secret(result, lab.password)
    for tenant, database in lab.databases.items():
        assert tables(lab.server, database) == TENANT_TABLES, tenant
    status = artisan(lab.path, "migrate:status", "--path=database/migrations/tenant",
                     env={"DB_PASSWORD": lab.password, "DB_DATABASE": lab.databases["t13"]})
    assert status.returncode == 0, status.stdout
    assert [(name, ran) for name, ran, _batch in migrate_status(status.stdout)] == [(n, True) for n in names]
    before = dict((t, lab.migrations(t)) for t in TENANTS)

    # again: the up-to-date check skips every tenant without booting PHP; nothing ran
    result = run_module("tenant_migrate", args)
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["summary"]["runs"] == 0 and result["summary"]["skipped"] == 20
    for entry in result["results"]:
        assert entry["status"] == "skipped" and entry["reason"] == "up to date" and entry["pending"] == []
    assert dict((t, lab.migrations(t)) for t in TENANTS) == before

    # again in check mode: nothing would run
    result = run_module("tenant_migrate", args, check_mode=True)
    assert result["changed"] is False and result["would_run"] == []
    no_secret(result, lab.password)

    # one tenant behind (its last migration rolled back by hand): only it runs, with its pending migration named
    lab.server.execute("DROP TABLE comments", lab.databases["t08"])
    lab.server.execute("DELETE FROM migrations WHERE migration = '%s'" % names[-1], lab.databases["t08"])
    result = run_module("tenant_migrate", args, check_mode=True)
    assert result["changed"] is True and result["would_run"] == ["t08"]
    assert by_tenant(result)["t08"]["pending"] == [names[-1]]
    result = run_module("tenant_migrate", args)
    assert result["changed"] is True and result["summary"]["runs"] == 1, result
    assert statuses(result)["t08"] == "ok"
    assert tables(lab.server, lab.databases["t08"]) == TENANT_TABLES


def test_broken_tenant_fails_alone_and_resume_runs_only_it(lab, run_module):
    break_tenant(lab, "t07")
    args = lab.args(state_file=lab.state_file, concurrency=3)
    result = run_module("tenant_migrate", args)
    assert result["failed"] is True
    assert result["changed"] is True
    assert result["msg"].startswith("tenant migrations failed for 1 of 20 tenants: t07 (exit 1)"), result["msg"]
    assert result["failed_tenants"] == ["t07"]
    expected = dict((t, "ok") for t in TENANTS)
    expected["t07"] = "failed"
    assert statuses(result) == expected
    assert "comments" in by_tenant(result)["t07"]["output_tail"]
    no_secret(result, lab.password)
    for tenant in TENANTS:
        if tenant != "t07":
            assert tables(lab.server, lab.databases[tenant]) == TENANT_TABLES
    state = json.load(open(lab.state_file))
    assert stat.S_IMODE(os.stat(lab.state_file).st_mode) == 0o600
    assert state["finished"] is True and state["total"] == 20 and state["done"] == 20
    assert state["ok"] == 19 and state["failed"] == 1 and state["running"] == []
    assert state["tenants"]["t07"]["status"] == "failed" and state["tenants"]["t07"]["rc"] == 1
    assert lab.password not in open(lab.state_file).read()
    before = dict((t, lab.migrations(t)) for t in TENANTS if t != "t07")

    # fix it; the re-run resumes: only t07 runs, the others are skipped from the state file (untouched)
    lab.server.execute("DROP TABLE comments", lab.databases["t07"])
    result = run_module("tenant_migrate", args)
    assert not result.get("failed"), result
    assert result["changed"] is True and result["summary"]["runs"] == 1
    for tenant, entry in by_tenant(result).items():
        if tenant == "t07":
            assert entry["status"] == "ok"
        else:
            assert (entry["status"], entry["reason"]) == ("skipped", "ok in state file")
    assert tables(lab.server, lab.databases["t07"]) == TENANT_TABLES
    assert dict((t, lab.migrations(t)) for t in TENANTS if t != "t07") == before
    state = json.load(open(lab.state_file))
    assert state["ok"] == 20 and state["failed"] == 0 and state["finished"] is True

    # a third run has nothing left; rerun_all runs everyone again (migrate is idempotent)
    result = run_module("tenant_migrate", args)
    assert result["changed"] is False and result["summary"]["skipped"] == 20
    result = run_module("tenant_migrate", dict(args, rerun_all=True, concurrency=8))
    assert result["changed"] is True and result["summary"]["ok"] == 20 and result["summary"]["runs"] == 20


def test_batches_pin_the_failure_on_the_broken_tenant(lab, run_module):
    break_tenant(lab, "t07")
    args = lab.args(command=["php", "artisan", "tenants:migrate", "--tenants={tenants}"], batch_size=5,
                    concurrency=2)
    result = run_module("tenant_migrate", args)
    assert result["failed"] is True
    assert result["failed_tenants"] == ["t07"]
    assert "t07 (exit 1)" in result["msg"]
    expected = dict((t, "ok") for t in TENANTS)
    expected["t07"] = "failed"
    assert statuses(result) == expected
    # four batches, then the five tenants of the failed batch (t06-t10) alone
    assert result["summary"]["runs"] == 4 + 5
    retried = sorted(t for t, r in by_tenant(result).items() if r.get("retried"))
    assert retried == ["t06", "t07", "t08", "t09", "t10"]
    for tenant in TENANTS:
        if tenant != "t07":
            assert tables(lab.server, lab.databases[tenant]) == TENANT_TABLES
    no_secret(result, lab.password)


def test_canary_failure_stops_the_run(lab, run_module):
    break_tenant(lab, "t01")
    result = run_module("tenant_migrate", lab.args(canary=2))
    assert result["failed"] is True and result["failed_tenants"] == ["t01"]
    assert result["changed"] is True and result["summary"]["runs"] == 1
    assert "19 not run (canary t01 failed)" in result["msg"]
    for tenant, entry in by_tenant(result).items():
        if tenant != "t01":
            assert (entry["status"], entry["reason"]) == ("not_run", "canary t01 failed")
            assert tables(lab.server, lab.databases[tenant]) == []

    # canaries that pass let the rest run
    lab.server.execute("DROP TABLE comments", lab.databases["t01"])
    result = run_module("tenant_migrate", lab.args(canary=2))
    assert not result.get("failed"), result
    assert result["summary"]["ok"] == 20


def test_destructive_commands_refused_unless_allowed(lab, run_module):
    assert run_module("tenant_migrate", lab.args())["summary"]["ok"] == 20
    lab.server.execute("INSERT INTO posts (title, body) VALUES ('keep', 'me')", lab.databases["t03"])
    base = ["php", "artisan", "tenants:migrate", "--tenants={tenant}"]
    for command, offending in ((base + ["--fresh"], "--fresh"),
                               (["php", "artisan", "migrate:fresh", "--database=tenant"], "migrate:fresh"),
                               (["php", "artisan", "db:wipe", "--force"], "db:wipe"),
                               (base + ["--seed"], "--seed"),
                               (base + ["--seeder=Database\\Seeders\\TenantDatabaseSeeder"], "--seeder=")):
        for check_mode in (True, False):
            result = run_module("tenant_migrate", lab.args(command=command), check_mode=check_mode)
            assert result["failed"] is True and result["changed"] is False
            assert offending in result["msg"] and "allow_destructive" in result["msg"], result["msg"]
            assert "results" not in result
    for database in lab.databases.values():
        assert tables(lab.server, database) == TENANT_TABLES
    assert lab.server.execute("SELECT title FROM posts", lab.databases["t03"]) == [("keep",)]

    # allowed: --fresh really drops and re-creates the tenant tables
    args = lab.args(command=base + ["--fresh"], allow_destructive=True,
                    tenants=[dict(id="t03", database=lab.databases["t03"])])
    del args["tenants_query"]
    result = run_module("tenant_migrate", args)
    assert not result.get("failed"), result
    assert result["changed"] is True and statuses(result) == {"t03": "ok"}
    assert lab.server.execute("SELECT title FROM posts", lab.databases["t03"]) == []
    assert tables(lab.server, lab.databases["t03"]) == TENANT_TABLES


def test_tenants_that_cannot_be_checked_are_not_skipped(lab, run_module):
    lab.server.drop_database(lab.databases["t11"])
    result = run_module("tenant_migrate", lab.args(skip_up_to_date=True, concurrency=6))
    assert result["failed"] is True and result["failed_tenants"] == ["t11"], result.get("msg")
    # the check could not read t11 (no database): it was not skipped but ran and failed with the real error
    assert "pending" not in by_tenant(result)["t11"]
    assert by_tenant(result)["t11"]["status"] == "failed"
    assert result["summary"]["ok"] == 19
    no_secret(result, lab.password)

    # the others are up to date, but a check that cannot log in reads nothing: every tenant runs (and, with the
    # right password in env, succeeds), and a warning says why
    args = lab.args(skip_up_to_date=True, login_password="wrong-password",
                    tenants=[dict(id=t, database=lab.databases[t]) for t in TENANTS if t != "t11"])
    del args["tenants_query"]
    result = run_module("tenant_migrate", args)
    assert not result.get("failed"), result
    assert result["changed"] is True and result["summary"]["runs"] == 19 and result["summary"]["ok"] == 19
    assert "authentication failed" in json.dumps(result["warnings"])
    no_secret(result, lab.password)


# ---------------------------------------------------------------- no database needed


def shell(script):
    return ["sh", "-c", script]


def test_timeout_kills_the_whole_process_group(tmp_path, run_module):
    pidfile = tmp_path / "sleeper.pid"
    script = ('if [ {tenant} = b ]; then sleep 300 & echo $! > %s; wait; fi; echo done {tenant}' % pidfile)
    result = run_module("tenant_migrate", dict(tenants=["a", "b", "c"], command=shell(script), timeout=2,
                                               concurrency=3))
    assert result["failed"] is True and result["failed_tenants"] == ["b"]
    assert statuses(result) == dict(a="ok", b="timeout", c="ok")
    assert "b (timed out after 2 s)" in result["msg"]
    assert by_tenant(result)["b"]["rc"] < 0
    pid = int(pidfile.read_text())
    deadline = time.time() + 10
    while os.path.exists("/proc/%d" % pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % pid), "the sleep child of the timed-out tenant survived"


def test_max_failures_stops_new_work(tmp_path, run_module):
    tenants = ["t%02d" % n for n in range(1, 11)]
    ran = tmp_path / "ran"
    ran.mkdir()
    script = 'touch %s/{tenant}; case {tenant} in t03|t04) exit 3;; esac' % ran
    result = run_module("tenant_migrate", dict(tenants=tenants, command=shell(script), concurrency=1,
                                               max_failures=1))
    assert result["failed"] is True and result["failed_tenants"] == ["t03", "t04"]
    assert [statuses(result)[t] for t in tenants] == ["ok", "ok", "failed", "failed"] + ["not_run"] * 6
    assert by_tenant(result)["t05"]["reason"] == "stopped: more than 1 tenant(s) failed (max_failures)"
    assert "t03 (exit 3), t04 (exit 3); 6 not run" in result["msg"]
    assert sorted(os.listdir(str(ran))) == tenants[:4]


def test_env_placeholders_and_secret_masking(tmp_path, run_module):
    secret = "s3cr3t-pw-$x'y"
    script = 'echo "db=$DB_DATABASE url=$DATABASE_URL pw=$DB_PASSWORD"; [ {tenant} != b ]'
    env = dict(DB_PASSWORD=secret, DB_DATABASE="{database}", DATABASE_URL="mysql://app:%s@db/{database}" % secret)
    result = run_module("tenant_migrate", dict(tenants=["a", "b"], database_template="app_{tenant}",
                                               command=shell(script), env=env))
    assert result["failed"] is True and result["failed_tenants"] == ["b"]
    tail = by_tenant(result)["a"]["output_tail"]
    assert tail.startswith("db=app_a url=********") and "pw=********" in tail
    no_secret(result, secret, "mysql://app:")

    # a secret in argv is refused before anything runs
    result = run_module("tenant_migrate", dict(tenants=["a"], command=["echo", secret], env=env))
    assert result["failed"] is True and "secrets travel in env only" in result["msg"]
    no_secret(result, secret)


def test_executed_commands_name_every_command_and_no_password(lab, run_module):
    """The tenants_query, the up-to-date check and every tenant's command are returned, on success and on
    failure; neither the database login's password nor env's reaches them (nor the tenants' environment)."""
    args = lab.args(skip_up_to_date=True, concurrency=4,
                    command=["sh", "-c", 'echo "pg=${{PGPASSWORD:-none}} mysql=${{MYSQL_PWD:-none}}"; exec "$@"', "sh",
                             "php", "artisan", "tenants:migrate", "--tenants={tenant}", "--no-interaction"])
    result = run_module("tenant_migrate", args)
    assert not result.get("failed"), result.get("msg")
    commands = result["executed_commands"]
    tenants = [command for command in commands if "tenants:migrate" in command]
    query, checks = commands[0], commands[1:len(commands) - len(tenants)]
    assert "SELECT id," in query
    # the up-to-date check: concurrency psql processes, or one MariaDB client, before any tenant's command
    assert len(checks) == (4 if lab.server.engine == "postgresql" else 1)
    assert all("psql" in check or "--skip-reconnect" in check for check in checks)
    shell_path = shutil.which("sh")
    assert sorted(tenants) == sorted("%s -c 'echo \"pg=${PGPASSWORD:-none} mysql=${MYSQL_PWD:-none}\"; exec "
                                     "\"$@\"' sh php artisan tenants:migrate --tenants=%s --no-interaction"
                                     % (shell_path, t) for t in TENANTS)
    # the module's own database login stays with its queries
    assert all(r["output_tail"].startswith("pg=none mysql=none") for r in result["results"])
    no_secret(result, lab.password)

    # a failure returns them too
    args = lab.args(tenants=["t03"], command=["php", "artisan", "tenants:migrate", "--tenants={tenant}",
                                              "--no-such-option"])
    del args["tenants_query"]
    result = run_module("tenant_migrate", args)
    assert result["failed"] is True and result.get("failed_tenants") == ["t03"], result["msg"]
    assert result["executed_commands"] == [
        "%s artisan tenants:migrate --tenants=t03 --no-such-option" % shutil.which("php")]
    no_secret(result, lab.password)


def test_the_environment_alias_still_works_with_a_deprecation(tmp_path, run_module):
    result = run_module("tenant_migrate", dict(tenants=["a"], command=shell('echo "db=$DB_DATABASE"'),
                                               database_template="app_{tenant}",
                                               environment={"DB_DATABASE": "{database}"}))
    assert not result.get("failed"), result.get("msg")
    assert by_tenant(result)["a"]["output_tail"] == "db=app_a"
    # ansible-core 2.19 reports {event: {msg}, deprecator: {resolved_name}, version}; earlier ones flat keys
    assert [((d.get("event") or d).get("msg"), d["version"],
             (d.get("deprecator") or {}).get("resolved_name") or d.get("collection_name"))
            for d in result["deprecations"]] == [
        ("Alias 'environment' is deprecated. See the module docs for more information", "2.0.0", "safeship.webapp")]
    result = run_module("tenant_migrate", dict(tenants=["a"], command=shell("true"), env={}))
    assert not result.get("deprecations")


def test_bad_input_fails_before_anything_runs(tmp_path, run_module):
    marker = tmp_path / "ran"
    touch = ["touch", str(marker)]
    cases = [
        (dict(tenants=["a", "b", "a"], command=touch), "duplicate tenant id(s): a"),
        (dict(tenants=["a"], command=touch + ["{tenants}"]), "only with batch_size > 1"),
        (dict(tenants=["a"], command=touch + ["{tenant}"], batch_size=3), "use {tenants} or {databases}"),
        (dict(tenants=["a"], command=touch + ["{tenat}"]), "unknown placeholder {tenat}"),
        (dict(tenants=["a"], command=touch, env=dict(X="{nope}")), "env value of X uses an unknown placeholder"),
        (dict(tenants=["a b"], command=touch), "tenant id 'a b' is not valid"),
        (dict(tenants=["a"], database_template="db;drop", command=touch), "is not a valid name"),
        (dict(tenants=["a"], command=["no-such-program-xyz"]), "was not found in PATH"),
        (dict(tenants=["a"], command=touch, concurrency=0), "concurrency must be at least 1"),
        (dict(tenants=["a"], command=touch, state_file=str(tmp_path / "missing" / "s.json")), "does not exist"),
    ]
    for args, message in cases:
        result = run_module("tenant_migrate", args)
        assert result["failed"] is True and result["changed"] is False, args
        assert message in result["msg"], (args, result["msg"])
    assert not marker.exists()


def test_state_file_of_another_run_is_not_resumed(tmp_path, run_module):
    state = str(tmp_path / "state.json")
    log = tmp_path / "log"
    args = dict(tenants=["a", "b"], command=shell("echo {tenant} >> %s" % log), state_file=state)
    assert run_module("tenant_migrate", args)["summary"]["runs"] == 2
    result = run_module("tenant_migrate", args)
    assert result["changed"] is False and result["summary"]["skipped"] == 2
    other = dict(args, command=shell("echo again {tenant} >> %s" % log))
    result = run_module("tenant_migrate", other)
    assert result["changed"] is True and result["summary"]["runs"] == 2
    # ansible-core 2.19 returns warnings as structured events
    assert "belongs to another run" in json.dumps(result["warnings"])
    assert sorted(log.read_text().splitlines()) == ["a", "again a", "again b", "b"]


def test_async_progress_through_the_state_file(tmp_path):
    """ansible-playbook starts the module with async/poll 0; the state file shows progress until finished."""
    state = str(tmp_path / "progress.json")
    tenants = ["t%02d" % n for n in range(1, 13)]
    playbook = Playbook(tmp_path / "play")
    text = """
- hosts: app
  gather_facts: false
  tasks:
    - name: Start the slow tenant run
      safeship.webapp.tenant_migrate:
        tenants: "{{ tenants }}"
        command: [sh, -c, "sleep 0.4; echo {tenant}"]
        concurrency: 2
        state_file: "{{ state }}"
      async: 300
      poll: 0
      register: job

    - name: Follow the progress through the state file
      ansible.builtin.slurp:
        src: "{{ state }}"
      register: progress
      until: >-
        progress is succeeded and
        (progress.content | b64decode | from_json).finished
      retries: 200
      delay: 0.2

    - name: The finished job
      ansible.builtin.async_status:
        jid: "{{ job.ansible_job_id }}"
      register: done
      until: done.finished
      retries: 100
      delay: 0.2

    - name: Assert the outcome
      ansible.builtin.assert:
        that:
          - done.summary.ok == 12
          - done.changed
          - (progress.content | b64decode | from_json).done == 12
"""
    seen = []
    running = playbook.start(playbook.write(text, "async.yml"), dict(tenants=tenants, state=state))
    # meanwhile, sample the state file as an outside observer would
    while running.poll() is None:
        try:
            with open(state) as handle:
                data = json.load(handle)
            seen.append((data["done"], data["total"], len(data["running"]), data["finished"]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc = running.wait()
    output = proc.stdout
    assert proc.returncode == 0, output
    assert recap(output)["failed"] == 0
    assert seen, "the state file never appeared during the run"
    done_values = [s[0] for s in seen]
    assert done_values == sorted(done_values), "done went backwards"
    assert all(total == 12 for _d, total, _r, _f in seen)
    # progress was visible part-way, with at most `concurrency` tenants running at once
    assert any(0 < d < 12 and not f for d, _t, _r, f in seen), seen
    assert max(r for _d, _t, r, _f in seen) <= 2
    assert seen[-1][0] == 12 and seen[-1][3] is True
