#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: release
short_description: Create, mark, switch atomically, roll back and clean up the releases of a web application
version_added: 0.1.0
description:
  - Manages the classic release layout under O(app_root) C(releases/<id>) (one directory per release),
    C(shared/) (files and directories that outlive releases, such as C(storage) or C(.env)) and C(current), a
    B(relative) symlink C(releases/<id>) that the web server and workers serve from.
  - Every release has a status, kept with its creation order, version, git commit, backup references and
    timestamps in C(<app_root>/.safeship/releases.json), updated under an exclusive lock and written atomically.
    C(building) (created, not built yet), C(ready) (built), C(live) (current, not yet proven healthy), C(good)
    (proven healthy), C(bad) (failed), C(rolled_back) (left by a rollback).
  - The current release is always read from the C(current) symlink, never guessed from modification times. A
    C(current) that is a real directory (a deploy made by hand) or that points nowhere ends with a clear error that
    says how to fix it.
  - Switching is atomic. A new symlink is made under a temporary name next to C(current) and renamed over it, so a
    request resolving C(current) at any moment finds the old or the new release, never nothing.
  - Rollback goes to the newest good release other than the current one, or to O(to), and refuses a release that
    is still building or is marked bad.
  - Cleanup keeps the O(keep) newest releases by creation order and never deletes the current release, the newest
    good release, the release a rollback would go to, or a protected one; bad releases are kept for inspection
    (O(keep_bad)) and half-built releases left by cancelled deploys are removed.
  - Without C(releases.json) (an application deployed before, by hand or by another tool), the directories in
    C(releases/) are adopted, ordered by name, as C(ready), and the one C(current) points to as C(live).
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  app_root:
    description:
      - The application's directory, holding C(releases/), C(shared/), C(current) and C(.safeship/).
      - Created by O(state=present) when missing. Every other state needs it to exist.
    type: path
    required: true
  release_id:
    description:
      - The release to act on; its directory is C(<app_root>/releases/<release_id>). Use one id for all hosts of a
        deploy, for example a UTC timestamp (V(20261122T153000Z)) or a tag (V(v1.4.2)).
      - Letters, digits, V(.), V(_), V(-) and V(+), starting with a letter or digit, at most 128 characters;
        no V(/) and no V(..).
      - Required for O(state=present), O(state=ready), O(state=switched), O(state=good) and O(state=bad).
      - With O(state=rolled_back), the release being rolled back from. When it is no longer current the
        rollback has happened already and nothing changes, so a rescue block can run it again safely.
      - With O(state=cleaned), a release to keep besides those kept anyway.
    type: str
  state:
    description:
      - V(present) creates C(releases/<release_id>) with status C(building). An existing one is left as it is.
        Nothing is recorded for the release until this runs, unless its directory already exists (for example
        after M(ansible.builtin.git) cloned into it), in which case the directory is recorded as it is.
      - V(ready) marks a built release C(ready) (a release past building keeps its status). The directory must
        exist.
      - V(switched) points C(current) at the release, atomically. Only C(ready), C(live), C(good) and
        C(rolled_back) releases may be switched to. The release becomes C(live) (a C(good) one stays C(good)); the
        release it replaces goes from C(live) back to C(ready) (C(good) stays C(good)).
      - V(good) marks the release healthy; V(bad) marks it failed. Marking the current release bad does not switch
        away from it (roll back for that) and adds a warning.
      - V(rolled_back) switches C(current) to O(to), or to the newest C(good) release other than the current one,
        and marks the release it leaves C(rolled_back) (a C(bad) one stays C(bad)).
      - V(cleaned) removes old releases; see O(keep) and O(keep_bad).
      - O(shared_paths) and O(shared_files) are linked by V(present) (when the directory exists) and V(ready).
    type: str
    choices: [present, ready, switched, good, bad, rolled_back, cleaned]
    default: present
  to:
    description:
      - With O(state=rolled_back), the release to roll back to instead of the newest good one. It must not be
        building or bad.
    type: str
  keep:
    description:
      - With O(state=cleaned), how many releases to keep, the newest by creation order. Bad and half-built releases
        do not count.
      - The current release, the newest good release, the release a rollback would go to (the newest good one
        other than the current) and protected releases are kept besides these.
    type: int
    default: 5
  keep_bad:
    description:
      - With O(state=cleaned), how many of the newest C(bad) releases to keep for inspection.
    type: int
    default: 2
  shared_paths:
    description:
      - Paths relative to the release (V(storage), V(bootstrap/cache), V(.env)) that live in C(<app_root>/shared/)
        and are linked into the release with a relative symlink.
      - The first time (C(shared/) lacks the path) the release's own copy, a file or a directory, is moved into
        C(shared/); if the release has none either, an empty directory is created there. Later releases get their
        copy replaced by the link.
      - Absolute paths, V(..), and a path inside another shared path are refused. A parent directory that is a
        symlink (in the release or in C(shared/)) is refused, so a link in the code never leads the move elsewhere.
    type: list
    elements: str
    default: []
  shared_files:
    description:
      - Like O(shared_paths), but when neither C(shared/) nor the release has the path an empty file (mode 0640)
        is created in C(shared/) rather than a directory.
    type: list
    elements: str
    default: []
  version:
    description:
      - Version of the application in the release, recorded with it.
    type: str
  git_sha:
    description:
      - Git commit of the release (7 to 64 hexadecimal digits), recorded with it.
    type: str
  backups:
    description:
      - Backups taken for this deploy, recorded with the release so a rollback can find the database backup
        that matches it. Replaces the list recorded before.
      - Each entry needs C(path); other plain values (C(sha256), C(size), C(label)...) are kept. A registered
        M(safeship.webapp.db_backup) result can be given as it is; its manifest's engine, database, label and
        creation time are kept too.
    type: list
    elements: dict
  protected:
    description:
      - Protect the release from cleanup (V(true)) or lift the protection (V(false)). Unchanged when not given.
    type: bool
  owner:
    description:
      - Owner of the directories and files the module creates (the release directory, C(releases/), C(shared/)
        and the shared paths it creates). Moved files keep theirs.
    type: str
  group:
    description:
      - Group of the directories and files the module creates.
    type: str
  mode:
    description:
      - Mode of the directories the module creates. Quote it (V('0755')) so YAML does not read it as a number.
    type: raw
    default: '0755'
  writable_paths:
    description:
      - Directories relative to the release that the application writes (Laravel's V(storage/framework/views),
        V(bootstrap/cache)), handled by O(state=present) and O(state=ready) after the shared paths are linked.
      - A path inside a shared path is handled in C(shared/). Missing directories are created with
        O(writable_mode), O(writable_owner) and O(writable_group); everything below each path (symlinks not
        followed) is given O(writable_owner) and O(writable_group), in one pass, so the web server never meets a
        file it cannot write.
      - Absolute paths, V(..), and a parent directory that is a symlink are refused.
    type: list
    elements: str
    default: []
  writable_owner:
    description:
      - Owner of O(writable_paths) and everything below them (the web server's user, such as V(www-data)).
    type: str
  writable_group:
    description:
      - Group of O(writable_paths) and everything below them.
    type: str
  writable_mode:
    description:
      - Mode of the O(writable_paths) directories the module creates; existing ones keep theirs. Quote it.
    type: raw
    default: '0775'
notes:
  - O(version), O(git_sha), O(backups) and O(protected) are recorded by O(state=present), O(state=ready),
    O(state=switched), O(state=good) and O(state=bad).
  - Creation order is a sequence number in C(releases.json); modification times are never used.
  - Releases in C(releases/) that C(releases.json) does not list (once it exists) are reported as RV(unmanaged) and
    never touched, except the one C(current) points to, which is adopted as C(live).
attributes:
  check_mode:
    support: full
    details: Plans the same way and reports what would change; writes nothing.
  diff_mode:
    support: full
    details: The current release and the status of each release, before and after.
  platform:
    platforms: posix
seealso:
  - module: safeship.webapp.db_backup
  - module: ansible.builtin.git
"""

EXAMPLES = r"""
- name: Create the new release directory
  safeship.webapp.release:
    app_root: /srv/shop
    release_id: "{{ release_id }}"
    version: "{{ app_version }}"
    git_sha: "{{ git_sha }}"
    backups: "{{ [central_backup] }}"
    owner: deploy
    group: www-data

- name: Check out the code into it
  ansible.builtin.git:
    repo: https://git.example.com/shop.git
    dest: /srv/shop/releases/{{ release_id }}
    version: "{{ app_version }}"
  become: true
  become_user: deploy

- name: Link storage, the bootstrap cache and .env from shared/ before building
  safeship.webapp.release:
    app_root: /srv/shop
    release_id: "{{ release_id }}"
    shared_paths: [storage, bootstrap/cache]
    shared_files: [.env]

- name: Mark it built once composer and npm are done
  safeship.webapp.release:
    app_root: /srv/shop
    release_id: "{{ release_id }}"
    state: ready

- name: Serve it
  safeship.webapp.release:
    app_root: /srv/shop
    release_id: "{{ release_id }}"
    state: switched
  register: switch

- name: Healthy
  safeship.webapp.release:
    app_root: /srv/shop
    release_id: "{{ release_id }}"
    state: good

- name: Unhealthy - roll back to the last good release (running it again changes nothing)
  safeship.webapp.release:
    app_root: /srv/shop
    release_id: "{{ release_id }}"
    state: rolled_back
  register: rollback

- name: Roll back to a named release
  safeship.webapp.release:
    app_root: /srv/shop
    state: rolled_back
    to: v1.4.1

- name: Keep a release whatever cleanup decides
  safeship.webapp.release:
    app_root: /srv/shop
    release_id: v1.4.1
    state: good
    protected: true

- name: Clean up old releases
  safeship.webapp.release:
    app_root: /srv/shop
    state: cleaned
    keep: 5
    keep_bad: 2
"""

RETURN = r"""
app_root:
  description: The application's directory.
  returned: always
  type: str
  sample: /srv/shop
current:
  description: The release C(current) points to after the task (in check mode, would point to); null when there is
    none yet.
  returned: always
  type: str
  sample: "20261122T153000Z"
previous:
  description: The release that was current before RV(current) became current (after a rollback, the release
    rolled back from); null when unknown.
  returned: always
  type: str
  sample: "20261120T101500Z"
last_good:
  description: The newest release marked good; null when none is.
  returned: always
  type: str
  sample: "20261120T101500Z"
releases:
  description: Every recorded release, oldest first, as recorded in C(releases.json) plus RV(releases[].path) and
    RV(releases[].current).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The release id.
      type: str
    seq:
      description: Creation order.
      type: int
    created:
      description: When it was recorded, UTC, ISO 8601.
      type: str
    status:
      description: One of C(building), C(ready), C(live), C(good), C(bad), C(rolled_back).
      type: str
    version:
      description: O(version) as recorded.
      type: str
    git_sha:
      description: O(git_sha) as recorded.
      type: str
    backups:
      description: O(backups) as recorded.
      type: list
      elements: dict
    protected:
      description: Whether cleanup must keep it.
      type: bool
    adopted:
      description: When the module found the directory on disk instead of creating it; absent otherwise.
      type: str
    ready_at:
      description: Last time it became C(ready); likewise C(live_at), C(good_at), C(bad_at), C(rolled_back_at).
      type: str
    switched_at:
      description: Last time C(current) was switched to it.
      type: str
    path:
      description: Its directory.
      type: str
    current:
      description: Whether it is the current release.
      type: bool
  sample:
    - {id: "20261120T101500Z", seq: 1, created: "2026-11-20T10:15:00Z", status: good, version: "1.4.1",
       git_sha: 3f2c1a7, backups: [], protected: false, path: /srv/shop/releases/20261120T101500Z, current: false}
    - {id: "20261122T153000Z", seq: 2, created: "2026-11-22T15:30:00Z", status: live, version: "1.4.2",
       git_sha: 9b8e0d4, backups: [{path: /var/backups/shop/app_20261122T152900Z.dump.zst, sha256: 9f86d0...}],
       protected: false, path: /srv/shop/releases/20261122T153000Z, current: true}
release:
  description: The release acted on (for a rollback, the one rolled back to), in the form of RV(releases) items;
    null when none (a rollback or cleanup with nothing to do).
  returned: always
  type: dict
  sample: {id: "20261122T153000Z", status: live, current: true, path: /srv/shop/releases/20261122T153000Z}
path:
  description: The directory of RV(release).
  returned: always
  type: str
  sample: /srv/shop/releases/20261122T153000Z
switched_from:
  description: The release C(current) pointed to before the switch; null when it did not change or there was none.
  returned: when O(state=switched)
  type: str
  sample: "20261120T101500Z"
rollback:
  description: The releases rolled back from and to; null when nothing was rolled back.
  returned: when O(state=rolled_back)
  type: dict
  sample: {from: "20261122T153000Z", to: "20261120T101500Z"}
shared:
  description: What was done (or in check mode would be done) for each shared path. C(action) is C(unchanged),
    C(linked) (shared copy existed, release had none), C(replaced) (the release's copy was deleted in favour of
    the shared one), C(moved) (the release's copy became the shared one) or C(created) (an empty directory or
    file was created in C(shared/)).
  returned: when O(shared_paths) or O(shared_files) are given with O(state=present) or O(state=ready)
  type: list
  elements: dict
  sample: [{path: storage, action: moved, link: /srv/shop/releases/20261122T153000Z/storage,
            target: ../../shared/storage}]
writable:
  description: For each of O(writable_paths), where it lives (C(target)), whether its directory was created and
    how many entries below it were given O(writable_owner)/O(writable_group) (C(chowned)); in check mode, what
    would be done.
  returned: when O(writable_paths) is given with O(state=present) or O(state=ready)
  type: list
  elements: dict
  sample: [{path: storage/framework/views, target: /srv/shop/shared/storage/framework/views, created: true,
            chowned: 0}]
removed:
  description: Ids of the releases removed (in check mode, that would be removed).
  returned: when O(state=cleaned)
  type: list
  elements: str
  sample: ["20261001T090000Z", "20261005T120000Z"]
removed_releases:
  description: The records of the removed releases (with their backup references), as they were.
  returned: when O(state=cleaned)
  type: list
  elements: dict
forgotten:
  description: Ids of releases whose directory had disappeared, dropped from C(releases.json).
  returned: when O(state=cleaned)
  type: list
  elements: str
  sample: []
removed_stale:
  description: Leftovers of interrupted runs removed (temporary C(current.*) links, half-deleted releases).
  returned: when O(state=cleaned)
  type: list
  elements: str
  sample: []
adopted:
  description: Releases found on disk and recorded by this run.
  returned: when some were adopted
  type: list
  elements: str
  sample: ["20260901T080000Z"]
unmanaged:
  description: Directories in C(releases/) that C(releases.json) does not list; they are never touched.
  returned: always
  type: list
  elements: str
  sample: []
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
from ansible_collections.safeship.webapp.plugins.module_utils._release import REQUIRED_IF, argument_spec, run


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=REQUIRED_IF, supports_check_mode=True)
    run_module(module, run)


if __name__ == "__main__":
    main()
