#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: migration_status
short_description: Report which database migrations of an application are applied, pending or failed
version_added: 0.1.0
description:
  - Runs the application's own read-only migration status command in O(chdir) and parses its output into a
    RV(state), the names of pending and applied migrations and counts. Never changes anything; always reports
    C(changed=false), in check mode too (where the same read-only command runs).
  - B(Laravel.) Runs C(php artisan migrate:status --no-ansi --no-interaction) plus O(artisan_args). Parses the Laravel 8
    table (C(| Ran? | Migration | Batch |)) and the Laravel 9+ dotted list. Exit code 1 with C(Migration table not
    found) means V(not_installed); RV(pending) then lists the migration files of C(database/migrations) (or of the
    C(--path) given in O(artisan_args)). Any other failure (connection refused, authentication) is V(error).
  - B(Prisma.) Runs C(prisma migrate status). Prisma exits 1 for pending migrations and for errors alike, so the
    output is parsed - V(pending) (not yet applied), V(failed) (C(P3009), failed migrations in the database),
    V(drift) (the local history and the database's migrations table differ), V(not_installed) (the database is not
    managed by Prisma Migrate) and V(error) (C(P1000) authentication, C(P1001) unreachable, C(P1003) unknown database
    and any output this module does not know).
  - B(Any tool.) With O(tool=command), runs O(command) and takes every output line matching O(pending_regex) as a
    pending migration; a non-zero exit code is V(error).
  - B(Secrets.) O(env) (database credentials, C(DATABASE_URL)) is passed in the environment of the command,
    never in its arguments; every value of it (and the password inside a URL value) is masked as C(********) in
    every returned text.
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  tool:
    description:
      - Which status command to run and how to read it.
    type: str
    required: true
    choices: [laravel, prisma, command]
  chdir:
    description:
      - The application (release) directory the command runs in. For O(tool=laravel) it must hold C(artisan).
    type: path
    required: true
  env:
    description:
      - Variables added to the command's environment, for example C(DB_PASSWORD) or C(DATABASE_URL). For Laravel,
        real environment variables win over the release's C(.env).
      - Every value is treated as a secret and masked as C(********) wherever it appears in the result (Ansible
        does the same for this no_log option), in migration names and RV(stdout_tail) too. Keep non-secret
        settings that are common words or numbers (a port, V(pgsql)) in the application's own configuration
        (C(.env)) rather than here.
      - The alias O(environment) is deprecated and will be removed in 2.0.0; in this collection O(environment)
        names the deploy environment (as in M(safeship.webapp.notify)), O(env) is always process variables.
    type: dict
    default: {}
    aliases: [environment]
  php_binary:
    description:
      - PHP interpreter for O(tool=laravel), a name looked up in C(PATH) or a path.
    type: str
    default: php
  artisan_args:
    description:
      - Extra arguments of C(migrate:status), for example V(--database=tenant) and
        V(--path=database/migrations/tenant).
      - A C(--path) here is also where the migration files are listed from when the migrations table is missing.
    type: list
    elements: str
    default: []
  prisma_binary:
    description:
      - Prisma CLI for O(tool=prisma). A relative path is taken from O(chdir).
      - Default C(node_modules/.bin/prisma) in O(chdir) when it exists, otherwise C(npx --no-install prisma).
    type: str
  schema:
    description:
      - Prisma schema file (C(--schema)); default Prisma's own (C(prisma/schema.prisma)). Its directory's
        C(migrations) folder is where the local migrations are listed from.
    type: path
  command:
    description:
      - The status command as an argv list (no shell), for O(tool=command).
    type: list
    elements: str
  pending_regex:
    description:
      - Python regular expression; every output line it matches (C(re.search)) is a pending migration, named by the
        group C(name), else group 1, else the whole line. Required with O(tool=command).
    type: str
  applied_regex:
    description:
      - Like O(pending_regex), for applied migrations (lines matching O(pending_regex) are not tested).
    type: str
  timeout:
    description:
      - Seconds the status command may run (fractions allowed); then its whole process group is stopped (SIGTERM,
        then SIGKILL 5 seconds later) and RV(state) is V(error).
    type: float
    default: 300
  fail_on:
    description:
      - States that fail the task (with the whole result). The default fails only when the state cannot be known.
      - Use V([]) to only report, or add V(pending) to assert that nothing is left to migrate.
    type: list
    elements: str
    choices: [error, pending, failed, not_installed, drift]
    default: [error]
attributes:
  check_mode:
    support: full
    details: Runs the same read-only status command; the module never changes anything.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The output of the command is read with C(LANG=C), C(NO_COLOR=1) and C(FORCE_COLOR=0).
seealso:
  - module: safeship.webapp.db_check
"""

EXAMPLES = r"""
- name: Which central migrations of the new release are pending?
  safeship.webapp.migration_status:
    tool: laravel
    chdir: "{{ release_path }}"
    env:
      DB_PASSWORD: "{{ vault_db_password }}"
  register: central

- name: Migrate only when something is pending
  ansible.builtin.command:
    cmd: php artisan migrate --force
    chdir: "{{ release_path }}"
  when: central.state in ['pending', 'not_installed']
  changed_when: true

- name: Status of one tenant database
  safeship.webapp.migration_status:
    tool: laravel
    chdir: "{{ release_path }}"
    artisan_args: [--path=database/migrations/tenant]
    env:
      DB_DATABASE: tenant_acme
      DB_PASSWORD: "{{ vault_db_password }}"

- name: Prisma; fail the play if a migration failed or the history drifted
  safeship.webapp.migration_status:
    tool: prisma
    chdir: /srv/api/current
    env:
      DATABASE_URL: "{{ vault_database_url }}"
    fail_on: [error, failed, drift]
  register: prisma_status

- name: Any tool that prints its pending migrations
  safeship.webapp.migration_status:
    tool: command
    chdir: /srv/worker/current
    command: [./bin/migrate, status]
    pending_regex: '^PENDING\s+(?P<name>\S+)'
    applied_regex: '^APPLIED\s+(\S+)'
"""

RETURN = r"""
state:
  description: V(up_to_date), V(pending), V(failed), V(not_installed), V(drift) or V(error).
  returned: always
  type: str
  sample: pending
pending:
  description: Names of the migrations not yet applied, in the order shown. With V(not_installed), every local
    migration.
  returned: always
  type: list
  elements: str
  sample: [2021_01_01_000000_create_notes_table]
applied:
  description: Names of the applied migrations (Prisma, which does not list them, the local migrations neither
    pending nor failed).
  returned: always
  type: list
  elements: str
  sample: [2014_10_12_000000_create_users_table]
failed_migrations:
  description:
    - Names of failed migrations (Prisma). Not named C(failed), which Ansible reads as the task's own outcome.
  returned: always
  type: list
  elements: str
  sample: []
counts:
  description: How many migrations are pending, applied, failed, and in all.
  returned: always
  type: dict
  sample: {pending: 1, applied: 4, failed: 0, total: 5}
message:
  description: Why the state is not V(up_to_date) or V(pending) (the reason of an error, the failed migrations, the
    drift).
  returned: when there is one
  type: str
  sample: "php artisan migrate:status exited with code 1: SQLSTATE[08006] [7] connection to server failed"
tool:
  description: The O(tool) used.
  returned: always
  type: str
  sample: laravel
status_rc:
  description:
    - Exit code of the status command (C(migrate:status) exits 1 without a migrations table, C(prisma migrate
      status) when migrations are pending). Not named C(rc), since Ansible fails a task whose result has a non-zero
      C(rc).
  returned: always
  type: int
  sample: 0
stdout_tail:
  description: The last 40 lines of the command's output (stdout and stderr), environment values masked.
  returned: always
  type: str
  sample: "| Yes  | 2014_10_12_000000_create_users_table | 1     |"
executed_commands:
  description: The command that ran (never a secret; those are in its environment).
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/php artisan migrate:status --no-ansi --no-interaction"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.safeship.webapp.plugins.module_utils._migration_status import REQUIRED_IF, argument_spec, run
from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=REQUIRED_IF, supports_check_mode=True)
    run_module(module, run)


if __name__ == "__main__":
    main()
