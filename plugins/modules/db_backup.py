#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: db_backup
short_description: Write a verified, checksummed backup of a PostgreSQL, MySQL/MariaDB or SQLite database
version_added: 0.1.0
description:
  - Dumps a database into O(dest) with the engine's own tool (C(pg_dump), C(mariadb-dump)/C(mysqldump), or
    SQLite's online backup API), optionally compressed, and proves the result is usable before giving it its
    final name.
  - The dump is written as C(NAME.<pid>.partial), verified, hashed (sha256), made private (files 0600, O(dest) 0700)
    and only then renamed to C(NAME). A kill, a full disk, a server that goes away or any other error leaves
    nothing under a backup's final name; stale partial files of dead runs are removed by the next run.
  - "Verification: for PostgreSQL custom and directory archives C(pg_restore --list) must succeed with a non-empty
    table of contents that holds data for every table in O(tables); plain dumps (PostgreSQL, MySQL, SQLite) must end
    with the tool's completion line; compressed streams must decompress to their end; a SQLite copy must pass
    C(PRAGMA integrity_check). A backup that fails verification is removed and the task fails."
  - Writes C(NAME.manifest.json) next to the backup with engine, server version, database, format, compression,
    size, sha256, duration, row counts of O(tables), creation time and O(label). M(safeship.webapp.db_restore) checks
    the backup against it.
  - Before dumping, checks that O(dest) has room for the backup (estimated from the last backup with the same
    label, or from the size of the database's tables) and fails with both numbers when it has not.
  - Every run writes a new backup, so the task always reports C(changed).
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - safeship.webapp.database
options:
  dest:
    description:
      - Directory that receives the backup and its manifest. Created with mode 0700 if missing; an existing one is
        set to mode 0700.
    type: path
    required: true
  format:
    description:
      - V(custom) (PostgreSQL's compressed archive, restorable in parallel), V(directory) (one file per table,
        dumped and restored in parallel with O(jobs)) and V(plain) (an SQL script) for PostgreSQL.
      - V(plain) (an SQL script) for MySQL/MariaDB.
      - V(file) (a consistent copy of the database file) or V(plain) (an SQL script) for SQLite.
      - Defaults to V(custom) for PostgreSQL, V(plain) for MySQL and V(file) for SQLite.
    type: str
    choices: [custom, directory, plain, file]
  jobs:
    description:
      - Tables dumped in parallel (C(pg_dump --jobs)). More than 1 needs O(format=directory).
    type: int
    default: 1
  compression:
    description:
      - V(zstd) pipes the dump through C(zstd -T0) (fast, multi-threaded); V(gzip) uses C(pg_dump)'s own
        compression for PostgreSQL and C(gzip) otherwise; V(none) writes the dump as is.
      - Defaults to V(zstd), except for O(format=directory), where C(pg_dump) compresses each file itself and only
        V(gzip) or V(none) are possible (default V(gzip)).
    type: str
    choices: [none, gzip, zstd]
  compression_level:
    description:
      - Level for O(compression). gzip 1-9 (default 6), zstd 1-19 (default 3).
    type: int
  tables:
    description:
      - Tables (V(table) or V(schema.table)) whose exact row counts are recorded in the manifest and checked after a
        restore. The backup fails if one of them does not exist or is missing from the archive.
      - For PostgreSQL the counts come from the very snapshot C(pg_dump) dumps; for MySQL from a transaction started
        just before the dump; for SQLite from the copy itself.
    type: list
    elements: str
    default: []
  label:
    description:
      - Groups backups for O(keep); the first part of the file name. Defaults to the database name (for SQLite the
        file name without extension).
    type: str
  keep:
    description:
      - Keep this many newest backups with this O(label) in O(dest) (the one just written included) and delete the
        older ones with their manifests. Omit to delete nothing.
    type: int
  check_space:
    description:
      - Fail before dumping when O(dest) has less free space than the estimated size of the backup.
      - Turn off only when the estimate is known to be wrong; a disk that fills up during the dump still fails
        the task and leaves no backup behind.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Connects and reads the database's size, reports the planned path, the estimated size and the free space;
      writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: safeship.webapp.db_restore
  - module: safeship.webapp.db_check
  - name: pg_dump
    description: PostgreSQL's dump program.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
"""

EXAMPLES = r"""
- name: Back up the central PostgreSQL database before a deploy
  safeship.webapp.db_backup:
    engine: postgresql
    login_host: 127.0.0.1
    login_user: deploy
    login_password: "{{ vault_db_password }}"
    database: app
    dest: /var/backups/safeship/app
    tables: [users, orders]
    label: app-predeploy
    keep: 10
  register: backup

- name: Parallel dump of a large database
  safeship.webapp.db_backup:
    engine: postgresql
    login_unix_socket: /var/run/postgresql
    login_user: postgres
    database: warehouse
    dest: /srv/backups
    format: directory
    jobs: 4

- name: Back up a MariaDB database, zstd-compressed
  safeship.webapp.db_backup:
    engine: mysql
    login_host: db1.internal
    login_user: backup
    login_password: "{{ vault_mysql_backup_password }}"
    database: shop
    dest: /var/backups/shop
    compression: zstd
    compression_level: 6

- name: Back up a SQLite database while the application runs
  safeship.webapp.db_backup:
    engine: sqlite
    database: /srv/app/shared/database.sqlite
    dest: /srv/app/backups
    keep: 5
"""

RETURN = r"""
path:
  description: The backup (a file, or a directory for O(format=directory)); in check mode, the path it would have.
  returned: always
  type: str
  sample: /var/backups/safeship/app/app-predeploy_20261122T153000Z.dump.zst
manifest_path:
  description: The manifest next to the backup.
  returned: always
  type: str
  sample: /var/backups/safeship/app/app-predeploy_20261122T153000Z.dump.zst.manifest.json
size:
  description: Size of the backup in bytes.
  returned: changed and not check mode
  type: int
  sample: 1048576
sha256:
  description: sha256 of the backup file; for a directory, of the list of its files' sha256 digests.
  returned: changed and not check mode
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
manifest:
  description: The manifest written next to the backup.
  returned: changed and not check mode
  type: dict
  contains:
    engine:
      description: postgresql, mysql or sqlite.
      type: str
    server_version:
      description: Version of the database server.
      type: str
    database:
      description: The database that was dumped.
      type: str
    format:
      description: Backup format.
      type: str
    compression:
      description: none, gzip or zstd.
      type: str
    size:
      description: Bytes.
      type: int
    sha256:
      description: Checksum verified before every restore.
      type: str
    duration:
      description: Seconds taken by dump, verification and hashing.
      type: float
    tables:
      description: Row count of each table of O(tables).
      type: dict
    created_at:
      description: UTC time the backup started, ISO 8601.
      type: str
    label:
      description: The backup's label.
      type: str
    verified:
      description: How the backup was verified.
      type: dict
  sample:
    engine: postgresql
    server_version: "15.18"
    database: app
    format: custom
    compression: zstd
    size: 1048576
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    duration: 2.31
    tables: {users: 1200, orders: 53012}
    created_at: "2026-11-22T15:30:00Z"
    label: app-predeploy
    verified: {method: pg_restore --list, toc_entries: 42}
duration:
  description: Seconds taken.
  returned: changed and not check mode
  type: float
  sample: 2.31
estimated_size:
  description: Estimated size of the backup in bytes, used for the free space check.
  returned: always
  type: int
  sample: 2097152
free_space:
  description: Free bytes in O(dest) before the backup.
  returned: always
  type: int
  sample: 53687091200
deleted:
  description: Older backups deleted because of O(keep).
  returned: changed and not check mode
  type: list
  elements: str
  sample: [/var/backups/safeship/app/app-predeploy_20261101T020000Z.dump.zst]
removed_partials:
  description: Leftover partial files of earlier runs that died, removed before this backup.
  returned: changed and not check mode
  type: list
  elements: str
  sample: []
label:
  description: The label used.
  returned: always
  type: str
  sample: app-predeploy
format:
  description: The format used.
  returned: always
  type: str
  sample: custom
compression:
  description: The compression used.
  returned: always
  type: str
  sample: zstd
executed_commands:
  description: The commands that ran, as shell-quoted strings. They never contain a password.
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/pg_dump -h 127.0.0.1 -U deploy -w -d app --format=c --compress=0 | /usr/bin/zstd -q -T0 -3 -c"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.safeship.webapp.plugins.module_utils._backup import argument_spec, run
from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module, run)


if __name__ == "__main__":
    main()
