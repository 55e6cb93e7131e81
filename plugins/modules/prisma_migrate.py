#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: prisma_migrate
short_description: Deploy, inspect and resolve Prisma migrations with the application's own Prisma CLI
version_added: 0.1.0
description:
  - Runs the Prisma CLI of a release (C(node_modules/.bin/prisma) in O(chdir)) for one O(command), with
    C(DATABASE_URL) in its environment, and reports what happened in terms of migrations.
  - B(deploy) (the default) runs C(prisma migrate status) first. A migration that failed earlier in the database
    (C(P3009), a C(_prisma_migrations) row without C(finished_at)) fails the task B(before) C(prisma migrate deploy)
    runs, naming the migration and how to resolve it. Otherwise C(prisma migrate deploy) runs and RV(applied) lists
    what it applied; C(No pending migrations to apply) means C(changed=false). It runs even when the status says
    up to date, because Prisma's status does not list a migration marked rolled back, which deploy applies again.
    In check mode only the status runs and RV(pending) lists what would be applied (a migration marked rolled back
    cannot be seen there). A deploy that fails (C(P3018), or through a driver adapter the connector's error) fails
    the task with the failed migration, the database error, the migrations applied before it in this run, the
    state now (normally V(failed)) and the ways out.
  - B(generate) runs C(prisma generate) (the Prisma Client of the release).
  - B(status) is read-only - C(prisma migrate status), parsed exactly as M(safeship.webapp.migration_status) does.
  - B(resolve) marks a migration that is in a failed state as O(resolve_as=applied) or V(rolled-back)
    (C(prisma migrate resolve)). A migration that is not failed is left alone (C(changed=false)), so the task can
    be re-run. Prisma 6 needs its native schema engine for C(--rolled-back) even with a driver adapter; when that
    engine is not installed, the module makes the same change of C(_prisma_migrations) (C(rolled_back_at) set on
    the failed row) through C(prisma db execute) and says so in RV(method) and a warning.
  - B(exec) runs any other Prisma subcommand, O(prisma_args). C(migrate reset), C(--force-reset) and
    C(--accept-data-loss) destroy data and are refused before anything runs unless O(allow_destructive=true).
  - B(Secrets.) O(database_url) and every value of O(env) travel in the environment of the CLI, never in
    its arguments (an argument holding one is refused), and are masked as C(********) in every returned text, the
    password of a URL too (as written and URL-decoded).
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  chdir:
    description:
      - The release (project) directory, where C(package.json), C(prisma/) and C(node_modules/) are. Every command
        runs there.
    type: path
    required: true
  command:
    description:
      - What to do; see the description.
    type: str
    default: deploy
    choices: [deploy, generate, resolve, status, exec]
  prisma_binary:
    description:
      - The Prisma CLI. A relative path is taken from O(chdir).
      - Default C(<chdir>/node_modules/.bin/prisma), the application's own CLI. It must survive
        C(npm prune --omit=dev) - keep C(prisma) in C(dependencies), not C(devDependencies).
    type: path
  schema:
    description:
      - The Prisma schema (C(--schema)), relative to O(chdir) or absolute. Default Prisma's own choice
        (C(prisma.config.ts), else C(prisma/schema.prisma)). Its directory's C(migrations) folder is where the
        release's migrations are listed from.
    type: path
  database_url:
    description:
      - The database URL, passed to the CLI as the environment variable C(DATABASE_URL) (overrides one in
        O(env)). Never in an argument, masked in the output.
      - With a C(prisma.config.ts) Prisma does not read C(.env), so C(DATABASE_URL) must come from here, from
        O(env) or from the environment of the task - for C(generate) too, since the CLI reads the schema's
        C(env("DATABASE_URL")) to know its engine type.
    type: str
  env:
    description:
      - More variables for the CLI's environment (for example C(NODE_ENV) or a C(DATABASE_URL) under another
        name the schema reads).
      - Every value is treated as a secret and masked as C(********) wherever it appears in the result.
      - The alias O(environment) is deprecated and will be removed in 2.0.0; in this collection O(environment)
        names the deploy environment (as in M(safeship.webapp.notify)), O(env) is always process variables.
    type: dict
    default: {}
    aliases: [environment]
  timeout:
    description:
      - Seconds each Prisma command may run (fractions allowed). At the timeout its whole process group gets
        SIGTERM, then SIGKILL 5 seconds later, and the task fails.
    type: float
    default: 900
  resolve_migration:
    description:
      - For O(command=resolve), the migration to mark, as named in C(prisma/migrations) (for example
        V(20250301000000_note_author)).
    type: str
  resolve_as:
    description:
      - For O(command=resolve), V(rolled-back) when the failed migration was undone by hand (it runs again on the
        next deploy), V(applied) when it was completed by hand (it will not run again).
    type: str
    choices: [applied, rolled-back]
  prisma_args:
    description:
      - For O(command=exec), a Prisma subcommand and its arguments, for example V([db, push]) or
        V([migrate, diff, --from-schema-datasource, prisma/schema.prisma, --to-schema-datamodel, prisma/schema.prisma]).
    type: list
    elements: str
  allow_destructive:
    description:
      - Allow O(prisma_args) that destroy data (C(migrate reset), C(--force-reset), C(--accept-data-loss)).
        Never in production.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - V(deploy) and V(resolve) run the read-only C(prisma migrate status) and report what they would do; V(status)
        runs as usual; V(generate) and V(exec) run nothing and report C(changed=true).
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The CLI runs with C(LANG=C), C(NO_COLOR=1), C(FORCE_COLOR=0), C(PRISMA_HIDE_UPDATE_MESSAGE=1) and
    C(CHECKPOINT_DISABLE=1) (no update check or telemetry call from a deploy).
  - Run it once per database (C(run_once)), under a lock, like every migration; Prisma also takes an advisory lock.
seealso:
  - module: safeship.webapp.migration_status
  - module: safeship.webapp.db_backup
"""

EXAMPLES = r"""
- name: Apply the release's pending migrations (once for all hosts)
  safeship.webapp.prisma_migrate:
    chdir: "{{ release_path }}"
    database_url: "{{ vault_database_url }}"
  run_once: true
  register: migrated

- name: Show what was applied
  ansible.builtin.debug:
    msg: "applied {{ migrated.applied }}, state {{ migrated.state }}"

- name: Generate the Prisma Client in the release
  safeship.webapp.prisma_migrate:
    chdir: "{{ release_path }}"
    command: generate
    database_url: "{{ vault_database_url }}"

- name: A failed migration was undone by hand; mark it rolled back so the fixed release deploys it again
  safeship.webapp.prisma_migrate:
    chdir: "{{ release_path }}"
    command: resolve
    resolve_migration: 20250301000000_note_author
    resolve_as: rolled-back
    database_url: "{{ vault_database_url }}"

- name: Push the schema to a throwaway review database (reset allowed there only)
  safeship.webapp.prisma_migrate:
    chdir: "{{ release_path }}"
    command: exec
    prisma_args: [db, push, --force-reset]
    allow_destructive: "{{ deploy_environment == 'review' }}"
    database_url: "{{ review_database_url }}"
"""

RETURN = r"""
command:
  description: The O(command) that ran.
  returned: always
  type: str
  sample: deploy
state:
  description:
    - The migration state of the database after the task, as M(safeship.webapp.migration_status) reports it -
      V(up_to_date), V(pending), V(failed), V(not_installed), V(drift) or V(error). In check mode, the state
      before.
  returned: when command is deploy, resolve or status
  type: str
  sample: up_to_date
pending:
  description: Migrations pending before the task (for O(command=resolve) and V(status), at the end).
  returned: when command is deploy, resolve or status
  type: list
  elements: str
  sample: [20250201000000_note_pinned]
applied:
  description:
    - For V(deploy), the migrations this run applied (empty in check mode and when nothing was pending). For
      V(status), the release's migrations applied in the database.
  returned: when command is deploy or status
  type: list
  elements: str
  sample: [20250201000000_note_pinned]
failed_migration:
  description: The migration that failed (in this deploy, or earlier and blocking it); null when none.
  returned: when command is deploy or status
  type: str
  sample: 20250301000000_note_author
failed_migrations:
  description: For V(status), every migration in a failed state.
  returned: when command is status
  type: list
  elements: str
  sample: [20250301000000_note_author]
error_code:
  description: Prisma's error code of a failed deploy (V(P3018), V(P3009)) when it printed one; through a driver
    adapter Prisma 6 prints none for a failed migration.
  returned: when command is deploy
  type: str
  sample: P3009
method:
  description: For V(resolve), how the migration was marked - V(prisma migrate resolve) or V(_prisma_migrations)
    (the fallback described above); null when nothing was done.
  returned: when command is resolve
  type: str
  sample: prisma migrate resolve
destructive:
  description: For V(exec), the destructive items found in O(prisma_args) (allowed by O(allow_destructive)).
  returned: when command is exec
  type: list
  elements: str
  sample: []
message:
  description: What happened or would happen, in words (check mode plans, a no-op resolve, the status message).
  returned: sometimes
  type: str
  sample: would apply 1 migration(s) - 20250201000000_note_pinned
prisma_rc:
  description:
    - Exit code of the last Prisma command that ran (C(prisma migrate status) exits 1 for pending or failed
      migrations too). Not named C(rc), since Ansible fails a task whose result has a non-zero C(rc).
  returned: when a command ran
  type: int
  sample: 0
stdout_tail:
  description: The last 40 lines of the last Prisma command's output (stdout and stderr), secrets masked.
  returned: when a command ran
  type: str
  sample: All migrations have been successfully applied.
executed_commands:
  description: Every command run, in order, as shell-quoted strings (never a secret in them).
  returned: always
  type: list
  elements: str
  sample: [/srv/app/releases/42/node_modules/.bin/prisma migrate status]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module
from ansible_collections.safeship.webapp.plugins.module_utils._prisma_migrate import (
    REQUIRED_BY,
    REQUIRED_IF,
    argument_spec,
    run,
)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=REQUIRED_IF,
        required_by=REQUIRED_BY,
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
