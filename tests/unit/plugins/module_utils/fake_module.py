"""A stand-in for AnsibleModule: the one seam unit tests patch is run_command."""

import tempfile


class FakeModule(object):
    def __init__(self, params=None, check_mode=False, outputs=None):
        self.params = dict(params or {})
        self.check_mode = check_mode
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
