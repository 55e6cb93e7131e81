# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private helpers shared by the safeship.webapp modules: errors, name checks, files.

Private: the interface may change without notice; only this collection's modules use it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import hashlib
import json
import os
import re
import shutil
import stat

HASH_CHUNK = 1024 * 1024

# Identifiers we accept for databases. Deliberately narrower than what the servers allow:
# a name is also used in file names, and for pg_dump a name containing '=' would be read
# as a connection string.
_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_$-]{0,62}$")
# Table names, optionally schema-qualified.
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_TABLE_NAME = re.compile(r"^(%s)(?:\.(%s))?$" % (_IDENTIFIER, _IDENTIFIER))
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class SafeshipError(Exception):
    """An error meant for the user. Only a module's main() turns it into fail_json."""

    def __init__(self, msg, **details):
        super(SafeshipError, self).__init__(msg)
        self.msg = msg
        self.details = dict((k, v) for k, v in details.items() if v is not None)


def check_database_name(name, what="database"):
    if not isinstance(name, str) or not _DATABASE_NAME.match(name):
        raise SafeshipError(
            "%s %r is not a valid name: use letters, digits, '_', '-' or '$' "
            "(at most 63 characters, not starting with '-' or '$')." % (what, name))
    return name


def split_table_name(name):
    """Return (schema or None, table) for 'table' or 'schema.table'; raise on anything else."""
    match = _TABLE_NAME.match(name) if isinstance(name, str) else None
    if not match:
        raise SafeshipError(
            "table %r is not a valid name: use 'table' or 'schema.table' made of letters, "
            "digits, '_' and '$' (not starting with a digit)." % (name,))
    if match.group(2) is None:
        return None, match.group(1)
    return match.group(1), match.group(2)


def check_label(label):
    if not isinstance(label, str) or not _LABEL.match(label) or ".." in label:
        raise SafeshipError(
            "label %r is not valid: use letters, digits, '_', '-' and '.' (no '..', no '/', "
            "at most 100 characters, starting with a letter or digit)." % (label,))
    return label


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts):
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(root):
    """Sorted relative paths of the regular files below root (a directory-format dump)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            found.append(os.path.relpath(os.path.join(dirpath, filename), root))
    return sorted(found)


def sha256_tree(root):
    """(digest over all files, {relative path: sha256}) for a directory."""
    files = {}
    digest = hashlib.sha256()
    for rel in tree_files(root):
        file_digest = sha256_file(os.path.join(root, rel))
        files[rel] = file_digest
        digest.update(("%s  %s\n" % (file_digest, rel)).encode("utf-8"))
    return digest.hexdigest(), files


def path_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, rel)) for rel in tree_files(path))
    return os.path.getsize(path)


def fsync_path(path):
    """Flush a file, or a directory's entries, to disk so a rename after it is durable."""
    flags = os.O_RDONLY
    if os.path.isdir(path):
        flags |= getattr(os, "O_DIRECTORY", 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root):
    if os.path.isdir(root):
        for rel in tree_files(root):
            fsync_path(os.path.join(root, rel))
    fsync_path(root)


def remove_path(path):
    """Remove a file, a symlink or a directory tree (never following links inside it); a missing path is fine."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def chmod_private(path):
    """0600 for files, 0700 for directories, recursively."""
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        for dirpath, dirnames, filenames in os.walk(path):
            for dirname in dirnames:
                os.chmod(os.path.join(dirpath, dirname), 0o700)
            for filename in filenames:
                os.chmod(os.path.join(dirpath, filename), 0o600)
    else:
        os.chmod(path, 0o600)


def is_private(path):
    mode = stat.S_IMODE(os.stat(path).st_mode)
    return mode & 0o077 == 0


def write_json_atomic(path, data):
    """Write JSON under a temporary name, fsync, then rename: readers see all or nothing."""
    tmp = "%s.%d.partial" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, IOError) as exc:
        raise SafeshipError("cannot read %s: %s" % (path, exc.strerror or exc))
    except ValueError as exc:
        raise SafeshipError("%s is not valid JSON: %s" % (path, exc))


def free_bytes(path):
    """Free bytes for an unprivileged writer on the filesystem holding path (or its nearest existing parent)."""
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def human_size(num):
    num = float(num)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num) < 1024.0 or unit == "TiB":
            if unit == "B":
                return "%d B" % num
            return "%.1f %s" % (num, unit)
        num /= 1024.0
    return "%d B" % num  # pragma: no cover


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def human_duration(seconds):
    """'1d 2h 3m 4s' style, to the nearest second; the sign is dropped (callers say 'ago' or 'in')."""
    seconds = int(round(abs(seconds)))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append("%d%s" % (seconds // size, unit))
            seconds %= size
    if seconds or not parts:
        parts.append("%ds" % seconds)
    return " ".join(parts)


COLLECTION = "safeship.webapp"
# The release that drops the option names deprecated in 0.x.
REMOVAL_VERSION = "2.0.0"


def deprecated_aliases(*names):
    """For an argument spec: old option names that still work, with Ansible's deprecation warning."""
    return [dict(name=name, version=REMOVAL_VERSION, collection_name=COLLECTION) for name in names]
