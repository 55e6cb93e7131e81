# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the one way this collection runs external programs. No other file imports subprocess.

* argv lists only, never a shell string;
* LANG=C / LC_ALL=C so output can be parsed;
* the environment is extended, never replaced (PATH, HOME... stay);
* secrets travel in the environment or in private files, never in argv: every argv is
  checked against the known secrets before it runs;
* every command is recorded (for the ``executed_commands`` return value);
* what the runner starts itself gets the parent-death signal (a killed module leaves no orphan
  writing a half-finished file) and its own process group;
* a timeout stops the whole process group: SIGTERM, then SIGKILL after KILL_GRACE seconds;
* pipelines (dump | zstd) are built from processes here, not by a shell.

Three ways in: run() for a command whose output is read whole (optionally with a timeout),
pipeline() for stages connected stdout -> stdin, and spawn() for a process the caller talks to
(stdin fed or stdout read chunk by chunk, several running at once). A spawned Process is a
context manager: leaving the block on an error stops its process group.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex
import signal
import subprocess
import tempfile
import threading

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError

# What spawn() takes for stdin, stdout and stderr besides a file object or descriptor.
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

# Seconds between the SIGTERM and the SIGKILL that stop a process group.
KILL_GRACE = 5.0
C_LOCALE = {"LANG": "C", "LC_ALL": "C", "LANGUAGE": "C"}

_PR_SET_PDEATHSIG = 1
_STDERR_TAIL = 4000

try:
    import ctypes

    _LIBC = ctypes.CDLL(None, use_errno=True)
except Exception:  # pragma: no cover - not Linux/glibc
    _LIBC = None


def _die_with_parent():
    """Runs in the child before exec: if the module process is killed, its child dies too,
    so no orphan keeps writing a half-finished file.

    Linux sends the signal when the *thread* that started the child ends: start a process from
    the thread that waits for it."""
    if _LIBC is not None:
        try:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except Exception:
            pass


def quote_argv(argv):
    return " ".join(shlex.quote(str(a)) for a in argv)


def describe_exit(rc):
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = "signal %d" % -rc
        return "was killed by %s" % name
    return "exited with code %s" % rc


def _tail(text, limit=_STDERR_TAIL):
    text = (text or "").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _seconds(value):
    return "%g" % value


def _text(data):
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


class CommandError(SafeshipError):
    """A command failed. The message names the program, how it ended and its stderr."""

    def __init__(self, argv, rc, stdout="", stderr="", what=None, msg=None, **details):
        program = os.path.basename(str(argv[0]))
        stderr = _tail(stderr)
        if msg is None:
            msg = "%s %s" % (what or program, describe_exit(rc))
            if stderr:
                msg += ": %s" % stderr
        super(CommandError, self).__init__(msg, rc=rc, stderr=stderr, cmd=quote_argv(argv), **details)
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.program = program


class CommandTimeout(CommandError):
    """A command ran past its timeout; its whole process group was stopped. stdout/stderr hold what it
    wrote until then."""

    def __init__(self, argv, timeout, rc=None, stdout="", stderr="", what=None):
        msg = "%s did not finish within %s s (timeout); it was stopped with the processes it started" % (
            what or os.path.basename(str(argv[0])), _seconds(timeout))
        super(CommandTimeout, self).__init__(argv, rc, stdout, stderr, what=what, msg=msg, timeout=timeout)
        self.timeout = timeout


class StageResult(object):
    def __init__(self, argv, rc, stderr):
        self.argv = argv
        self.rc = rc
        self.stderr = stderr

    @property
    def sigpipe(self):
        return self.rc in (-signal.SIGPIPE, 128 + signal.SIGPIPE)


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass  # the group is gone already


class Process(object):
    """A program started by CommandRunner.spawn(), leader of its own process group.

    stdin, stdout and stderr are the pipes asked for (bytes, or text with text=True). wait() and
    communicate() take a timeout: at its end the whole group is stopped (SIGTERM, SIGKILL after
    KILL_GRACE s) and CommandTimeout raised. Used as a context manager, leaving the block with an
    exception, or with the program still running, stops the group; the pipes are closed either way.
    """

    def __init__(self, popen, argv, what=None):
        self.popen = popen
        self.argv = argv
        self.what = what
        self.pid = popen.pid

    @property
    def stdin(self):
        return self.popen.stdin

    @property
    def stdout(self):
        return self.popen.stdout

    @property
    def stderr(self):
        return self.popen.stderr

    @property
    def returncode(self):
        return self.popen.returncode

    def poll(self):
        return self.popen.poll()

    def wait(self, timeout=None):
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise CommandTimeout(self.argv, timeout, self.popen.returncode, what=self.what)

    def communicate(self, data=None, timeout=None):
        """(stdout, stderr) once the program ended, data written to its stdin first."""
        try:
            return self.popen.communicate(data, timeout)
        except subprocess.TimeoutExpired:
            out, err = self._stop_collecting()
            raise CommandTimeout(self.argv, timeout, self.popen.returncode, _text(out), _text(err), what=self.what)

    def _stop_collecting(self):
        """Stop the group while still reading its pipes (a full pipe must not block the SIGTERM handler)."""
        out = err = None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            _signal_group(self.pid, sig)
            try:
                out, err = self.popen.communicate(timeout=KILL_GRACE)
                return out, err
            except subprocess.TimeoutExpired:
                continue
        # a process that left the group still holds the pipes: stop reading them
        self._close_pipes()
        self.popen.wait()
        return out, err

    def stop(self, grace=None):
        """SIGTERM to the whole process group, SIGKILL after grace seconds (KILL_GRACE); the program is reaped."""
        if self.popen.returncode is not None:
            _signal_group(self.pid, signal.SIGKILL)  # whatever it left behind in its group
            return self.popen.returncode
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(KILL_GRACE if grace is None else grace)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(self.pid, signal.SIGKILL)
        return self.popen.wait()

    def check(self, stderr="", stdout=""):
        """Raise CommandError unless the program exited 0."""
        if self.popen.returncode != 0:
            raise CommandError(self.argv, self.popen.returncode, _text(stdout), _text(stderr), what=self.what)

    def close(self, stop=False):
        """Done with the program: stop its group when asked or when it still runs, close the pipes."""
        if stop or self.popen.poll() is None:
            self.stop()
        self._close_pipes()

    def _close_pipes(self):
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except (OSError, IOError):
                    pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(stop=exc_type is not None)
        return False


class CommandRunner(object):
    def __init__(self, module, env_update=None, secrets=()):
        self.module = module
        self.env_update = dict(C_LOCALE)
        self.env_update.update(env_update or {})
        self.executed_commands = []
        self._secrets = [s for s in secrets if s]
        self._lock = threading.Lock()

    def derive(self):
        """A runner with its own copy of the environment, sharing this one's secrets and executed_commands:
        for commands that must not see what is set for others (a database password for the queries, not for
        the application's commands)."""
        other = CommandRunner(self.module, env_update=dict(self.env_update))
        other.executed_commands = self.executed_commands
        other._secrets = self._secrets
        other._lock = self._lock
        return other

    def update_env(self, **values):
        self.env_update.update(dict((k, str(v)) for k, v in values.items() if v is not None))

    def add_secret(self, secret):
        if secret:
            self._secrets.append(secret)

    def find_binary(self, names, bin_dir=None, package=None):
        """First of names found in bin_dir (if given) or PATH; a clear error otherwise."""
        if isinstance(names, str):
            names = (names,)
        for name in names:
            if bin_dir:
                candidate = os.path.join(bin_dir, name)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    return candidate
            else:
                found = self.module.get_bin_path(name)
                if found:
                    return found
        where = ("in %s" % bin_dir) if bin_dir else "in PATH"
        hint = " Install %s or set client_bin_dir." % package if package else ""
        raise SafeshipError("%s was not found %s.%s" % (" or ".join(names), where, hint))

    # -- what every way in does ----------------------------------------------------------------------

    def _prepare(self, stages):
        """argv lists as strings, refused when one holds a secret, recorded as one command line."""
        stages = [[str(a) for a in argv] for argv in stages]
        for argv in stages:
            for arg in argv:
                for secret in self._secrets:
                    if secret in arg:
                        # Never reached by design; this guards the invariant against future mistakes.
                        raise SafeshipError("internal error: refusing to run %s with a secret in its arguments"
                                            % os.path.basename(argv[0]))
        with self._lock:
            self.executed_commands.append(" | ".join(quote_argv(argv) for argv in stages))
        return stages

    def environ(self, env=None):
        """The environment of a command: the module's, extended with env_update and then env."""
        result = dict(os.environ)
        result.update(self.env_update)
        result.update(dict((str(k), str(v)) for k, v in (env or {}).items()))
        if "PYTHONPATH" in result:
            # as AnsibleModule.run_command does: the module's own payload is not the program's business
            paths = [p for p in result["PYTHONPATH"].split(":")
                     if p and not p.endswith("/ansible_modlib.zip") and not p.endswith("/debug_dir")]
            result["PYTHONPATH"] = ":".join(paths)
        return result

    def _start(self, argv, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, cwd=None, env=None, what=None, text=False):
        try:
            popen = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=self.environ(env),
                                     close_fds=True, start_new_session=True, preexec_fn=_die_with_parent,
                                     universal_newlines=text)
        except OSError as exc:
            raise SafeshipError("cannot run %s: %s" % (argv[0], exc.strerror or exc))
        return Process(popen, argv, what)

    # -- the three ways in --------------------------------------------------------------------------

    def spawn(self, argv, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, cwd=None, env=None, what=None, text=False):
        """Start argv and return its Process, for callers that talk to it while it runs.

        stdin, stdout, stderr: PIPE, DEVNULL, STDOUT (stderr only), a file object or a descriptor.
        env extends the runner's environment for this process only. The caller waits for it (from
        the thread that started it) or uses it as a context manager, which stops it on errors."""
        argv = self._prepare([argv])[0]
        return self._start(argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env, what=what, text=text)

    def run(self, argv, data=None, check=True, what=None, cwd=None, env=None, timeout=None, merge_output=False):
        """Run one command to completion, output captured as text: (rc, stdout, stderr).

        data is written to its stdin. env extends the environment for this command only.
        timeout (seconds): at its end the command's whole process group is stopped and CommandTimeout
        raised, whatever check says, with the output read until then. merge_output: stderr goes into
        stdout, in the order written (stderr is then ''). With check, a non-zero exit raises CommandError.
        """
        argv = self._prepare([argv])[0]
        rc, out, err = self._execute(argv, data, cwd, env, timeout, merge_output, what)
        if check and rc != 0:
            raise CommandError(argv, rc, out, err, what=what)
        return rc, out, err

    def _execute(self, argv, data, cwd, env, timeout, merge_output, what):
        """Where run() starts its program: Ansible's run_command when it can do the job (and the seam unit
        tests patch through the module), our own process group when a timeout or merged output is needed."""
        if timeout is None and not merge_output:
            update = dict(self.env_update)
            update.update(dict((str(k), str(v)) for k, v in (env or {}).items()))
            return self.module.run_command(argv, data=data, environ_update=update, expand_user_and_vars=False,
                                           cwd=cwd)
        proc = self._start(argv, stdin=PIPE if data is not None else DEVNULL,
                           stderr=STDOUT if merge_output else PIPE, cwd=cwd, env=env, what=what)
        with proc:
            out, err = proc.communicate(data.encode("utf-8") if data is not None else None, timeout=timeout)
        return proc.returncode, _text(out), _text(err)

    def pipeline(self, stages, stdin_path=None, stdout_path=None, consumer=None,
                 tolerate_sigpipe=False, what=None):
        """Run stages connected stdout -> stdin, without a shell.

        The first stage reads stdin_path (or nothing). The last stage writes to stdout_path
        (created with O_EXCL, mode 0600), or its output is handed chunk by chunk to consumer,
        or discarded. Raises CommandError naming the stage that failed; with tolerate_sigpipe,
        a stage killed by SIGPIPE because a later one stopped reading is not a failure.
        Returns the list of StageResult.
        """
        stages = self._prepare(stages)
        procs = []
        errfiles = []
        stdin_file = open(stdin_path, "rb") if stdin_path else None
        stdin = stdin_file or DEVNULL
        out_fd = None
        try:
            if stdout_path:
                out_fd = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            for index, argv in enumerate(stages):
                last = index == len(stages) - 1
                if not last:
                    stdout = PIPE
                elif out_fd is not None:
                    stdout = out_fd
                elif consumer is not None:
                    stdout = PIPE
                else:
                    stdout = DEVNULL
                errfile = tempfile.TemporaryFile(dir=self.module.tmpdir)
                errfiles.append(errfile)
                proc = self._start(argv, stdin=stdin, stdout=stdout, stderr=errfile, what=what)
                if index > 0:
                    # The parent's copy must go, or the previous stage never sees SIGPIPE/EOF.
                    procs[-1].stdout.close()
                procs.append(proc)
                stdin = proc.stdout if not last else None
            if out_fd is not None:
                os.close(out_fd)
                out_fd = None
            if consumer is not None and procs[-1].stdout is not None:
                for chunk in iter(lambda: procs[-1].stdout.read(1024 * 1024), b""):
                    consumer(chunk)
                procs[-1].stdout.close()
            for proc in procs:
                proc.wait()
        except BaseException:
            for proc in procs:
                proc.stop(grace=0)
            raise
        finally:
            if out_fd is not None:
                os.close(out_fd)
            if stdin_file is not None:
                stdin_file.close()
        results = []
        for argv, proc, errfile in zip(stages, procs, errfiles):
            errfile.seek(0)
            stderr = errfile.read().decode("utf-8", "replace")
            errfile.close()
            results.append(StageResult(argv, proc.returncode, stderr))
        self._raise_for(results, tolerate_sigpipe, what)
        return results

    @staticmethod
    def _raise_for(results, tolerate_sigpipe, what):
        failed = [r for r in results if r.rc != 0]
        if not failed:
            return
        # A stage dying of SIGPIPE is a symptom of a later stage stopping: report the cause.
        real = [r for r in failed if not r.sigpipe]
        if not real and tolerate_sigpipe:
            return
        culprit = (real or failed)[0]
        raise CommandError(culprit.argv, culprit.rc, "", culprit.stderr, what=what)
