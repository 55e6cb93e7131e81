#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: tenant_migrate
short_description: Run a migration command for many tenants, concurrently, resumably and safely
version_added: 0.1.0
description:
  - Runs O(command) once per tenant (or once per batch of tenants, O(batch_size)) in O(chdir), for example
    C(php artisan tenants:migrate --tenants={tenant}) of a multi-tenant Laravel application, and reports
    what happened to every tenant.
  - B(Tenants) come from O(tenants) (a list) or from O(tenants_query) (SQL on the central database, through the
    connection options; no Python database driver is needed).
  - B(Concurrency.) O(concurrency) workers take the next tenant (or batch) from one queue as soon as they are
    free, so one slow tenant does not hold a whole chunk back. Each command runs in its own process group, and at
    the O(timeout) the whole group is stopped (SIGTERM, then SIGKILL 5 seconds later).
  - B(Canary.) The first O(canary) tenants run first, one at a time, before the others start. If one of them
    fails, nothing else runs; the other tenants are reported V(not_run).
  - B(Batches.) With O(batch_size) > 1 the command gets several tenants at once (C({tenants}), joined with
    O(batch_separator)), which saves one application boot per tenant. When a batch fails, each of its tenants
    runs again alone (C({tenants}) holding that one id), so the failure is pinned on the tenant that has it and
    the others of the batch end V(ok) (marked RV(results[].retried)). The command must therefore be safe to run
    again for a tenant whose migrations already ran, as C(migrate) is.
  - B(Resume.) With O(state_file), progress is written (atomically) after every finished command. A later run with
    the same command, env keys, chdir and batch mode skips the tenants that were V(ok) in that file; a state file
    of another run is not resumed (a warning says so). The same file lets a long run started with C(async) be
    followed from another task (see the examples).
  - B(Up to date.) With O(skip_up_to_date), before anything runs, the migrations table of every tenant database is
    read and compared with the migration files of O(migrations_path) (no application boot); tenants with nothing
    pending are V(skipped). MySQL/MariaDB is checked by one client process for all tenants; PostgreSQL by
    O(concurrency) C(psql) processes; SQLite tenant files are read directly. A tenant whose check fails (no
    database, no table) is not skipped; it runs and fails with the real error.
  - B(Destructive commands are refused) before anything runs, unless O(allow_destructive=true), namely
    C(migrate:fresh), C(migrate:reset), C(migrate:refresh), C(migrate:rollback), C(db:wipe) (and tenant variants
    such as C(tenants:migrate-fresh), C(tenants:rollback)), C(--fresh), C(--seed), C(--seeder), and Prisma's
    C(migrate reset), C(--force-reset) and C(--accept-data-loss), also inside an C(sh -c) string.
  - The task fails when any tenant failed or timed out, after all the work that could run has run and the state
    file is written; the message names the tenants and the failure result still carries RV(results) and
    RV(summary).
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - safeship.webapp.database
options:
  engine:
    description:
      - The database engine of the central and tenant databases. Needed for O(tenants_query) and
        O(skip_up_to_date) only.
      - With V(sqlite), O(database) and every tenant's database are absolute paths of SQLite files (for example
        O(database_template=/srv/app/shared/database/tenant_{tenant}.sqlite)).
    type: str
    required: false
    choices: [postgresql, mysql, sqlite]
  database:
    description:
      - The central database, where O(tenants_query) runs. With O(skip_up_to_date) on PostgreSQL, the database the
        check connects to first (default C(postgres)).
    type: str
    required: false
    aliases: [db]
  tenants:
    description:
      - The tenants, in the order they run. Each is a tenant id (its database is O(database_template) with the id)
        or a dict with C(id) and C(database).
      - Ids may hold letters, digits, V(_), V(.) and V(-); database names letters, digits, V(_), V(-) and V($)
        (with O(engine=sqlite), absolute file paths).
      - Exactly one of O(tenants) and O(tenants_query) is required. A duplicate id is an error.
    type: list
    elements: raw
  tenants_query:
    description:
      - SQL run on the central O(database) that returns one row per tenant, C(id) or C(id, database) (a missing or
        empty database is O(database_template) with the id), in the order they run.
    type: str
  database_template:
    description:
      - The database of a tenant given by id only; C({tenant}) is replaced by the id.
    type: str
    default: "{tenant}"
  command:
    description:
      - The command as an argv list (no shell). The first item is looked up in E(PATH) (or taken relative to
        O(chdir) when it holds a C(/)).
      - Placeholders C({tenant}) and C({database}) (with O(batch_size=1)), or C({tenants}) and C({databases})
        (with O(batch_size) > 1, ids and databases joined with O(batch_separator)). Write a literal brace as C({{)
        or C(}}). An unknown placeholder, or one that does not fit the batch size, is an error before anything
        runs.
    type: list
    elements: str
    required: true
  env:
    description:
      - Variables added to the environment of every command (for example C(DB_PASSWORD)); values may use the same
        placeholders as O(command), for example C(DB_DATABASE={database}).
      - Values never appear in the results or in error messages (they are masked as C(********) in the output
        tails; a value that is only a placeholder, such as C({database}), is the tenant's own name and is not).
        An argument of O(command) holding a value of O(env) is refused.
      - As Ansible does for this no_log option, a value is masked wherever it appears in the output, so keep
        common non-secret settings (a port, V(pgsql), V(false)) in the application's own configuration (C(.env)).
      - The alias O(environment) is deprecated and will be removed in 2.0.0 (in this collection O(environment)
        names the deploy environment, as in M(safeship.webapp.notify)).
    type: dict
    default: {}
    aliases: [environment]
  chdir:
    description:
      - The directory the commands run in (the application release). Required with O(skip_up_to_date).
    type: path
  concurrency:
    description:
      - How many commands run at the same time (and how many C(psql) processes check PostgreSQL tenants).
    type: int
    default: 4
  batch_size:
    description:
      - Tenants per command run. Use it when the command accepts several tenants, such as
        C(tenants:migrate --tenants={tenants}). A failed batch is retried tenant by tenant (see the description).
    type: int
    default: 1
  batch_separator:
    description:
      - What joins the ids in C({tenants}) and the databases in C({databases}).
    type: str
    default: ","
  canary:
    description:
      - How many of the first tenants run alone, one after the other, before the others start. If one of them
        fails or times out, no other tenant runs (they are V(not_run)).
    type: int
    default: 0
  max_failures:
    description:
      - Once more than this many tenants failed (or timed out), no new command starts; the running ones finish and
        the tenants not started are V(not_run). Default no limit; V(0) stops at the first failure.
    type: int
  timeout:
    description:
      - Seconds one command may run (fractions allowed); then its whole process group is stopped and its tenants
        are V(timeout). Default no limit.
    type: float
  state_file:
    description:
      - JSON file (mode 0600, written atomically after every finished command) with the progress of the run
        (C(total), C(done), C(ok), C(failed), C(running), per-tenant C(tenants) entries and C(finished)), and what a
        later run resumes from. Its directory must exist.
      - C(run_key) in it is a digest of the command template, the env keys (never values), the real path of
        O(chdir), the batch mode and O(database_template); a release in another directory is another run.
    type: path
  rerun_all:
    description:
      - Ignore what O(state_file) says and run every tenant (the file is then rewritten).
    type: bool
    default: false
  skip_up_to_date:
    description:
      - Before running, compare each tenant database's O(migrations_table) with the migration files in
        O(migrations_path) and skip the tenants that have nothing pending (RV(results[].pending) lists what is).
      - Needs the connection options (O(engine), O(login_host)...) and O(chdir).
    type: bool
    default: false
  migrations_path:
    description:
      - Directories (relative to O(chdir), or absolute) of the tenant migration files; a migration's name is its
        file name without C(.php), as Laravel stores it.
    type: list
    elements: path
    default: [database/migrations/tenant]
  migrations_table:
    description:
      - The migrations table of each tenant database (Laravel's C(database.migrations) setting).
    type: str
    default: migrations
  allow_destructive:
    description:
      - Allow commands that drop, empty or seed tables (see the description). Never in production.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Runs no command and writes no state file; with O(skip_up_to_date) the read-only check runs. Returns the
      plan (RV(would_run), RV(results) V(skipped) or V(not_run)); C(changed) tells whether any tenant would run.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - C(changed) is true when any command ran.
  - Tenants run in parallel against the same database server; keep O(concurrency) below what it accepts
    (C(max_connections)) and what the host's CPUs can boot at once.
  - Commands run in their own process groups (so a timeout kills everything a command started); if the module
    itself is killed (an C(async) timeout), commands already started finish on their own.
seealso:
  - module: safeship.webapp.migration_status
  - module: safeship.webapp.db_backup
"""

EXAMPLES = r"""
- name: Migrate every tenant of the central tenants table, 8 at a time, 2 canaries first
  safeship.webapp.tenant_migrate:
    engine: postgresql
    login_host: db.internal
    login_user: app
    login_password: "{{ vault_db_password }}"
    database: app_central
    tenants_query: SELECT id, database FROM tenants ORDER BY id
    command: [php, artisan, tenants:migrate, "--tenants={tenant}", --no-interaction]
    env:
      DB_PASSWORD: "{{ vault_db_password }}"
    chdir: "{{ release_path }}"
    concurrency: 8
    canary: 2
    timeout: 600
    skip_up_to_date: true
    state_file: "{{ release_path }}/storage/tenant-migrate.json"
  register: tenants

- name: Ten tenants per artisan boot; a failing batch is retried tenant by tenant
  safeship.webapp.tenant_migrate:
    tenants: [acme, globex, initech]
    database_template: "tenant_{tenant}"
    command: [php, artisan, tenants:migrate, "--tenants={tenants}"]
    batch_size: 10
    chdir: /srv/app/current
    max_failures: 3

- name: Any command, one database per tenant given explicitly
  safeship.webapp.tenant_migrate:
    tenants:
      - {id: acme, database: acme_prod}
      - {id: globex, database: globex_prod}
    command: [./bin/migrate, --database, "{database}"]
    env:
      DB_DATABASE: "{database}"
      DB_PASSWORD: "{{ vault_db_password }}"
    chdir: /srv/worker/current

# A long run in the background, followed through its state file
- name: Start the tenant migrations
  safeship.webapp.tenant_migrate:
    tenants_query: SELECT id FROM tenants
    engine: mysql
    database: app_central
    login_user: app
    login_password: "{{ vault_db_password }}"
    command: [php, artisan, tenants:migrate, "--tenants={tenant}"]
    chdir: "{{ release_path }}"
    state_file: /var/lib/app/tenant-migrate.json
  async: 3600
  poll: 0
  register: tenant_job

- name: Follow the progress (done / total)
  ansible.builtin.slurp:
    src: /var/lib/app/tenant-migrate.json
  register: tenant_progress
  # the file appears once the run has started
  until: tenant_progress is succeeded and (tenant_progress.content | b64decode | from_json).finished
  retries: 360
  delay: 10

- name: Show the progress
  ansible.builtin.debug:
    msg: "{{ p.done }} of {{ p.total }} tenants done, {{ p.failed }} failed"
  vars:
    p: "{{ tenant_progress.content | b64decode | from_json }}"

- name: Collect the result (fails if a tenant failed)
  ansible.builtin.async_status:
    jid: "{{ tenant_job.ansible_job_id }}"
  register: tenant_result
  until: tenant_result.finished
  retries: 30
  delay: 2
"""

RETURN = r"""
results:
  description: One entry per tenant, in tenant order.
  returned: always
  type: list
  elements: dict
  contains:
    tenant:
      description: The tenant id.
      type: str
      sample: acme
    database:
      description: The tenant's database.
      type: str
      sample: tenant_acme
    status:
      description: V(ok), V(failed) (non-zero exit), V(timeout), V(skipped) (see RV(results[].reason)) or
        V(not_run) (stopped by a canary or O(max_failures), or check mode).
      type: str
      sample: ok
    rc:
      description: Exit code of the command that settled the tenant (negative when killed by a signal); null when
        nothing ran.
      type: int
      sample: 0
    duration:
      description: Seconds that command ran (with O(batch_size) > 1, the batch's duration).
      type: float
      sample: 0.412
    output_tail:
      description: The last 20 lines (at most 2 KiB) of its output, stdout and stderr together, env values masked.
      type: str
      sample: "Migrating: 2020_01_02_000000_create_posts_table"
    reason:
      description: Why a tenant was V(skipped) (V(ok in state file), V(up to date)) or V(not_run).
      returned: when skipped or not run
      type: str
      sample: up to date
    pending:
      description: The migrations not applied in the tenant database, from the O(skip_up_to_date) check.
      returned: when the tenant was checked successfully
      type: list
      elements: str
      sample: [2020_01_02_000001_create_comments_table]
    retried:
      description: True when the tenant's batch failed and it ran again alone.
      returned: when retried
      type: bool
      sample: true
summary:
  description: Counts of the run, how long it took (seconds) and how it ran; C(runs) is the number of commands
    that ran.
  returned: always
  type: dict
  sample: {total: 20, ok: 19, failed: 1, timeout: 0, skipped: 0, not_run: 0, runs: 20, duration: 3.2,
           concurrency: 4, batch_size: 1}
failed:
  description: Ids of the tenants that failed or timed out. In a failed task Ansible's own C(failed) flag (true)
    takes this key, so use RV(failed_tenants) there.
  returned: success
  type: list
  elements: str
  sample: []
failed_tenants:
  description: Ids of the tenants that failed or timed out.
  returned: always
  type: list
  elements: str
  sample: [t07]
would_run:
  description: In check mode, the ids of the tenants that would run.
  returned: check mode
  type: list
  elements: str
  sample: [acme, globex]
state_file:
  description: The O(state_file) (null without one).
  returned: always
  type: str
  sample: /var/lib/app/tenant-migrate.json
executed_commands:
  description:
    - The commands that ran, shell-quoted, in the order they started (the tenants' commands as rendered for each
      unit, the database queries of O(tenants_query) and O(skip_up_to_date)). They never contain a value of O(env)
      nor O(login_password); those travel in the environment and in private files.
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/php artisan tenants:migrate --tenants=acme --force"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module
from ansible_collections.safeship.webapp.plugins.module_utils._tenant_migrate import (
    MUTUALLY_EXCLUSIVE,
    REQUIRED_BY,
    REQUIRED_IF,
    REQUIRED_ONE_OF,
    argument_spec,
    run,
)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_one_of=REQUIRED_ONE_OF,
        required_if=REQUIRED_IF,
        required_by=REQUIRED_BY,
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
