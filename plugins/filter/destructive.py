# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The destructive_items filter: the modules' own check of a migration command, for roles' preflight asserts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.safeship.webapp.plugins.module_utils._destructive import destructive_items as _items


def destructive_items(argv):
    """The items of argv (one argv list, or a list of argv lists) that destroy data; empty when it is safe."""
    if isinstance(argv, (str, bytes)) or not isinstance(argv, (list, tuple)):
        raise AnsibleFilterError("destructive_items expects a list of arguments (or a list of such lists), got %s"
                                 % type(argv).__name__)
    nested = any(isinstance(arg, (list, tuple)) for arg in argv)
    # one argv is judged as a whole (`migrate` then `reset`); each command of a list on its own
    commands = [arg if isinstance(arg, (list, tuple)) else [arg] for arg in argv] if nested else [argv]
    found = []
    for command in commands:
        for item in _items(command):
            if item not in found:
                found.append(item)
    return found


class FilterModule(object):
    def filters(self):
        return {"destructive_items": destructive_items}
