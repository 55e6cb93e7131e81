#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: db_restore
short_description: Restore a verified safeship backup into a database, and prove it restored completely
version_added: 0.1.0
description:
  - Restores a backup written by M(safeship.webapp.db_backup) into O(target_database).
  - Before touching anything, checks the backup's sha256 against its manifest and refuses a mismatch.
  - Creates the target database when it does not exist. A target that exists but holds no tables is filled.
    A target that holds tables, views or sequences is refused unless O(force=true).
  - "With O(force=true), PostgreSQL restores into a scratch database first, checks its row counts, and only then
    swaps it in by renaming (open sessions on the old database are ended); if anything fails before the swap, the
    target is untouched and the scratch database is dropped. MySQL/MariaDB have no database rename: the target is
    dropped and created again before the restore. SQLite writes a new file and renames it over the target, giving it
    the replaced file's owner and mode (a new file is mode 0600)."
  - "PostgreSQL: custom and directory archives are restored with C(pg_restore --exit-on-error) reading the file,
    with O(jobs) parallel jobs, or in a single transaction with one job; plain dumps with
    C(psql -v ON_ERROR_STOP=1 --single-transaction). MySQL/MariaDB: the client stops at the first failing
    statement. SQLite: the copy is checked with C(PRAGMA integrity_check) and renamed over the target atomically."
  - After the restore, the row counts recorded in the manifest must match the restored tables, or the task fails
    naming each table that differs.
  - Restoring is not idempotent by nature; running it again on the restored (non-empty) target is refused unless
    O(force=true).
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - safeship.webapp.database
options:
  src:
    description:
      - The backup (file or directory) or its C(.manifest.json).
      - One of O(src) and O(latest_in) is required.
    type: path
  latest_in:
    description:
      - Restore the newest backup of O(engine) in this directory (the O(safeship.webapp.db_backup#module:dest) of
        M(safeship.webapp.db_backup)), by the time recorded in its manifest; with O(label), the newest of that label.
        RV(src) says which one was taken.
      - The newest is taken as it is - if its sha256 does not match its manifest, the restore refuses it rather than
        fall back to an older backup.
    type: path
  label:
    description:
      - With O(latest_in), only backups of this label (db_backup's O(safeship.webapp.db_backup#module:label),
        by default the database name).
    type: str
  target_database:
    description:
      - Database to restore into; for SQLite the absolute path of the database file.
      - Defaults to O(database). One of the two is required.
    type: str
  database:
    description:
      - Used as O(target_database) when that is not given (so O(database) set by C(module_defaults) works).
    type: str
    required: false
    aliases: [db]
  force:
    description:
      - Replace a target that already holds tables. Its current contents are lost once the restore succeeds
        (PostgreSQL, SQLite) or before it starts (MySQL/MariaDB).
    type: bool
    default: false
  drill:
    description:
      - A restore drill - restore into O(target_database), which must not exist, check its row counts against the
        manifest, then drop it, whether the restore and the check succeeded or not. RV(duration) is the time to
        restore (create, restore, check); nothing is left behind, so C(changed) is false.
      - Refuses a target that exists (a drill never drops a database it did not create). Mutually exclusive with
        O(force).
    type: bool
    default: false
  jobs:
    description:
      - Parallel jobs for C(pg_restore) (PostgreSQL custom and directory backups). With 1, the restore runs in a
        single transaction (all or nothing).
      - A zstd-compressed custom archive is decompressed next to the backup first when O(jobs) > 1 (C(pg_restore)
        needs a seekable file for parallel restore); with 1 job it is streamed.
    type: int
    default: 1
  maintenance_db:
    description:
      - PostgreSQL database to connect to for creating or dropping the target.
    type: str
    default: postgres
  no_owner:
    description:
      - PostgreSQL only. Do not restore object owners and privileges (C(pg_restore --no-owner --no-privileges));
        the restoring user owns everything. Use it to restore into another cluster whose roles differ.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Checks the sha256 and inspects the target; reports whether the target would be created, filled or
      replaced (or refuses, as a real run would); changes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: safeship.webapp.db_backup
  - module: safeship.webapp.db_check
"""

EXAMPLES = r"""
- name: Restore last night's backup into a scratch database
  safeship.webapp.db_restore:
    engine: postgresql
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    src: /var/backups/safeship/app/app_20261122T020000Z.dump.zst
    target_database: app_restore_check
    jobs: 2

- name: Replace staging with a production backup
  safeship.webapp.db_restore:
    engine: postgresql
    login_unix_socket: /var/run/postgresql
    login_user: postgres
    src: "{{ backup.path }}"
    target_database: app_staging
    force: true
    no_owner: true

- name: Restore the newest nightly backup into a scratch database (kept for inspection)
  safeship.webapp.db_restore:
    engine: postgresql
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    latest_in: /var/backups/safeship/app
    label: nightly
    target_database: app_check
  register: restored

- name: Quarterly restore drill - the newest backup restored, checked and dropped; how long it took
  safeship.webapp.db_restore:
    engine: postgresql
    login_host: db1.internal
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    latest_in: /var/backups/safeship/app
    target_database: app_drill
    drill: true
  register: drill

- name: Restore a MariaDB backup
  safeship.webapp.db_restore:
    engine: mysql
    login_host: 127.0.0.1
    login_user: root
    login_password: "{{ vault_mysql_root_password }}"
    src: /var/backups/shop/shop_20261122T020000Z.sql.zst.manifest.json
    target_database: shop

- name: Put a SQLite database back
  safeship.webapp.db_restore:
    engine: sqlite
    src: /srv/app/backups/database_20261122T020000Z.sqlite3.zst
    target_database: /srv/app/shared/database.sqlite
    force: true
"""

RETURN = r"""
drill:
  description: Whether this was a restore drill (O(drill=true)).
  returned: with O(drill=true)
  type: bool
  sample: true
dropped:
  description: For a drill, whether the restored database was dropped again (false only in check mode).
  returned: with O(drill=true)
  type: bool
  sample: true
src:
  description: The backup restored (with O(latest_in), the one chosen).
  returned: always
  type: str
  sample: /var/backups/safeship/app/app_20261122T020000Z.dump.zst
target_database:
  description: The database restored into.
  returned: always
  type: str
  sample: app_restore_check
sha256:
  description: The backup's verified sha256.
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
created:
  description: Whether the target database did not exist before.
  returned: always
  type: bool
  sample: true
replaced:
  description: Whether the target held tables that were replaced (only with O(force=true)).
  returned: always
  type: bool
  sample: false
tables:
  description: Row counts of the manifest's tables in the restored database; equal to the manifest's.
  returned: changed (or a drill) and not check mode
  type: dict
  sample: {users: 1200, orders: 53012}
duration:
  description: Seconds taken by the restore and the row-count check (for a drill, the time to restore).
  returned: changed (or a drill) and not check mode
  type: float
  sample: 4.2
manifest:
  description: The backup's manifest (see M(safeship.webapp.db_backup)).
  returned: always
  type: dict
  sample: {engine: postgresql, format: custom, compression: zstd, tables: {users: 1200}}
executed_commands:
  description: The commands that ran, shell-quoted. They never contain a password.
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/pg_restore --exit-on-error -h 127.0.0.1 -U postgres -w -d app_restore_check --jobs=2 /var/backups/app.dump"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module
from ansible_collections.safeship.webapp.plugins.module_utils._restore import (
    MUTUALLY_EXCLUSIVE,
    REQUIRED_BY,
    REQUIRED_ONE_OF,
    argument_spec,
    run,
)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_one_of=REQUIRED_ONE_OF,
        required_by=REQUIRED_BY,
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
