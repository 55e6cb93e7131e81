#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: db_check
short_description: Check a database is reachable, has the tables and grants a deploy needs, and compare row counts
version_added: 0.1.0
description:
  - Connects to a PostgreSQL, MySQL/MariaDB or SQLite database and reports the server version, the database size,
    exact row counts of O(count_tables), which of O(required_tables) are missing, and whether the login user may
    create and alter objects (what migrations need).
  - A connection problem ends in one clear message that says what failed and where (connection refused,
    authentication failed, unknown database, unknown host, timeout).
  - With O(compare_to) (an earlier result of this module, a backup manifest, or a plain mapping of table to row
    count), compares the counts and fails listing every table whose count moved more than its O(tolerance).
  - Never changes anything; always reports C(changed=false).
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - safeship.webapp.database
options:
  count_tables:
    description:
      - Tables (V(table) or V(schema.table)) to count exactly (C(count(*))). All are counted in one statement, so
        the counts come from one snapshot.
    type: list
    elements: str
    default: []
  required_tables:
    description:
      - Tables that must exist. The task fails listing those that do not.
    type: list
    elements: str
    default: []
  compare_to:
    description:
      - Earlier row counts to compare with; the tables in it are counted too.
      - Either a registered result of this module (its RV(tables) are used), a registered result of
        M(safeship.webapp.db_backup) (its manifest's tables), or a mapping of table name to row count.
    type: dict
  tolerance:
    description:
      - Allowed difference per table for O(compare_to), as a number of rows (V(10)) or a percentage of the earlier
        count (V('5%')). The key V(default) applies to tables not listed. Without it, counts must be equal.
    type: dict
    default: {}
  require_migrate_privileges:
    description:
      - Fail unless the login user may run migrations (see RV(can_migrate)).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode runs the same queries.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: safeship.webapp.db_backup
  - module: safeship.webapp.db_restore
"""

EXAMPLES = r"""
- name: Snapshot critical tables before migrating
  safeship.webapp.db_check:
    engine: postgresql
    login_host: 127.0.0.1
    login_user: deploy
    login_password: "{{ vault_db_password }}"
    database: app
    required_tables: [users, migrations]
    count_tables: [users, orders]
    require_migrate_privileges: true
  register: before

- name: After migrating, row counts of critical tables must not have moved
  safeship.webapp.db_check:
    engine: postgresql
    login_host: 127.0.0.1
    login_user: deploy
    login_password: "{{ vault_db_password }}"
    database: app
    compare_to: "{{ before }}"
    tolerance:
      orders: 5%
      default: 0

- name: Is the MariaDB server reachable?
  safeship.webapp.db_check:
    engine: mysql
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    database: shop
"""

RETURN = r"""
connected:
  description: Whether the connection succeeded.
  returned: always
  type: bool
  sample: true
server_version:
  description: Version of the database server (for SQLite, of the SQLite library).
  returned: success
  type: str
  sample: "15.18"
size:
  description: Size of the database in bytes.
  returned: success
  type: int
  sample: 8200000
tables:
  description: Exact row counts of O(count_tables) and of the tables in O(compare_to) that exist.
  returned: success
  type: dict
  sample: {users: 1200, orders: 53012}
missing_tables:
  description: Tables of O(required_tables), O(count_tables) and O(compare_to) that do not exist.
  returned: success
  type: list
  elements: str
  sample: []
privileges:
  description: What the login user may do in the database.
  returned: success
  type: dict
  sample: {user: deploy, create_schema: false, create_in_schema: true, usage: true, superuser: false,
           owns_all_tables: true}
can_migrate:
  description: Whether the login user may create tables and alter the existing ones (superuser, or CREATE in the
    schema and, for PostgreSQL, ownership of every table; for MySQL, CREATE and ALTER on the database).
  returned: success
  type: bool
  sample: true
differences:
  description: Tables whose row count moved more than allowed since O(compare_to).
  returned: when O(compare_to) is set
  type: list
  elements: dict
  sample: [{table: orders, before: 53012, after: 12, difference: -53000, allowed: 5.0, unit: percent}]
executed_commands:
  description: The commands that ran, shell-quoted. They never contain a password.
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U deploy -w -d app --csv -t -c 'SHOW server_version'"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.safeship.webapp.plugins.module_utils._check import argument_spec, run
from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module, run)


if __name__ == "__main__":
    main()
