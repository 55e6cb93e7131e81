# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the common main() body of the collection's modules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._runner import CommandRunner


def run_module(module, action, runner=None):
    """Run action() and turn its result or SafeshipError into exit_json/fail_json.

    Files the module creates are private (umask 077) unless the action sets modes itself. When a
    runner is given, executed_commands is returned either way so a failure shows what ran (never
    with a password: secrets are not in argv).
    """
    os.umask(0o077)
    # AnsibleModule would stat result['path'] and overwrite 'size' with the stat size, which is wrong
    # for a directory-format backup (and adds owner/mode noise): our results describe our objects.
    module.add_path_info = lambda kwargs: kwargs
    extra = {}
    try:
        result = action()
    except SafeshipError as exc:
        details = dict(exc.details)
        # Failures change nothing (partial work is undone) unless the error says otherwise.
        details.setdefault("changed", False)
        if runner is not None:
            details["executed_commands"] = runner.executed_commands
        module.fail_json(msg=exc.msg, **details)
    if runner is not None:
        extra["executed_commands"] = runner.executed_commands
    result.setdefault("changed", False)
    result.update(extra)
    module.exit_json(**result)


def run_database_module(module, action):
    """run_module for the database modules: action(runner) gets the shared command runner."""
    runner = CommandRunner(module)
    run_module(module, lambda: action(runner), runner=runner)
