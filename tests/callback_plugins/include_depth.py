# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: how many dynamic includes (include_tasks, include_role) lead from the play to each task
that starts. The deepest is written to the file named by SAFESHIP_INCLUDE_DEPTH_FILE as one JSON object per
task path ({"depth": N, "task": ..., "path": ...}), so a test can hold a run to "at most 3 include levels from
playbooks/deploy.yml to any task". Static imports (import_tasks, import_role) are not includes: they are
resolved when the playbook is read."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: include_depth
type: aggregate
short_description: Test-only - records how deep in dynamic includes each task runs
description:
  - Writes the include depth of each task that starts to the file named by E(SAFESHIP_INCLUDE_DEPTH_FILE).
requirements:
  - enabled in callbacks_enabled
"""

import json
import os

from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback import CallbackBase

_DYNAMIC = ("include_tasks", "include_role", "ansible.builtin.include_tasks", "ansible.builtin.include_role",
            "ansible.legacy.include_tasks", "ansible.legacy.include_role")


def include_depth(task):
    depth, parent = 0, getattr(task, "_parent", None)
    seen = set()
    while parent is not None and id(parent) not in seen:
        seen.add(id(parent))
        if isinstance(parent, TaskInclude) and parent.action in _DYNAMIC:
            depth += 1
        parent = getattr(parent, "_parent", None)
    return depth


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "include_depth"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._path = os.environ.get("SAFESHIP_INCLUDE_DEPTH_FILE")
        self._deepest = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self._path:
            return
        where = task.get_path() or ""
        depth = include_depth(task)
        if depth > self._deepest.get(where, -1):
            self._deepest[where] = depth
            with open(self._path, "a") as handle:
                handle.write(json.dumps(dict(depth=depth, task=task.get_name(), path=where)) + "\n")

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start
