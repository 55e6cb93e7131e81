# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the common main() body of the database modules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandRunner


def run_database_module(module, action):
    """Run action(runner) and turn its result or SafeshipError into exit_json/fail_json.

    Files the module creates are private (umask 077), and executed_commands is returned either way
    so a failure shows what ran (never with a password: secrets are not in argv).
    """
    os.umask(0o077)
    # AnsibleModule would stat result['path'] and overwrite 'size' with the stat size, which is wrong
    # for a directory-format backup (and adds owner/mode noise): our results describe backups.
    module.add_path_info = lambda kwargs: kwargs
    runner = CommandRunner(module)
    try:
        result = action(runner)
    except SafeshipError as exc:
        details = dict(exc.details)
        # Failures change nothing (partial work is undone) unless the error says otherwise.
        details.setdefault("changed", False)
        module.fail_json(msg=exc.msg, executed_commands=runner.executed_commands, **details)
    result.setdefault("changed", False)
    result["executed_commands"] = runner.executed_commands
    module.exit_json(**result)
