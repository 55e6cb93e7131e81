# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible callback for the benchmarks: when and how long each task ran, as JSON lines.

Not part of the collection (bench/ is in galaxy.yml's build_ignore). bench/rollback.py enables it with
ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=bench_task_times and
BENCH_TASK_TIMES=<file>; without BENCH_TASK_TIMES it does nothing. One line per event, wall-clock
seconds (time.time(), so the lines line up with the bench's own HTTP poller):

  {"ev": "play", "t": ..., "name": ...}
  {"ev": "task", "t": ..., "uuid": ..., "name": ..., "action": ..., "path": "file:line"}
  {"ev": "host", "t": <host started>, "end": <result>, "uuid": ..., "host": ..., "status": "ok|changed|skipped|failed|unreachable"}
  {"ev": "end", "t": ...}

A task's wall time (what profile_tasks prints) is from its "task" line to the next "task", "play" or
"end" line; the "host" lines say which part of it the hosts' module runs took.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_task_times
type: aggregate
short_description: task and per-host timings as JSON lines, for safeship's benchmarks
description: Writes one JSON line per play, task and host result to the file named by BENCH_TASK_TIMES.
requirements: [enabled in ANSIBLE_CALLBACKS_ENABLED, BENCH_TASK_TIMES set]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        path = os.environ.get("BENCH_TASK_TIMES")
        self._out = open(path, "a") if path else None  # pylint: disable=consider-using-with
        self._started = {}

    def _write(self, **data):
        if self._out is not None:
            self._out.write(json.dumps(data) + "\n")
            self._out.flush()

    def v2_playbook_on_play_start(self, play):
        self._write(ev="play", t=time.time(), name=play.get_name())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._write(ev="task", t=time.time(), uuid=task._uuid, name=task.get_name(), action=task.action,
                    path=task.get_path())

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_start(self, host, task):
        self._started[(task._uuid, host.get_name())] = time.time()

    def _result(self, result, status):
        host = result._host.get_name()
        uuid = result._task._uuid
        now = time.time()
        if status == "ok" and result._result.get("changed"):
            status = "changed"
        self._write(ev="host", t=self._started.pop((uuid, host), now), end=now, uuid=uuid, host=host, status=status)

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._write(ev="end", t=time.time())
        if self._out is not None:
            self._out.close()
            self._out = None
