# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the common main() body of the collection's modules.

Every module is written the same way: its module_utils file has ``argument_spec()`` (plus the
MUTUALLY_EXCLUSIVE, REQUIRED_ONE_OF, REQUIRED_IF and REQUIRED_BY rules it needs) and ``run(module,
runner)``; main() builds the AnsibleModule and hands ``run`` to run_module().
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandRunner


def run_module(module, action):
    """Run action(module, runner) and turn its result or SafeshipError into exit_json/fail_json.

    Files the module creates are private (umask 077) unless the action sets modes itself. The runner is
    the module's one CommandRunner: its executed_commands are returned on success and on failure (an
    empty list when nothing ran; never a password: secrets are not in argv).
    """
    os.umask(0o077)
    # AnsibleModule would stat result['path'] and overwrite 'size' with the stat size, which is wrong
    # for a directory-format backup (and adds owner/mode noise): our results describe our objects.
    module.add_path_info = lambda kwargs: kwargs
    runner = CommandRunner(module)
    try:
        result = action(module, runner)
    except SafeshipError as exc:
        details = dict(exc.details)
        # Failures change nothing (partial work is undone) unless the error says otherwise.
        details.setdefault("changed", False)
        details["executed_commands"] = list(runner.executed_commands)
        module.fail_json(msg=exc.msg, **details)
    result.setdefault("changed", False)
    result["executed_commands"] = list(runner.executed_commands)
    module.exit_json(**result)
