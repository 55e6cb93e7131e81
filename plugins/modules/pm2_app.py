#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: pm2_app
short_description: Start, reload, restart, stop or delete pm2 apps and wait until every instance is online and stable
version_added: 0.1.0
description:
  - Manages Node.js apps under L(pm2,https://pm2.keymetrics.io/) from an ecosystem file (O(ecosystem)), from a
    script (O(script)), or by the name of an app pm2 already knows (O(name) alone).
  - After a start, reload or restart the task waits until every instance of the app is C(online), the instance count
    is the one asked for, after a reload or restart every pid is new, and the restart count has not moved for
    O(stable_seconds). An instance that is C(errored), a restart count that climbs while waiting (a crash loop) or an
    app that is not online within O(wait_online_timeout) fails the task with the app's name, status and restarts,
    and the last lines of its error log. When the app could not listen because its port is taken, the message says
    first which port is already in use (EADDRINUSE).
  - In cluster mode pm2 never writes an exception thrown while the app starts to the error log; the module listens
    on pm2's event bus while it acts, so such an exception still appears in the message.
  - Idempotent. O(state=started) on an app whose instances are all online changes nothing; O(state=stopped) and
    O(state=absent) on an unknown app change nothing.
  - A pm2 daemon that does not run is never spawned by O(state=stopped), O(state=absent) or check mode (any pm2
    command would spawn one); without a daemon there are no apps.
  - The results never carry an app's environment. pm2 keeps the whole environment of an app (secrets included) in
    its process list; only a fixed list of harmless fields is returned.
  - Commands that can start the pm2 daemon or an app run with the caller's locale and umask, since pm2 hands both
    on to the apps; O(env) is given only to the commands that start, reload or restart the apps.
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  name:
    description:
      - The app.
      - With O(ecosystem), only this app of the file (C(--only NAME)); without it, every app in the file.
      - With O(script), the name the app gets.
      - Alone, an app pm2 already knows; it can be reloaded, restarted, stopped or deleted, or started again when it
        is stopped. An unknown app fails O(state=started), O(state=reloaded) and O(state=restarted).
      - Letters, digits, V(_), V(-), V(.), V(:), V(@) and V(+); not V(all) and not a number (pm2 would read those as
        every app or as a pm_id).
    type: str
  ecosystem:
    description:
      - An ecosystem file (V(.config.js), V(.js), V(.cjs), V(.json), V(.yml) or V(.yaml)) declaring C(apps), a list of
        apps each with C(name) and C(script).
      - Checked before anything runs. JavaScript files are loaded with C(node) as pm2 loads them (a syntax error is
        reported with file and line); JSON (strict JSON) and YAML files are parsed by the module. A file that does
        not exist, does not load, has no C(apps), an app without C(name) or C(script), or lacks the app O(name)
        fails the task before pm2 is called.
      - pm2 resolves relative paths of the file (C(cwd), C(script)) against its working directory, so pm2 runs in
        the directory of the file.
      - Reload and restart go through the file (pm2 applies its changed settings and env), or, with
        O(update_env=false), by name (pm2 keeps what it recorded). pm2 keeps the exec mode an app was started with;
        a different C(exec_mode) in the file gives a warning. The instance count is brought to the file's
        C(instances) with C(pm2 scale).
    type: path
  script:
    description:
      - Start the app from this script without an ecosystem (C(pm2 start SCRIPT --name NAME ...)), with O(cwd),
        O(args), O(instances), O(exec_mode), O(wait_ready), O(listen_timeout), O(kill_timeout) and O(interpreter).
      - These settings apply when pm2 starts the app. Reload and restart keep what pm2 recorded then; a warning
        says so when O(script) or O(exec_mode) differ from it (use O(state=absent) first to change them).
      - Relative to O(cwd).
    type: str
  cwd:
    description:
      - Working directory of the app started from O(script) (C(--cwd)). pm2 keeps a symlinked directory as given,
        so an app started in C(/srv/app/current) follows that link when reloaded.
    type: path
  args:
    description:
      - Arguments for the script (after C(--)).
    type: list
    elements: str
  instances:
    description:
      - Instances of the app started from O(script) (C(-i)). The default is 1.
    type: int
  exec_mode:
    description:
      - V(fork) or V(cluster) for the app started from O(script). The default is V(fork).
      - Only cluster mode reloads without downtime (with O(wait_ready)); in fork mode pm2's reload is a restart.
    type: str
    choices: [fork, cluster]
  wait_ready:
    description:
      - pm2 waits for the app's C(process.send('ready')) instead of its C(listening) event (C(--wait-ready)), for
        the app started from O(script).
    type: bool
  listen_timeout:
    description:
      - Milliseconds pm2 waits for the ready or listening event before it goes on anyway (C(--listen-timeout)).
    type: int
  kill_timeout:
    description:
      - Milliseconds between the SIGINT that asks the app to stop and the SIGKILL (C(--kill-timeout)).
    type: int
  interpreter:
    description:
      - Interpreter for the script (C(--interpreter)); pm2's default is C(node).
    type: str
  env:
    description:
      - Extra environment variables for the app. pm2 records them into the app's environment when it starts the app,
        and on reload or restart when O(update_env=true).
      - They reach pm2 only through the environment of the commands that start, reload or restart the app, never
        their arguments, and they are never returned. With O(ecosystem) they are merged into the C(env) (and
        C(env_<env_name>)) of the apps by a generated file that loads yours and reads the values from the
        environment, because pm2 drops the command's environment when it reloads through an ecosystem.
      - Every value is hidden in Ansible's output (no_log), wherever it appears, error messages included; give plain
        settings such as the port in O(public_env) or in the ecosystem file.
    type: dict
  public_env:
    description:
      - Environment variables that are not secret (C(PORT), C(NODE_ENV)), passed like O(env) but shown in Ansible's
        output, so a message such as C(port 3999 is already in use) stays readable. A variable in both takes its
        value from O(env).
    type: dict
  env_name:
    description:
      - Apply the ecosystem's C(env_<env_name>) block (C(--env NAME)). Every app acted on must have that block.
    type: str
  update_env:
    description:
      - Give pm2 C(--update-env) on reload and restart, so the app gets O(env) and, with O(ecosystem), the file's
        current env.
      - With V(false) and O(ecosystem), apps are reloaded and restarted by name, keeping the env pm2 recorded.
    type: bool
    default: true
  state:
    description:
      - V(started) starts the app when it is not running (changed); when every instance is online nothing changes
        (a different instance count is fixed with C(pm2 scale)).
      - V(reloaded) starts the app when pm2 does not know it, and reloads it otherwise (always changed). In fork mode
        pm2's reload is a restart, and a warning says so; zero downtime needs cluster mode with C(wait_ready).
      - V(restarted) starts the app when pm2 does not know it, and restarts it otherwise (always changed).
      - V(stopped) stops a running app (changed); a stopped, errored or unknown app is left alone.
      - V(absent) deletes the app from pm2 (changed); an unknown app is left alone.
    type: str
    choices: [started, reloaded, restarted, stopped, absent]
    default: started
  pm2_home:
    description:
      - C(PM2_HOME) for every pm2 command, that is which pm2 daemon (one per user and home).
      - Defaults to the C(PM2_HOME) of the module's environment, or C(~/.pm2) of the user the task runs as.
    type: path
  pm2_binary:
    description:
      - The pm2 program. Defaults to C(pm2) found in C(PATH).
    type: path
  wait_online_timeout:
    description:
      - Seconds to wait, after a start, reload or restart, until every instance is online and stable (and every
        one of O(health_checks) has passed). Fractions are allowed.
    type: float
    default: 60
  stable_seconds:
    description:
      - The stability window. Seconds the restart counts must stay unchanged, with every instance online, before
        the app counts as up.
    type: float
    default: 2.0
  health_checks:
    description:
      - HTTP checks of the app, probed again and again (with C(GET)) once every instance is online after a start,
        reload or restart, for as long as the module waits out O(stable_seconds).
      - The first answer with a 5xx status (not listed in its O(health_checks[].status_code)) fails the task at
        once, naming the app, the URL, the status and the start of the body, without waiting out the window (an
        app that said it is ready and answers 5xx is broken).
      - The task succeeds when the window has passed and each check has answered as expected at least once.
        A check that has not passed yet (connection refused, another status, a JSON value that differs) is
        probed past the window, up to O(wait_online_timeout).
      - Not probed in check mode, nor when nothing was started, reloaded or restarted. Only with O(state=started),
        O(state=reloaded) or O(state=restarted). What was probed is in RV(health).
    type: list
    elements: dict
    default: []
    suboptions:
      url:
        description:
          - The URL to C(GET), for example V(http://127.0.0.1:3000/health). Each URL once.
        type: str
        required: true
      status_code:
        description:
          - Statuses that count as the expected answer.
        type: list
        elements: int
        default: [200]
      json_expect:
        description:
          - Values the JSON answer must have, as a mapping of dotted path to value, compared as in
            M(safeship.webapp.health_probe)'s O(safeship.webapp.health_probe#module:json_expect) (JSON types
            included, so quote a version).
        type: dict
        default: {}
      headers:
        description:
          - Request headers, for example C(Host). Their values are hidden in the output (no_log).
        type: dict
        default: {}
      timeout:
        description:
          - Seconds one request may take.
        type: float
        default: 5
  save:
    description:
      - Run C(pm2 save --force) after a change (not when nothing changed, not in check mode), so the apps come back
        after a reboot with C(pm2 resurrect). The dump file (it holds the apps' environment) is made readable by its
        owner only.
    type: bool
    default: false
notes:
  - In cluster mode with C(wait_ready), when the new code crashes at start, C(pm2 reload) still exits 0 after about
    C(listen_timeout) per instance and replaces the old workers anyway, leaving every instance C(errored); this
    module then fails the task with the crash, but the app is down. Start a candidate copy of a new release first
    (for example O(script) in fork mode on another port) and reload only a release that started.
  - Requires pm2 (tested with 7.0) and Node.js on the managed host.
attributes:
  check_mode:
    support: full
    details: Reads pm2's process list when a daemon runs (never spawning one), validates the ecosystem, and reports
      what would be done; runs nothing else.
  diff_mode:
    support: full
    details: Status and instance count of each app before and after.
  platform:
    platforms: posix
seealso:
  - module: safeship.webapp.release
  - module: safeship.webapp.health_probe
  - name: pm2 ecosystem file
    description: pm2's documentation of the ecosystem file.
    link: https://pm2.keymetrics.io/docs/usage/application-declaration/
"""

EXAMPLES = r"""
- name: Start the apps of an ecosystem file (nothing changes when they are online)
  safeship.webapp.pm2_app:
    ecosystem: /srv/shop/current/ecosystem.config.js
    env_name: production
    pm2_home: /home/deploy/.pm2
  become: true
  become_user: deploy

- name: Start a candidate copy of the new release in fork mode on another port
  safeship.webapp.pm2_app:
    name: shop-candidate
    script: dist/server.js
    cwd: /srv/shop/releases/{{ release_id }}
    exec_mode: fork
    wait_ready: true
    listen_timeout: 10000
    public_env:
      PORT: "3999"
    env:
      PAYMENTS_API_KEY: "{{ vault_payments_api_key }}"
    wait_online_timeout: 30
  register: candidate

- name: Remove the candidate
  safeship.webapp.pm2_app:
    name: shop-candidate
    state: absent

- name: Reload the app onto the release current points to, with a secret from the vault
  safeship.webapp.pm2_app:
    ecosystem: /srv/shop/shared/ecosystem.config.js
    name: shop-api
    state: reloaded
    env:
      PAYMENTS_API_KEY: "{{ vault_payments_api_key }}"
    save: true
  register: reload

- name: Show that every worker was replaced
  ansible.builtin.assert:
    that:
      - reload.pids_after['shop-api'] | intersect(reload.pids_before['shop-api']) | length == 0

- name: Reload, and fail at once if the new release answers its health check with a 5xx
  safeship.webapp.pm2_app:
    ecosystem: /srv/shop/shared/ecosystem.config.js
    name: shop-api
    state: reloaded
    stable_seconds: 5
    health_checks:
      - url: http://127.0.0.1:3000/health
        json_expect:
          status: ok
          version: "{{ release_version }}"
  register: reload

- name: Stop a worker app pm2 already knows
  safeship.webapp.pm2_app:
    name: shop-queue
    state: stopped
"""

RETURN = r"""
state:
  description: O(state).
  returned: always
  type: str
  sample: reloaded
pm2_home:
  description: The C(PM2_HOME) used.
  returned: always
  type: str
  sample: /home/deploy/.pm2
daemon_was_running:
  description: Whether a pm2 daemon ran for RV(pm2_home) when the task began.
  returned: always
  type: bool
  sample: true
actions:
  description: What was done (in check mode, would be done) to each app, by name. C(start), C(restart), C(reload),
    C(scale), C(stop), C(delete) or C(none).
  returned: always
  type: dict
  sample: {shop-api: reload}
apps:
  description:
    - One entry per instance of the apps in scope, after the task (in check mode, as they are). Only these fields;
      never the environment or the arguments.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: App name.
      type: str
    pm_id:
      description: pm2's id of the instance.
      type: int
    pid:
      description: Process id; 0 when not running.
      type: int
    status:
      description: C(online), C(stopped), C(errored), C(launching), C(stopping) or C(waiting restart).
      type: str
    exec_mode:
      description: C(fork) or C(cluster).
      type: str
    restarts:
      description: Restarts counted by pm2 (reloads and restarts included).
      type: int
    unstable_restarts:
      description: Restarts pm2 counted as unstable (the app died soon after starting).
      type: int
    started_at:
      description: When the instance last started, UTC, ISO 8601.
      type: str
    uptime:
      description: Seconds since then, 0 when not online.
      type: float
    namespace:
      description: pm2 namespace.
      type: str
    cwd:
      description: Working directory.
      type: str
    script:
      description: The script run.
      type: str
    interpreter:
      description: The interpreter.
      type: str
    version:
      description: Version of the app as pm2 read it from C(package.json).
      type: str
    node_version:
      description: Node.js version running it.
      type: str
    wait_ready:
      description: Whether pm2 waits for C(process.send('ready')).
      type: bool
    listen_timeout:
      description: pm2's listen timeout, milliseconds.
      type: int
    kill_timeout:
      description: pm2's kill timeout, milliseconds.
      type: int
    out_log:
      description: Path of its output log.
      type: str
    err_log:
      description: Path of its error log.
      type: str
  sample:
    - {name: shop-api, pm_id: 0, pid: 41213, status: online, exec_mode: cluster, restarts: 3, unstable_restarts: 0,
       started_at: "2026-11-22T15:31:02Z", uptime: 12.4, namespace: default, cwd: /srv/shop/current,
       script: /srv/shop/current/dist/server.js, interpreter: node, version: 1.4.2, node_version: 20.20.2,
       wait_ready: true, listen_timeout: 10000, kill_timeout: 5000,
       out_log: /home/deploy/.pm2/logs/shop-api-out-0.log, err_log: /home/deploy/.pm2/logs/shop-api-error-0.log}
pids_before:
  description: Pids of the running instances of each app before the task.
  returned: always
  type: dict
  sample: {shop-api: [40100, 40112]}
pids_after:
  description: Pids of the running instances of each app after the task (in check mode, as they are).
  returned: always
  type: dict
  sample: {shop-api: [41213, 41225]}
instances:
  description: Number of instances of each app pm2 knows after the task (in check mode, now).
  returned: always
  type: dict
  sample: {shop-api: 2}
restarts:
  description: Restart count of each app, summed over its instances.
  returned: always
  type: dict
  sample: {shop-api: 6}
exec_mode:
  description: Exec mode of each known app, C(fork) or C(cluster).
  returned: always
  type: dict
  sample: {shop-api: cluster}
health:
  description:
    - What O(health_checks) got, by URL. Empty when nothing was probed (check mode, nothing acted on, no
      O(health_checks)). Returned on failure too.
  returned: always
  type: dict
  sample: {"http://127.0.0.1:3000/health": {ok: true, status: 200, attempts: 9, latency_ms: 1.4, elapsed: 2.104}}
  contains:
    ok:
      description: Whether the check answered as expected at least once.
      type: bool
    status:
      description: Status of the last answer; null when it got none (connection refused, timeout).
      type: int
    attempts:
      description: Requests sent.
      type: int
    latency_ms:
      description: Latency of the last request, milliseconds.
      type: float
    elapsed:
      description: Seconds from the end of the pm2 command to the last answer.
      type: float
    error:
      description: What was wrong with the last answer, when it was not the expected one.
      type: str
executed_commands:
  description: The commands that ran, shell-quoted. They never contain a value of O(env).
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/pm2 ping", "/usr/bin/pm2 jlist",
           "/usr/bin/pm2 reload /srv/shop/shared/ecosystem.config.js --only shop-api --update-env"]
diff:
  description: Status and instance count of each app, before and after.
  returned: in diff mode
  type: dict
  sample: {before: {shop-api: {status: online, instances: 2}}, after: {shop-api: {status: online, instances: 2}}}
"""

import functools

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module
from ansible_collections.safeship.webapp.plugins.module_utils._pm2 import (
    MUTUALLY_EXCLUSIVE,
    REQUIRED_BY,
    REQUIRED_ONE_OF,
    argument_spec,
    current_umask,
    run,
)


def main():
    umask = current_umask()  # the caller's: pm2 passes the daemon's umask on to the apps
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_one_of=REQUIRED_ONE_OF,
        required_by=REQUIRED_BY,
        supports_check_mode=True,
    )
    run_module(module, functools.partial(run, umask=umask))


if __name__ == "__main__":
    main()
