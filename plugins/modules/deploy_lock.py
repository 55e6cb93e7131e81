#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: deploy_lock
short_description: Take or release the lock that keeps two deploys of an application from running at once
version_added: 0.1.0
description:
  - Acquires or releases a deploy lock, a small JSON file (for instance C(<app_root>/.safeship/deploy.lock)) naming
    who holds it (O(owner), user, host, process, O(playbook)), since when, why (O(reason)) and until when (O(ttl)).
  - "Acquiring is atomic: the complete file is written under a temporary name and hard-linked to O(path), which fails
    when O(path) exists. Of any number of concurrent deploys exactly one gets the lock; the others fail with a message
    naming the holder and how long it has held the lock. Nobody ever sees a half-written lock file."
  - Acquiring returns a RV(token). Releasing needs it (or O(force=true)), so a run whose lock was broken as stale
    cannot release the lock another run took since. Acquiring again with the same O(token) is idempotent and may
    extend O(ttl).
  - "A lock is stale when it has expired (O(ttl)) or when the process that holds it (O(pid)) is no longer running
    on the host that holds the lock. A stale lock is never taken over silently: the task fails saying why the lock
    is stale, and only O(break_stale=true) breaks it. Breaking is race-free: of two runs breaking the same stale
    lock, one gets the lock and the other fails naming it."
  - A lock that is not held is simply not released (C(changed=false)).
  - Release the lock in the C(always) section of a C(block), so a failed deploy does not leave it behind; O(ttl)
    and O(pid) let the next deploy break the lock of a run that was killed.
  - Next to the lock the module keeps an empty file C(.<name>.guard) that it locks (flock) for the milliseconds it
    takes to replace or remove the lock file; it is not a lock anyone holds and may stay.
  - The lock file stores the sha256 of the token, not the token, and is readable by everyone (mode 0644) so anyone
    who can enter its directory can see who holds the lock.
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  path:
    description:
      - The lock file, for instance C(/srv/app/.safeship/deploy.lock).
      - When acquiring, missing directories of the path are created, top down; the lock's own directory with mode
        0750, any missing one above it with mode 0755 (as M(safeship.webapp.release) creates an application root,
        so the web server's user can still enter it). Directories that exist are left as they are. In check mode
        nothing is created; RV(created_directories) says what would be.
    type: path
    required: true
  state:
    description:
      - V(acquired) takes the lock (or confirms it is held with O(token)); V(released) gives it back.
    type: str
    choices: [acquired, released]
    default: acquired
  owner:
    description:
      - Who holds the lock, shown to anyone who finds it held. Defaults to C(user@host) of the user running the task
        on the host that holds the lock (C(SUDO_USER) when O(ignore:become) used sudo), which is rarely the person
        behind the deploy; pass the controller's user instead, for instance
        V({{ lookup('ansible.builtin.env', 'USER') }}@{{ lookup('ansible.builtin.pipe', 'hostname') }}), or
        C(awx_user_name) under AWX.
      - When re-acquiring with O(token), a given O(owner) replaces the recorded one; an omitted one keeps it.
    type: str
  reason:
    description:
      - Why the lock is held, for instance V(deploy 1.4.2 to production). Shown in the holder's description.
    type: str
  playbook:
    description:
      - Name of the playbook or job holding the lock, for instance V({{ ansible_play_name }}).
    type: str
  ttl:
    description:
      - How long the lock protects the deploy, from the time it was acquired. After that the lock is stale and
        O(break_stale=true) may break it (nothing breaks it by itself).
      - Seconds (V(7200)) or a duration made of days, hours, minutes and seconds (V(2h), V(90m), V(1h30m), V(1d)).
        The lock file stores the absolute expiry time.
      - Acquiring again with the same O(token) and a longer O(ttl) moves the expiry later (it never moves earlier);
        if the lock had already expired, the expiry counts again from now.
      - Without O(ttl) the lock never expires; it can then only be broken when its O(pid) is gone, or released with
        O(force=true).
    type: raw
  pid:
    description:
      - A process on the host that holds the lock whose life is the deploy's, typically the C(ansible-playbook)
        process. When it is no longer running the lock is stale. Its start time is recorded too, so a reused pid
        does not keep a dead run's lock alive.
      - "When omitted: if the module runs under C(ansible-playbook) on the same host (a lock on the controller, with
        C(delegate_to: localhost) or a local connection), the pid of that C(ansible-playbook) process is found and
        recorded. On a managed host reached over SSH no process there lives as long as the play (the module's own
        process and its parents end with the task), so no pid is recorded and only O(ttl) can make the lock stale."
      - Must be a running process on the host that holds the lock when acquiring.
    type: int
  token:
    description:
      - With O(state=acquired), acquire with this token instead of a random one; if the lock is already held with
        this token, acquiring is idempotent (and may update O(ttl), O(reason), O(owner), O(playbook), O(pid)).
        A unique value per run, such as the deploy id, makes re-running the acquire task safe.
      - With O(state=released), the token returned by the acquire task (RV(token)); required unless O(force=true).
      - 8 to 256 printable characters without spaces.
    type: str
  break_stale:
    description:
      - Break a stale lock (expired, or its O(pid) gone on this host) and take it. The holder replaced is returned
        in RV(broken). Without it a stale lock fails the task like a live one, saying why it is stale.
      - Never breaks a live lock, nor a file that is not a valid lock. Ignored with O(state=released).
    type: bool
    default: false
  force:
    description:
      - With O(state=released), release the lock whoever holds it and whatever O(token) is given, including a file
        at O(path) that is not a valid lock. For a human cleaning up after a dead run; not for playbooks.
      - Ignored with O(state=acquired).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Reports whether the lock would be acquired, broken, updated or released and fails as the real run would
      (held by someone else, stale without O(break_stale)); writes nothing. RV(token) is only returned when O(token)
      was given, since no lock is taken.
  diff_mode:
    support: full
    details: The holder before and after, as JSON.
  platform:
    platforms: posix
    details: Staleness by O(pid) and finding the C(ansible-playbook) process use Linux C(/proc); elsewhere only
      whether the pid is alive is checked.
notes:
  - The lock serialises deploys that use the same O(path) on the same host. For several app hosts, hold it on one
    host (for instance the first app host, or the controller with C(delegate_to) and C(run_once)).
  - Keep the lock on a local filesystem; it needs hard links and C(flock).
seealso:
  - module: safeship.webapp.deploy_record
"""

EXAMPLES = r"""
- name: Deploy under the lock
  block:
    - name: Take the deploy lock
      safeship.webapp.deploy_lock:
        path: /srv/app/.safeship/deploy.lock
        owner: "{{ lookup('ansible.builtin.env', 'USER') }}@{{ lookup('ansible.builtin.pipe', 'hostname') }}"
        reason: "deploy {{ app_version }} to {{ app_environment }}"
        playbook: "{{ ansible_play_name }}"
        token: "{{ deploy_id }}"
        ttl: 2h
      register: deploy_lock_result

    - name: The deploy itself
      ansible.builtin.debug:
        msg: "deploying {{ app_version }}"

  always:
    - name: Release the deploy lock, also when the deploy failed
      safeship.webapp.deploy_lock:
        path: /srv/app/.safeship/deploy.lock
        state: released
        token: "{{ deploy_lock_result.token | default(omit) }}"
      when: deploy_lock_result is succeeded

- name: Lock on the controller, stale as soon as this ansible-playbook process is gone
  safeship.webapp.deploy_lock:
    path: /var/lib/safeship/shop-production.lock
    reason: deploy
  delegate_to: localhost
  run_once: true
  register: controller_lock

- name: Take over the lock of a run that was killed (only if it has expired or its process is gone)
  safeship.webapp.deploy_lock:
    path: /srv/app/.safeship/deploy.lock
    reason: redeploy after a crashed run
    ttl: 1h
    break_stale: true

- name: Remove a lock left behind, whoever holds it (by hand, after checking nobody is deploying)
  safeship.webapp.deploy_lock:
    path: /srv/app/.safeship/deploy.lock
    state: released
    force: true
"""

RETURN = r"""
path:
  description: The lock file.
  returned: always
  type: str
  sample: /srv/app/.safeship/deploy.lock
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: lock acquired
token:
  description:
    - The token the lock is held with; pass it to the release task. Random unless O(token) was given.
    - C(null) when releasing, and in check mode when no O(token) was given.
  returned: always
  type: str
  sample: 2f1c0c8e6d4b4a3f9e7d5c1b0a9f8e7d6c5b4a39
holder:
  description:
    - Acquired or updated, the lock as it now is. Released, the lock that was released (C(null) if it was not held).
    - On failure, who holds the lock. For a file that is not a valid lock, C(owner) is C(null) and C(invalid) says
      what is wrong with it.
  returned: always
  type: dict
  contains:
    owner:
      description: O(owner).
      type: str
      sample: alice@laptop
    user:
      description: The user that ran the acquiring task on the host (C(SUDO_USER) when sudo was used).
      type: str
      sample: deploy
    host:
      description: Host name of the host that holds the lock.
      type: str
      sample: app1
    pid:
      description: O(pid), or the C(ansible-playbook) process found on the same host, or C(null).
      type: int
      sample: 41234
    playbook:
      description: O(playbook).
      type: str
      sample: deploy
    reason:
      description: O(reason).
      type: str
      sample: deploy 1.4.2 to production
    started:
      description: When the lock was acquired (UTC, ISO 8601).
      type: str
      sample: "2024-05-01T10:00:00Z"
    expires:
      description: When the lock expires (UTC, ISO 8601), or C(null).
      type: str
      sample: "2024-05-01T12:00:00Z"
    ttl:
      description: O(ttl) in seconds, or C(null).
      type: int
      sample: 7200
  sample:
    owner: alice@laptop
    user: deploy
    host: app1
    pid: null
    playbook: deploy
    reason: deploy 1.4.2 to production
    started: "2024-05-01T10:00:00Z"
    expires: "2024-05-01T12:00:00Z"
    ttl: 7200
age:
  description: Seconds since RV(holder) acquired the lock.
  returned: always
  type: int
  sample: 303
expires:
  description: RV(holder)'s expiry (UTC, ISO 8601), or C(null).
  returned: always
  type: str
  sample: "2024-05-01T12:00:00Z"
broken:
  description: The stale holder that O(break_stale=true) replaced, with C(stale), the reasons it was stale;
    C(null) when no lock was broken.
  returned: always
  type: dict
  sample:
    owner: bob@ci
    host: app1
    pid: 40001
    started: "2024-04-30T22:00:00Z"
    expires: "2024-05-01T00:00:00Z"
    stale: ["it expired at 2024-05-01T00:00:00Z (10h ago)"]
stale:
  description: On failure, why the lock is stale (empty when it is live).
  returned: failure
  type: list
  elements: str
  sample: ["its process 40001 is no longer running on app1"]
created_directories:
  description:
    - The directories of O(path) that were missing and were created, top down (in check mode, that would be
      created). Empty when releasing.
  returned: success
  type: list
  elements: str
  sample: [/srv/app, /srv/app/.safeship]
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

from ansible_collections.safeship.webapp.plugins.module_utils._lock import argument_spec, run
from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module, run)


if __name__ == "__main__":
    main()
