"""A stand-in for AnsibleModule (its run_command is the seam of CommandRunner.run() without a timeout), and a
CommandRunner answering from a script (the seam of everything else that would start a program)."""

import tempfile

from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandRunner


class FakeModule(object):
    def __init__(self, params=None, check_mode=False, outputs=None, diff=False):
        self.params = dict(params or {})
        self.check_mode = check_mode
        self._diff = diff
        self.no_log_values = set()
        self.warnings = []
        self.tmpdir = tempfile.mkdtemp(prefix="safeship-unit-")
        self.calls = []
        # outputs: list of (rc, out, err) returned in order; default success with no output
        self.outputs = list(outputs or [])

    def run_command(self, args, **kwargs):
        self.calls.append((list(args), kwargs))
        if self.outputs:
            return self.outputs.pop(0)
        return 0, "", ""

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return "/usr/bin/%s" % name

    def warn(self, text):
        self.warnings.append(text)


class ScriptedRunner(CommandRunner):
    """A CommandRunner whose run() starts nothing: argv is still checked for secrets and recorded, then each call
    gets the next scripted answer: (rc, stdout[, stderr]), an exception to raise (a CommandTimeout), or a
    callable taking the call. Each call is kept in .calls: argv, data, cwd, env (the whole environment the
    program would get), timeout, merge_output."""

    def __init__(self, module, answers=()):
        super(ScriptedRunner, self).__init__(module)
        self.answers = list(answers)
        self.calls = []

    def _execute(self, argv, data, cwd, env, timeout, merge_output, what):
        call = dict(argv=list(argv), data=data, cwd=cwd, env=self.environ(env), timeout=timeout,
                    merge_output=merge_output)
        self.calls.append(call)
        answer = self.answers.pop(0) if len(self.answers) > 1 else (self.answers[0] if self.answers else (0, ""))  # the last repeats
        if callable(answer) and not isinstance(answer, BaseException):
            answer = answer(call)
        if isinstance(answer, BaseException):
            raise answer
        rc, out = answer[0], answer[1]
        return rc, out, answer[2] if len(answer) > 2 else ""
