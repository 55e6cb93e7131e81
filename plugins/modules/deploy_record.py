#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: deploy_record
short_description: Record a deploy as one JSON line and keep the Markdown changelog of deploys in step
version_added: 0.1.0
description:
  - With O(state=present), validates O(record) (what was deployed, by whom, when, how long each phase took, downtime,
    backups with their sha256, migrations applied centrally and per tenant, the health check, whether it was rolled
    back and why) and stores it as one JSON line in C(<app_root>/.safeship/deploys.jsonl).
  - Then regenerates the Markdown changelog C(<app_root>/.safeship/deploys.md) from all the records, newest first
    (date, version, environment, result, downtime, migrations, backups with a short sha256, health, phases, changes,
    and the error of a failed or rolled back deploy), so the changelog always matches the records. The entry of this
    record is returned in RV(entry).
  - One record per O(record.deploy_id). Recording the same record again changes nothing; a different record with the
    same O(record.deploy_id) replaces the earlier one (the file is rewritten atomically). Appends are single writes
    under a lock, so concurrent runs never interleave or lose lines.
  - An invalid record fails the task with one message listing every problem, and nothing is written.
  - With O(state=query), returns the last O(count) records, newest first, optionally only those of an O(environment)
    or O(app); never changes anything.
  - Both files are created with mode 0644 (the application's user may read what was deployed), so a record must not
    hold secrets. An existing file keeps its mode.
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  app_root:
    description:
      - The application's root directory (the one holding C(releases/) and C(current)). The records go to
        C(<app_root>/.safeship/deploys.jsonl) and C(<app_root>/.safeship/deploys.md); C(.safeship) is created
        (mode 0755) when missing.
      - One of O(app_root) and O(path) is required.
    type: path
  path:
    description:
      - The JSON lines file of records, instead of the one under O(app_root). Its directory must exist.
    type: path
  changelog_path:
    description:
      - The Markdown changelog. Defaults to C(<app_root>/.safeship/deploys.md), or, with O(path), to O(path) with
        its extension replaced by C(.md). Its directory must exist unless it is the O(app_root) state directory.
    type: path
  state:
    description:
      - V(present) records O(record) and regenerates the changelog; V(query) returns records.
    type: str
    choices: [present, query]
    default: present
  record:
    description:
      - The deploy's record. Required with O(state=present).
      - Unknown keys are refused (a misspelt key would otherwise vanish); put anything else under O(record.extra).
      - Keys whose value is C(null) or an empty string are left out.
    type: dict
    suboptions:
      deploy_id:
        description:
          - Unique id of the deploy, the same on every host (for instance a UTC timestamp). 1 to 128 letters,
            digits, C(_), C(.), C(:), C(+) or C(-).
        type: str
        required: true
      app:
        description: Application name.
        type: str
        required: true
      environment:
        description: Environment deployed to, for instance V(production).
        type: str
      version:
        description:
          - Version deployed, a string. A number is refused rather than converted, since YAML has already turned an
            unquoted V(1.10) into V(1.1); quote versions.
        type: raw
      tag:
        description: Git tag deployed, a string.
        type: raw
      git_sha:
        description: Commit deployed (hexadecimal, 4 to 64 digits).
        type: str
      user:
        description: Who ran the deploy.
        type: str
      started:
        description:
          - When the deploy started, ISO 8601 with a time zone (V(2024-05-01T10:00:00Z), V(2024-05-01T12:00:00+02:00),
            C(ansible_date_time.iso8601)) or seconds since the epoch. Stored in UTC to the second.
        type: raw
        required: true
      finished:
        description: When the deploy ended, in the same forms as O(record.started); not before it.
        type: raw
      phases:
        description: "Seconds each phase took, by phase name, in the order given (for instance V({backup: 12.5,
          migrate: 40, switch: 0.4}))."
        type: dict
      downtime_seconds:
        description: Seconds the application did not serve (V(0) for a zero-downtime switch).
        type: float
      backups:
        description:
          - The backups taken, each with C(path) (absolute), C(sha256) (64 hexadecimal digits) and optionally
            C(database) and C(size). A registered M(safeship.webapp.db_backup) result can be given as is (C(sha256),
            C(database) and C(size) are taken from its manifest); other keys of an item are ignored.
        type: list
        elements: dict
      migrations:
        description:
          - C(central), the list of migrations applied to the central database, and C(tenants), a mapping with
            C(count) (tenants migrated), C(failed) (a number, or the list of tenants that failed) and any other
            counts. No other keys.
        type: dict
      health:
        description: "The health check's outcome, any JSON mapping (for instance V({status: 200, version: 1.4.2}))."
        type: dict
      rolled_back:
        description: Whether the deploy was rolled back.
        type: bool
      error:
        description:
          - What failed, for a failed or rolled back deploy. May span lines; terminal colour codes are removed and
            other control characters replaced. At most 65536 characters.
        type: str
      changes:
        description: What changed, one line per item.
        type: list
        elements: str
      extra:
        description: Anything else worth keeping, any JSON mapping. Shown in the changelog.
        type: dict
  count:
    description:
      - With O(state=query), how many records to return (the newest).
    type: int
    default: 10
  environment:
    description:
      - With O(state=query), only records of this environment.
    type: str
  app:
    description:
      - With O(state=query), only records of this application.
    type: str
attributes:
  check_mode:
    support: full
    details: Validates the record and reports whether it would be added, updated or left unchanged, with its entry;
      writes nothing.
  diff_mode:
    support: full
    details: The record's JSON line and its changelog entry, before and after.
  platform:
    platforms: posix
seealso:
  - module: safeship.webapp.deploy_lock
  - module: safeship.webapp.db_backup
"""

EXAMPLES = r"""
- name: Record the deploy and update the changelog
  safeship.webapp.deploy_record:
    app_root: /srv/shop
    record:
      deploy_id: "{{ deploy_id }}"
      app: shop
      environment: production
      version: "1.4.2"
      tag: v1.4.2
      git_sha: "{{ git_result.after }}"
      user: "{{ lookup('ansible.builtin.env', 'USER') }}"
      started: "{{ deploy_started }}"
      finished: "{{ now(utc=true).isoformat() }}Z"
      phases:
        backup: 12.5
        migrate: 40
        switch: 0.4
      downtime_seconds: 0
      backups: ["{{ backup_result }}"]
      migrations:
        central: "{{ migrate_result.applied | default([]) }}"
        tenants:
          count: 120
          failed: 0
      health:
        status: 200
        version: "1.4.2"
      rolled_back: false
      changes:
        - "Checkout: one-click payment"
        - "Fix: invoice totals rounding"

- name: Record a deploy that was rolled back
  safeship.webapp.deploy_record:
    app_root: /srv/shop
    record:
      deploy_id: "{{ deploy_id }}"
      app: shop
      environment: production
      version: "1.4.3"
      started: "{{ deploy_started }}"
      finished: "{{ now(utc=true).isoformat() }}Z"
      rolled_back: true
      error: "{{ ansible_failed_result.msg | default('health check failed') }}"

- name: The last five production deploys
  safeship.webapp.deploy_record:
    app_root: /srv/shop
    state: query
    environment: production
    count: 5
  register: recent

- name: Show the version before the last one
  ansible.builtin.debug:
    msg: "{{ recent.records[1].version }}"
  when: recent.records | length > 1
"""

RETURN = r"""
record:
  description: The record as stored (validated, strings trimmed, times in UTC, numbers rounded to milliseconds).
  returned: state=present
  type: dict
  sample:
    deploy_id: "20240501T100000Z"
    app: shop
    environment: production
    version: "1.4.2"
    started: "2024-05-01T10:00:00Z"
    finished: "2024-05-01T10:07:12Z"
    downtime_seconds: 0
    backups: [{path: /var/backups/shop/shop_20240501.dump, sha256: 9f2c4e8a1b3d5f7091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8,
               database: shop}]
    rolled_back: false
action:
  description: What happened to the record, V(added), V(updated) (same deploy id, different content) or
    V(unchanged); in check mode, what would happen.
  returned: state=present
  type: str
  sample: added
entry:
  description: The Markdown changelog entry of the record, as written to RV(changelog_path).
  returned: state=present
  type: str
  sample: "## 2024-05-01 10:00 UTC · shop 1.4.2 → production\n\n- **Deploy:** 20240501T100000Z\n..."
records:
  description: With O(state=query), the last O(count) records (of O(environment) and O(app) when given), newest
    first by start time.
  returned: state=query
  type: list
  elements: dict
  sample: [{deploy_id: "20240501T100000Z", app: shop, version: "1.4.2", started: "2024-05-01T10:00:00Z"}]
total:
  description: With O(state=query), how many records match (before O(count) is applied).
  returned: state=query
  type: int
  sample: 42
path:
  description: The JSON lines file of records.
  returned: success
  type: str
  sample: /srv/shop/.safeship/deploys.jsonl
changelog_path:
  description: The Markdown changelog.
  returned: success
  type: str
  sample: /srv/shop/.safeship/deploys.md
problems:
  description: When O(record) is invalid, every problem found, one per item.
  returned: failure
  type: list
  elements: str
  sample: ["deploy_id is required", "downtime_seconds must be a number >= 0 (got -1)"]
executed_commands:
  description:
    - The commands the module ran, as every module of the collection returns them; always empty, this module runs
      no program.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module
from ansible_collections.safeship.webapp.plugins.module_utils._record import (
    REQUIRED_IF,
    REQUIRED_ONE_OF,
    argument_spec,
    run,
)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_one_of=REQUIRED_ONE_OF,
        required_if=REQUIRED_IF,
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
