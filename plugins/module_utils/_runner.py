# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the one way this collection runs external programs.

* argv lists only, never a shell string;
* LANG=C / LC_ALL=C so output can be parsed;
* the environment is extended, never replaced (PATH, HOME... stay);
* secrets travel in the environment or in private files, never in argv: every argv is
  checked against the known secrets before it runs;
* pipelines (dump | zstd) are built from processes here, not by a shell;
* every command is recorded (for the ``executed_commands`` return value).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex
import signal
import subprocess
import tempfile

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError

_PR_SET_PDEATHSIG = 1
_STDERR_TAIL = 4000

try:
    import ctypes

    _LIBC = ctypes.CDLL(None, use_errno=True)
except Exception:  # pragma: no cover - not Linux/glibc
    _LIBC = None


def _die_with_parent():
    """Runs in the child before exec: if the module process is killed, its dump dies too,
    so no orphan keeps writing a half-finished file."""
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


class CommandError(SafeshipError):
    """A command failed. The message names the program, how it ended and its stderr."""

    def __init__(self, argv, rc, stdout="", stderr="", what=None):
        program = os.path.basename(str(argv[0]))
        stderr = _tail(stderr)
        msg = "%s %s" % (what or program, describe_exit(rc))
        if stderr:
            msg += ": %s" % stderr
        super(CommandError, self).__init__(msg, rc=rc, stderr=stderr, cmd=quote_argv(argv))
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.program = program


class StageResult(object):
    def __init__(self, argv, rc, stderr):
        self.argv = argv
        self.rc = rc
        self.stderr = stderr

    @property
    def sigpipe(self):
        return self.rc in (-signal.SIGPIPE, 128 + signal.SIGPIPE)


class CommandRunner(object):
    def __init__(self, module, env_update=None, secrets=()):
        self.module = module
        self.env_update = {"LANG": "C", "LC_ALL": "C", "LANGUAGE": "C"}
        self.env_update.update(env_update or {})
        self.executed_commands = []
        self._secrets = [s for s in secrets if s]

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

    def _check_argv(self, argv):
        for arg in argv:
            for secret in self._secrets:
                if secret in str(arg):
                    # Never reached by design; this guards the invariant against future mistakes.
                    raise SafeshipError("internal error: refusing to run %s with a secret in its arguments"
                                        % os.path.basename(str(argv[0])))

    def _record(self, stages):
        self.executed_commands.append(" | ".join(quote_argv(argv) for argv in stages))

    def environ(self):
        env = dict(os.environ)
        env.update(self.env_update)
        return env

    def run(self, argv, data=None, check=True, what=None, cwd=None):
        """Run one command to completion, output captured; for short commands (queries, listings)."""
        argv = [str(a) for a in argv]
        self._check_argv(argv)
        self._record([argv])
        rc, out, err = self.module.run_command(
            argv, data=data, environ_update=self.env_update, expand_user_and_vars=False, cwd=cwd)
        if check and rc != 0:
            raise CommandError(argv, rc, out, err, what=what)
        return rc, out, err

    def pipeline(self, stages, stdin_path=None, stdout_path=None, consumer=None,
                 tolerate_sigpipe=False, what=None):
        """Run stages connected stdout -> stdin, without a shell.

        The first stage reads stdin_path (or nothing). The last stage writes to stdout_path
        (created with O_EXCL, mode 0600), or its output is handed chunk by chunk to consumer,
        or discarded. Raises CommandError naming the stage that failed; with tolerate_sigpipe,
        a stage killed by SIGPIPE because a later one stopped reading is not a failure.
        Returns the list of StageResult.
        """
        stages = [[str(a) for a in argv] for argv in stages]
        for argv in stages:
            self._check_argv(argv)
        self._record(stages)
        env = self.environ()
        procs = []
        errfiles = []
        stdin_file = open(stdin_path, "rb") if stdin_path else None
        stdin = stdin_file or subprocess.DEVNULL
        out_fd = None
        try:
            if stdout_path:
                out_fd = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            for index, argv in enumerate(stages):
                last = index == len(stages) - 1
                if not last:
                    stdout = subprocess.PIPE
                elif out_fd is not None:
                    stdout = out_fd
                elif consumer is not None:
                    stdout = subprocess.PIPE
                else:
                    stdout = subprocess.DEVNULL
                errfile = tempfile.TemporaryFile(dir=self.module.tmpdir)
                errfiles.append(errfile)
                try:
                    proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=errfile, env=env,
                                            close_fds=True, preexec_fn=_die_with_parent)
                except OSError as exc:
                    raise SafeshipError("cannot run %s: %s" % (argv[0], exc.strerror or exc))
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
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
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
