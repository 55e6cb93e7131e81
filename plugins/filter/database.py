# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The db_connection filter: the database modules' connection options out of a larger mapping."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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


class FilterModule(object):
    def filters(self):
        return {"db_connection": db_connection}
