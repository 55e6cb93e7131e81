# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The db_connection and db_entries filters: database entries of the roles, and the modules' connection options
out of them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.safeship.webapp.plugins.module_utils._database import connection_argument_spec

# the options (and aliases) of the shared connection spec, read from the spec itself
_KEYS = frozenset(
    name for option, spec in connection_argument_spec().items() for name in [option] + list(spec.get("aliases", ())))


def db_connection(entry):
    """The keys of entry that are connection options of the database modules (engine, login_*, database...)."""
    if not isinstance(entry, dict):
        raise AnsibleFilterError("db_connection expects a mapping, got %s" % type(entry).__name__)
    return dict((key, value) for key, value in entry.items() if key in _KEYS)


_SQLITE_SUFFIX = re.compile(r"[.](sqlite3?|db)$")


def db_entries(entries, shared=None):
    """Each entry on top of the shared connection, with its name (default: the database's name, a SQLite file's
    base name without its suffix), as the backup, restore and preflight roles use them."""
    if not isinstance(entries, (list, tuple)):
        raise AnsibleFilterError("db_entries expects a list of mappings, got %s" % type(entries).__name__)
    shared = shared or {}
    if not isinstance(shared, dict):
        raise AnsibleFilterError("db_entries expects a mapping of shared connection options, got %s"
                                 % type(shared).__name__)
    merged = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AnsibleFilterError("db_entries: entry %d is a %s, not a mapping" % (index, type(entry).__name__))
        item = dict(shared)
        item.update(entry)
        if not item.get("name"):
            item["name"] = _SQLITE_SUFFIX.sub("", os.path.basename(str(item.get("database") or "")))
        merged.append(item)
    return merged


class FilterModule(object):
    def filters(self):
        return {"db_connection": db_connection, "db_entries": db_entries}
