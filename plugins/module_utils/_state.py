# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the per-application state directory (<app_root>/.safeship) and locked updates of its files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import os

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError

STATE_DIR = ".safeship"


def state_dir(app_root, create=False):
    """<app_root>/.safeship, created (0755: the app user may read what was deployed) when asked."""
    if not os.path.isabs(app_root):
        raise SafeshipError("app_root %r must be an absolute path." % (app_root,))
    path = os.path.join(app_root, STATE_DIR)
    if create and not os.path.isdir(path):
        try:
            os.makedirs(path)
            os.chmod(path, 0o755)
        except OSError as exc:
            # another process (a concurrent task on the same app) may have created it in between
            if not os.path.isdir(path):
                raise SafeshipError("cannot create %s: %s" % (path, exc.strerror or exc))
    return path


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive flock on PATH.lock for a read-modify-write of PATH.

    flock dies with the process, so a killed run never leaves this lock behind (unlike the
    deploy lock, which is meant to outlive a single task)."""
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SafeshipError("cannot open %s: %s" % (lock_path, exc.strerror or exc))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
