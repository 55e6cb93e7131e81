import os
import signal

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandError, CommandRunner

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
