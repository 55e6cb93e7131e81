import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _runner
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._runner import (
    PIPE,
    CommandError,
    CommandRunner,
    CommandTimeout,
)

from .fake_module import FakeModule


def test_run_extends_environment_with_c_locale_and_never_expands_arguments():
    module = FakeModule()
    runner = CommandRunner(module, env_update={"PGPASSWORD": "pw"})
    runner.run(["psql", "-c", "SELECT '$HOME ~'"])
    argv, kwargs = module.calls[0]
    assert argv == ["psql", "-c", "SELECT '$HOME ~'"]
    assert kwargs["environ_update"]["LC_ALL"] == "C"
    assert kwargs["environ_update"]["LANG"] == "C"
    assert kwargs["environ_update"]["PGPASSWORD"] == "pw"
    # environ_update extends os.environ inside run_command; we never pass a full environment
    assert "PATH" not in kwargs["environ_update"]
    assert kwargs["expand_user_and_vars"] is False


def test_run_refuses_a_secret_in_argv():
    module = FakeModule()
    runner = CommandRunner(module, secrets=["hunter2"])
    with pytest.raises(SafeshipError, match="secret in its arguments"):
        runner.run(["mysql", "--password=hunter2"])
    assert module.calls == []


def test_run_failure_names_program_exit_code_and_stderr():
    module = FakeModule(outputs=[(2, "", "psql: error: boom\n")])
    runner = CommandRunner(module)
    with pytest.raises(CommandError) as err:
        runner.run(["/usr/bin/psql", "-c", "x"])
    assert err.value.msg == "psql exited with code 2: psql: error: boom"
    assert err.value.details["rc"] == 2


def test_executed_commands_are_shell_quoted():
    runner = CommandRunner(FakeModule())
    runner.run(["pg_dump", "-d", "my db"])
    assert runner.executed_commands == ["pg_dump -d 'my db'"]


def test_find_binary_in_bin_dir_or_clear_error(tmp_path):
    runner = CommandRunner(FakeModule())
    tool = tmp_path / "pg_dump"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert runner.find_binary("pg_dump", str(tmp_path)) == str(tool)
    with pytest.raises(SafeshipError) as err:
        runner.find_binary(("mariadb-dump", "mysqldump"), str(tmp_path), "mariadb-client")
    assert err.value.msg == ("mariadb-dump or mysqldump was not found in %s. Install mariadb-client or set "
                             "client_bin_dir." % tmp_path)


def test_pipeline_connects_processes_and_writes_private_file(tmp_path):
    runner = CommandRunner(FakeModule())
    out = tmp_path / "out"
    runner.pipeline([["printf", "hello"], ["tr", "a-z", "A-Z"]], stdout_path=str(out))
    assert out.read_text() == "HELLO"
    assert os.stat(str(out)).st_mode & 0o777 == 0o600
    assert runner.executed_commands == ["printf hello | tr a-z A-Z"]


def test_pipeline_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out"
    out.write_text("keep me")
    with pytest.raises(OSError):
        CommandRunner(FakeModule()).pipeline([["printf", "x"]], stdout_path=str(out))
    assert out.read_text() == "keep me"


def test_pipeline_consumer_and_stdin(tmp_path):
    src = tmp_path / "in"
    src.write_bytes(b"abc\n" * 1000)
    chunks = []
    CommandRunner(FakeModule()).pipeline([["wc", "-l"]], stdin_path=str(src), consumer=chunks.append)
    assert b"".join(chunks).strip() == b"1000"


def test_pipeline_reports_the_failing_stage_not_its_sigpipe_victim():
    runner = CommandRunner(FakeModule())
    with pytest.raises(CommandError) as err:
        runner.pipeline([["yes"], ["false"]])
    assert err.value.program == "false"
    assert err.value.rc == 1


def test_pipeline_tolerates_sigpipe_when_asked():
    chunks = []
    results = CommandRunner(FakeModule()).pipeline([["yes"], ["head", "-n", "2"]], consumer=chunks.append,
                                                   tolerate_sigpipe=True)
    assert b"".join(chunks) == b"y\ny\n"
    assert results[0].rc == -signal.SIGPIPE


def test_pipeline_reports_a_killed_stage():
    with pytest.raises(CommandError) as err:
        CommandRunner(FakeModule()).pipeline([["sh", "-c", "kill -9 $$"]])
    assert "was killed by SIGKILL" in err.value.msg


def test_pipeline_missing_program_is_a_clear_error():
    with pytest.raises(SafeshipError, match="cannot run /nonexistent/pg_dump"):
        CommandRunner(FakeModule()).pipeline([["/nonexistent/pg_dump"]])


# ---- timeouts: the whole process group is stopped ------------------------------------------------------------

def gone(pid):
    """Whether pid no longer runs (no such process, or a zombie nobody reaped yet)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pids, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(gone(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if not gone(pid)]


def test_timeout_stops_the_program_and_the_grandchild_it_started(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    runner = CommandRunner(FakeModule())
    script = "sleep 300 & echo $! > %s; echo started; echo $$; wait" % pidfile
    with pytest.raises(CommandTimeout) as err:
        runner.run(["sh", "-c", script], timeout=0.5, merge_output=True)
    started, shell_pid = err.value.stdout.split()
    grandchild = int(pidfile.read_text())
    assert started == "started" and wait_gone([int(shell_pid), grandchild]) == []
    assert err.value.msg == "sh did not finish within 0.5 s (timeout); it was stopped with the processes it started"
    assert err.value.details["timeout"] == 0.5 and err.value.rc == -signal.SIGTERM
    assert runner.executed_commands == ["sh -c %s" % shlex.quote(script)]


def test_timeout_kills_what_ignores_sigterm_after_the_grace(monkeypatch):
    monkeypatch.setattr(_runner, "KILL_GRACE", 0.3)
    runner = CommandRunner(FakeModule())
    with pytest.raises(CommandTimeout) as err:
        runner.run(["sh", "-c", "trap '' TERM; echo $$; sleep 300 & echo $!; wait"], timeout=0.3, what="stubborn")
    pids = [int(pid) for pid in err.value.stdout.split()]
    assert len(pids) == 2 and wait_gone(pids) == []
    assert err.value.rc == -signal.SIGKILL and err.value.msg.startswith("stubborn did not finish within 0.3 s")


def test_a_timed_run_that_finishes_is_an_ordinary_run(tmp_path):
    runner = CommandRunner(FakeModule(), env_update={"FROM_RUNNER": "1"})
    rc, out, err = runner.run(["sh", "-c", "echo out; echo err >&2; cat; echo $FROM_RUNNER $PER_CALL $LC_ALL; pwd"],
                              data="from stdin\n", timeout=30, cwd=str(tmp_path), env={"PER_CALL": "2"})
    assert (rc, out, err) == (0, "out\nfrom stdin\n1 2 C\n%s\n" % tmp_path, "err\n")
    rc, out, err = runner.run(["sh", "-c", "echo one; echo two >&2; exit 3"], check=False, merge_output=True)
    assert (rc, out, err) == (3, "one\ntwo\n", "")
    with pytest.raises(CommandError, match="sh exited with code 3: two"):
        runner.run(["sh", "-c", "echo two >&2; exit 3"], timeout=30)


# ---- spawn: processes the caller talks to ---------------------------------------------------------------------

def test_spawn_streams_stdin_and_stdout_chunk_by_chunk():
    runner = CommandRunner(FakeModule(), secrets=["hunter2"])
    with runner.spawn(["tr", "a-z", "A-Z"], stdin=PIPE) as proc:
        for number in range(1000):
            proc.stdin.write(b"line %d\n" % number)
        proc.stdin.close()
        chunks = list(iter(lambda: proc.stdout.read(4096), b""))
        assert proc.wait() == 0
    assert len(chunks) > 1 and b"".join(chunks).splitlines()[-1] == b"LINE 999"
    assert runner.executed_commands == ["tr a-z A-Z"]
    with pytest.raises(SafeshipError, match="secret in its arguments"):
        runner.spawn(["mysql", "-phunter2"])
    assert runner.executed_commands == ["tr a-z A-Z"]


def test_spawn_extends_the_environment_and_runs_several_at_once():
    runner = CommandRunner(FakeModule(), env_update={"A": "runner"})
    procs = [runner.spawn(["sh", "-c", "sleep 0.2; echo $A $B $LANG ${PATH:+has-path}"], env={"B": str(n)},
                          text=True) for n in range(3)]
    outputs = [proc.communicate()[0] for proc in procs]
    assert outputs == ["runner %d C has-path\n" % n for n in range(3)]
    assert len(set(proc.pid for proc in procs)) == 3 and len(runner.executed_commands) == 3


def test_spawn_stops_the_process_group_when_the_block_fails():
    runner = CommandRunner(FakeModule())
    with pytest.raises(RuntimeError):
        with runner.spawn(["sh", "-c", "echo $$; sleep 300 & echo $!; wait"], text=True) as proc:
            pids = [int(proc.stdout.readline()), int(proc.stdout.readline())]
            raise RuntimeError("the caller failed half-way")
    assert wait_gone(pids) == [] and proc.returncode is not None and proc.stdout.closed


def test_spawn_communicate_timeout_and_check():
    runner = CommandRunner(FakeModule())
    proc = runner.spawn(["sh", "-c", "echo partial; sleep 300"], what="slow dump")
    with pytest.raises(CommandTimeout) as err:
        proc.communicate(timeout=0.3)
    assert err.value.stdout == "partial\n" and "slow dump did not finish within 0.3 s" in err.value.msg
    proc = runner.spawn(["sh", "-c", "echo boom >&2; exit 4"])
    out, errtext = proc.communicate()
    with pytest.raises(CommandError, match="sh exited with code 4: boom"):
        proc.check(errtext)
    with pytest.raises(SafeshipError, match="cannot run /nonexistent/tool"):
        runner.spawn(["/nonexistent/tool"])


CHILD_OF_A_KILLED_MODULE = """
import sys
sys.path.insert(0, %(tests)r)
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandRunner
from fake_module import FakeModule
proc = CommandRunner(FakeModule()).spawn(["sleep", "300"])
print(proc.pid, flush=True)
sys.stdin.read()
"""


def test_a_spawned_process_dies_with_the_module_that_started_it():
    here = os.path.dirname(os.path.abspath(__file__))
    module = subprocess.Popen([sys.executable, "-c", CHILD_OF_A_KILLED_MODULE % dict(tests=here)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    child = int(module.stdout.readline())
    assert not gone(child)
    module.kill()  # SIGKILL: the module gets no chance to clean up; the kernel sends the parent-death signal
    module.wait()
    assert wait_gone([child]) == []


def test_derive_shares_records_and_secrets_but_not_the_environment():
    runner = CommandRunner(FakeModule())
    db = runner.derive()
    db.update_env(PGPASSWORD="pw-123456")
    db.add_secret("pw-123456")
    assert "PGPASSWORD" not in runner.environ() and db.environ()["PGPASSWORD"] == "pw-123456"
    runner.run(["true"])
    db.run(["psql", "-c", "SELECT 1"])
    assert runner.executed_commands == db.executed_commands == ["true", "psql -c 'SELECT 1'"]
    with pytest.raises(SafeshipError, match="secret in its arguments"):
        runner.run(["app", "--password=pw-123456"])
