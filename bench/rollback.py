# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""No-op redeploys, rollbacks and bad releases of playbooks/deploy.yml and playbooks/rollback.yml, on the Node
fixture app on PostgreSQL.

Standalone: a throwaway PostgreSQL 15 server on a free loopback port, and sites of
tests/helpers/deploy_site.NodeSite (the fixture app tests/fixtures/node_app on local hosts, each with its own app
root, pm2 daemon and port), deployed by the playbooks of --code (default: this checkout) and, for the no-op
comparison, of --baseline (a checkout of the previous code). Both run with this checkout's .venv, so only the
collection's code differs. The role's own defaults apply everywhere (the health check too) unless
--health-retries/--health-delay set them. Parts (--parts, default all), each timed in this one run:

  noop      No-op redeploy on one host: r1 again, everything live and good. Targets: at most 80 tasks started,
            no stack build, migration or reload, and (with --baseline) at most 0.5x the time of the previous code,
            its own site timed in the same run, the order rotated. The evidence, taken around every run: pm2 pids
            (`pm2 jlist`), the rows of a table the migration command inserts into (node_pm2_migrate_command is a
            psql INSERT), every npm call (an `npm` shim first on PATH) and pm2 command (node_pm2_pm2_binary is a
            shim) the run made, and the inode and mtime of releases/r1/node_modules (npm ci replaces it). r1's
            first deploy, untimed, shows the same evidence catching a real build, migration and start.
  hosts     The same no-op on 3 hosts (app1..app3) against 1 host: target <= 1.3x, with deploy_serial 3 and each
            value of --serials. Reference: a playbook with as many tasks of each kind doing nothing (set_fact,
            stat), on 1 and on 3 hosts: what Ansible itself costs here per task for each extra host.
  rollback  playbooks/rollback.yml to the previous good release (r2-N, 2.0.0 -> r1, 1.0.0, one host) against the
            same rollback by hand: `current` relinked (atomic rename), `pm2 reload shop-web` (the app says ready:
            wait_ready), one GET /health. Target <= 3x. Each run deploys r2-N (untimed); role and hand alternate,
            the order rotated; before the second of them r2-N is made to serve again by hand (untimed).
  bad       A bad release with the role's defaults: r1 deployed healthy, then a bad release r2-N (the fixture's
            `unhealthy` variant: it starts and says ready, /health answers 500) deployed with
            node_pm2_candidate_check=false, so it really serves before its health check fails and the role
            switches back. A poller thread GETs /health every --interval-ms (new connection each, 2 s timeout).
            Measured from the first answer that is not 200 + 1.0.0 to the first 200 + 1.0.0 answer after the last
            bad one. Failed requests are counted (non-200 answers and connection errors apart). Reference: the
            by-hand runbook on the same site with the same bad release (`current` -> bad + pm2 reload, one GET
            (500), `current` -> r1 + pm2 reload), timed by the same poller: the floor of a by-hand rollback.
            Targets: <= 10 s (judged on the max) and <= 2.5x the runbook (medians).

Every playbook run is profiled with bench/callback_plugins/bench_task_times.py: the report says where the time
goes (tasks, controller-only and module tasks, by task file, by action, the costliest tasks). Printed: a table per
part and the targets with PASS/MISS. Exit 0 either way (a benchmark reports, it does not assert), 1 when a deploy
itself fails (r1, a no-op, a rollback, or a bad deploy that was not rolled back). Everything (pm2 daemons, the
server, the temp dir) is removed at the end, also on errors, Ctrl-C and SIGTERM.

    .venv/bin/python bench/rollback.py --baseline /work/baseline           # every part, medians of 3
    .venv/bin/python bench/rollback.py --parts noop --baseline /work/baseline --json noop.json
    .venv/bin/python bench/rollback.py --parts hosts,bad --runs 1 --noop-runs 1 --serials ''   # smoke run
    .venv/bin/python bench/rollback.py --parts bad --health-retries 4 --health-delay 0.5        # a faster check
"""

from __future__ import print_function

import argparse
import collections
import http.client
import json
import os
import shlex
import shutil
import socket
import sys
import threading
import time

import yaml

from benchlib import (ROOT, BenchError, Playbooks, begin, checkout_options, checkouts, clean_up, describe_code,
                      first_line, flip, fmt, kind_cell, log, machine, median, must, profile, profile_summary, ratio,
                      stop_leftovers, table, utc_stamp, verdict, versions, where_time_goes, write_inventory, write_json)
from benchlib import run as run_bench

sys.path.insert(0, os.path.join(ROOT, "tests"))

from helpers.deploy_site import NodeSite, psql_migration  # noqa: E402 pylint: disable=wrong-import-position
from helpers.node_apps import PM2  # noqa: E402 pylint: disable=wrong-import-position
from helpers.releases import current_of  # noqa: E402 pylint: disable=wrong-import-position
from helpers.servers import PG_BIN, PostgresServer  # noqa: E402 pylint: disable=wrong-import-position
from integration import seed  # noqa: E402 pylint: disable=wrong-import-position

OLD, NEW = "1.0.0", "2.0.0"
APP = "shop-web"  # NodeSite's pm2 app
PARTS = ("noop", "hosts", "rollback", "bad")
TARGETS = dict(noop_tasks=80, noop_ratio_to_baseline=0.5, hosts_ratio=1.3, rollback_ratio=3.0, bad_seconds=10.0,
               bad_ratio=2.5)
THREE = ("app1", "app2", "app3")
HEALTH_VARS = ("node_pm2_health_retries", "node_pm2_health_delay")
# The migration command of every deploy: one row per run, counted around each no-op.
MIGRATION_TABLE = "bench_migration_runs"
# pm2 commands that start, stop or reload apps (a no-op runs none of them)
PM2_CHANGES = {"start", "reload", "restart", "stop", "delete", "startOrReload", "startOrRestart", "startOrGracefulReload",
               "gracefulReload", "kill", "scale", "reset"}
POLL_TIMEOUT = 2.0
# Requests that start up to 1 s after a deploy ends are counted; polling goes on this long after it, so one
# that hangs until the poller's timeout still ends (as a timeout) inside the samples.
TAIL = 1.0 + POLL_TIMEOUT + 0.5
# The role's steps in a bad switch, in order, found by task name in the callback's lines (best effort:
# a renamed task only drops its column).
SWITCH_STEPS = [("switched", "Switch | Point current at the release"), ("reloaded", "Switch | Start or reload the apps"),
                ("probe_failed", "Health | Probe each app"), ("back", "Switch back | Point current back"),
                ("back_reloaded", "Switch back | Reload the apps"), ("back_healthy", "Health | Probe each app")]


# ---- the poller ------------------------------------------------------------------------------
Sample = collections.namedtuple("Sample", "start end status version error")


def error_kind(exc):
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed"
    if isinstance(exc, http.client.HTTPException):
        return "bad_response"
    return type(exc).__name__


class Poller(threading.Thread):
    """GET url every interval seconds (start to start), one new connection each; samples in wall-clock time."""

    def __init__(self, port, interval, timeout=POLL_TIMEOUT, path="/health"):
        threading.Thread.__init__(self, name="poller", daemon=True)
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.path = path
        self.samples = []
        self._halt = threading.Event()

    def once(self):
        started = time.time()
        status = version = error = None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            status = response.status
            try:
                version = json.loads(body.decode("utf-8")).get("version")
            except (ValueError, AttributeError):
                version = None
        except (OSError, http.client.HTTPException) as exc:
            error = error_kind(exc)
        finally:
            conn.close()
        return Sample(started, time.time(), status, version, error)

    def run(self):
        while not self._halt.is_set():
            sample = self.once()
            self.samples.append(sample)
            wait = self.interval - (sample.end - sample.start)
            if wait > 0:
                self._halt.wait(wait)

    def stop(self):
        self._halt.set()
        if self.is_alive():
            self.join(10)
        return list(self.samples)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def good(sample):
    return sample.status == 200 and sample.version == OLD


def seen_at(sample):
    """When a sample tells something: an answer when it arrives, a failed request when it was sent."""
    return sample.end if sample.status is not None else sample.start


def recovery(samples, t_from, t_to):
    """What the poller saw between t_from and t_to: the bad window, failed requests by kind."""
    window = [s for s in samples if t_from <= s.start <= t_to]  # by start: a request that hangs still counts
    bad = [i for i, s in enumerate(window) if not good(s)]
    statuses = collections.Counter(str(s.status) for s in window if s.status is not None and s.status != 200)
    errors = collections.Counter(s.error for s in window if s.error)
    versions_seen = collections.Counter(s.version for s in window if s.status is not None)
    gaps = [b.end - a.end for a, b in zip(window, window[1:])]
    result = dict(requests=len(window), failed=sum(statuses.values()) + sum(errors.values()),
                  non_200=dict(statuses), connection_errors=dict(errors), connection_errors_total=sum(errors.values()),
                  versions=dict(versions_seen), answers_not_old=len(bad),
                  poll_interval_max=round(max(gaps), 3) if gaps else None,
                  bad_seconds=None, back_seconds=None, first_good_after_first_bad=None, first_bad_at=None)
    if not bad:
        return result
    first, last = seen_at(window[bad[0]]), seen_at(window[bad[-1]])
    after_first = next((s for s in window[bad[0] + 1:] if good(s)), None)
    after_last = next((s for s in window[bad[-1] + 1:] if good(s)), None)
    result.update(first_bad_at=first, bad_seconds=round(last - first, 3),
                  back_seconds=round(after_last.end - first, 3) if after_last else None,
                  back_at=after_last.end if after_last else None,
                  first_good_after_first_bad=round(after_first.end - first, 3) if after_first else None)
    return result


# ---- evidence: what a run started --------------------------------------------------------------
class Shims(object):
    """Commands that note each call (working directory and arguments, one line) in NAME.log, then run the real one.
    npm: first on the playbooks' PATH; pm2: given to the role as node_pm2_pm2_binary."""

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory)
        for name, real in (("npm", shutil.which("npm")), ("pm2", PM2)):
            if not real:
                raise BenchError("%s is not on PATH" % name)
            path = self.path(name)
            with open(path, "w") as handle:
                handle.write("#!/bin/sh\n# bench/rollback.py: note the call, then run the real %s\n"
                             "printf '%%s\\t%%s\\n' \"$PWD\" \"$*\" >> %s\nexec %s \"$@\"\n"
                             % (name, shlex.quote(path + ".log"), shlex.quote(real)))
            os.chmod(path, 0o755)

    def path(self, name):
        return os.path.join(self.directory, name)

    def calls(self, name):
        try:
            with open(self.path(name) + ".log") as handle:
                return [line.rstrip("\n").split("\t", 1)[-1] for line in handle]
        except OSError:
            return []


class Site(object):
    """A NodeSite deployed by one checkout; its playbook runs are timed and profiled."""

    def __init__(self, bench, name, hosts, checkout):
        self.bench = bench
        self.name = name
        self.checkout = checkout
        self.database = "bench_" + name
        seed.seed_postgres(bench.server, self.database, users=20, orders=50, invoices=10)
        bench.server.execute("CREATE TABLE %s (at timestamptz NOT NULL DEFAULT now())" % MIGRATION_TABLE,
                             dbname=self.database)
        self.node = NodeSite(os.path.join(bench.workdir, name), bench.server, self.database, hosts=hosts)
        bench.sites.append(self)
        self.hosts = list(hosts)
        self.deploys = 0

    def vars(self):
        """NodeSite's variables, with the role's own health check defaults unless the options set them, pm2 through
        the shim, and a migration that counts its runs."""
        more = dict(self.node.vars, node_pm2_pm2_binary=self.bench.shims.path("pm2"),
                    node_pm2_migrate_command=psql_migration("INSERT INTO %s DEFAULT VALUES" % MIGRATION_TABLE))
        for name in HEALTH_VARS:
            more.pop(name, None)
        more.update(self.bench.health_vars())
        return more

    def play(self, playbook, extra, label):
        return self.bench.playbooks.run(self.checkout, playbook, self.node.playbook.inventory, extra,
                                        label="%s-%s" % (self.name, label))

    def deploy(self, release_id, version, variant="good", **more):
        extra = dict(self.vars(), deploy_release_id=release_id, node_pm2_artifact=self.node.artifact(version, variant))
        extra.update(more)
        self.deploys += 1
        return self.play("deploy.yml", extra, "deploy-%s" % release_id)

    def rollback(self, **more):
        extra = dict(self.vars())
        extra.update(more)
        return self.play("rollback.yml", extra, "rollback")

    def deploy_r1(self, **more):
        run = must(self.deploy("r1", OLD, **more), "deploying r1 (%s) on %s with %s" % (
            OLD, ", ".join(self.hosts), self.checkout.label))
        served = [self.served(h) for h in self.hosts]
        if served != [(200, OLD)] * len(self.hosts):
            raise BenchError("after deploying r1 the hosts serve %r" % served)
        log("r1 deployed on %s (%s) in %.1f s, %d tasks"
            % (", ".join(self.hosts), self.checkout.label, run.seconds, len(run.times.tasks)))
        return run

    def served(self, host):
        """(status, version) of GET /health, or (None, the error) when nothing answers."""
        try:
            return self.node.served(host)
        except OSError as exc:
            return None, str(exc)

    def root(self, host):
        return self.node.roots[host]

    def pm2(self, host):
        return self.node.pm2[host]

    def port(self, host):
        return self.node.ports[host]

    def pids(self):
        return {h: sorted(p for p, dummy, dummy2 in self.pm2(h).apps().get(APP, [])) for h in self.hosts}

    def migrations(self):
        return self.bench.server.execute("SELECT count(*) FROM %s" % MIGRATION_TABLE, dbname=self.database)[0][0]

    def node_modules(self, release_id="r1"):
        """{host: (inode, mtime) of releases/<id>/node_modules, or None}."""
        found = {}
        for host in self.hosts:
            try:
                st = os.stat(os.path.join(self.root(host), "releases", release_id, "node_modules"))
                found[host] = (st.st_ino, st.st_mtime_ns)
            except OSError:
                found[host] = None
        return found

    def state(self):
        shims = self.bench.shims
        return dict(pids=self.pids(), migrations=self.migrations(), node_modules=self.node_modules(),
                    npm=len(shims.calls("npm")), pm2=len(shims.calls("pm2")))

    def evidence(self, before, after):
        """What a run started, from the states before and after it."""
        shims = self.bench.shims
        pm2_calls = shims.calls("pm2")[before["pm2"]:after["pm2"]]
        words = collections.Counter(call.split()[0] if call.split() else "" for call in pm2_calls)
        return dict(pids_unchanged=before["pids"] == after["pids"], pids_before=before["pids"], pids_after=after["pids"],
                    migrations_run=after["migrations"] - before["migrations"],
                    # None: no node_modules to compare (the role keeps them elsewhere)
                    node_modules_unchanged=(before["node_modules"] == after["node_modules"]
                                            if None not in after["node_modules"].values() else None),
                    npm_calls=shims.calls("npm")[before["npm"]:after["npm"]], pm2_commands=dict(words),
                    pm2_changing=sorted(w for w in words if w in PM2_CHANGES))

    def close(self):
        self.node.close()


def role_defaults(checkout, role):
    """A role's defaults/main.yml of a checkout, for the report only ({} when it cannot be read)."""
    try:
        with open(checkout.path("roles", role, "defaults", "main.yml")) as handle:
            return yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        log("the defaults of %s could not be read: %s" % (role, exc))
        return {}


def quiet(evidence):
    """Whether a run started no build, migration or reload."""
    return (evidence["pids_unchanged"] and evidence["migrations_run"] == 0 and not evidence["npm_calls"]
            and not evidence["pm2_changing"] and evidence["node_modules_unchanged"] is not False)


def evidence_cells(runs):
    """Report cells for the evidence of several runs of a setup."""
    pm2 = collections.Counter()
    for e in runs:
        pm2.update(e["pm2_commands"])
    return ("same" if all(e["pids_unchanged"] for e in runs) else "CHANGED",
            "%d" % sum(e["migrations_run"] for e in runs),
            "%d" % sum(len(e["npm_calls"]) for e in runs),
            "n/a" if any(e["node_modules_unchanged"] is None for e in runs)
            else "same" if all(e["node_modules_unchanged"] for e in runs) else "CHANGED",
            " ".join("%s:%d" % kv for kv in sorted(pm2.items())) or "none")


EVIDENCE_HEADER = ("pm2 pids", "migrations run", "npm calls", "node_modules", "pm2 commands")


# ---- the bench -------------------------------------------------------------------------------
class Bench(object):
    def __init__(self, args):
        self.args = args
        self.workdir = None
        self.server = None
        self.sites = []
        self.poller = None
        self.code = self.baseline = self.playbooks = self.shims = None
        self.results = collections.OrderedDict()

    def health_vars(self):
        """The role's health check: its own defaults unless the options set them."""
        more = {}
        if self.args.health_retries is not None:
            more["node_pm2_health_retries"] = self.args.health_retries
        if self.args.health_delay is not None:
            more["node_pm2_health_delay"] = self.args.health_delay
        return more

    def health_label(self):
        """'health check: 10 retries, 1 s apart (the role's defaults)', the defaults read from the code measured."""
        defaults = role_defaults(self.code, "node_pm2")
        retries, delay = self.args.health_retries, self.args.health_delay
        return "health check: %s retries, %s s apart (%s)" % (
            defaults.get(HEALTH_VARS[0], "?") if retries is None else retries,
            defaults.get(HEALTH_VARS[1], "?") if delay is None else delay,
            "the role's defaults" if retries is None and delay is None
            else "set by --health-retries/--health-delay" if retries is not None and delay is not None
            else "in part the role's defaults")

    def site(self, name, hosts, checkout=None):
        return Site(self, name, hosts, checkout or self.code)

    def drop(self, site):
        site.close()
        self.sites.remove(site)

    # -- parts noop and hosts: one loop, the order rotated
    def part_noop(self):
        parts = self.args.parts
        one = self.site("noop1", ("localhost",))
        setups = [dict(label="1 host", site=one, serial=3, checkout=self.code.label)]
        if "noop" in parts and self.baseline is not None:
            setups.append(dict(label="1 host, baseline", site=self.site("noop1-base", ("localhost",), self.baseline),
                               serial=3, checkout=self.baseline.label))
        if "hosts" in parts:
            three = self.site("noop3", THREE)
            setups += [dict(label="3 hosts, serial %d" % s, site=three, serial=s, checkout=self.code.label)
                       for s in self.args.serials]
        first_deploys = collections.OrderedDict()
        for site in collections.OrderedDict((id(s["site"]), s["site"]) for s in setups).values():
            before = site.state()
            run = site.deploy_r1(deploy_serial=3)
            first_deploys[site.name] = dict(checkout=site.checkout.label, hosts=len(site.hosts), seconds=round(run.seconds, 2),
                                            tasks=len(run.times.tasks), evidence=site.evidence(before, site.state()))
        for setup in setups:
            setup.update(seconds=[], cpu_seconds=[], times=[], evidence=[], changed_tasks=[])
        for rep in range(self.args.noop_runs):
            shift = rep % len(setups)
            for setup in setups[shift:] + setups[:shift]:
                site = setup["site"]
                before = site.state()
                run = must(site.deploy("r1", OLD, deploy_serial=setup["serial"]),
                           "the no-op redeploy of r1 (%s)" % setup["label"])
                evidence = site.evidence(before, site.state())
                setup["seconds"].append(round(run.seconds, 2))
                setup["cpu_seconds"].append(round(run.cpu, 2))
                setup["times"].append(run.times)
                setup["evidence"].append(evidence)
                setup["changed_tasks"] = run.times.changed()
                log("no-op %s, run %d: %.2f s, %d tasks, %s; %s" % (
                    setup["label"], rep + 1, run.seconds, len(run.times.tasks), run.times.statuses(),
                    "nothing started" if quiet(evidence) else "STARTED: " + json.dumps(
                        {k: evidence[k] for k in ("pids_unchanged", "migrations_run", "npm_calls", "pm2_changing",
                                                  "node_modules_unchanged")})))
        result = collections.OrderedDict()
        for setup in setups:
            label = setup.pop("label")
            site = setup.pop("site")
            setup.update(hosts=len(site.hosts), median=median(setup["seconds"]), cpu_median=median(setup["cpu_seconds"]),
                         profile=profile(setup.pop("times")), quiet=all(quiet(e) for e in setup["evidence"]))
            result[label] = setup
        self.results["noop"] = dict(setups=result, first_deploys=first_deploys,
                                    floor=self.floor(result["1 host"]["profile"]) if "hosts" in parts else None)
        for site in list(self.sites):
            self.drop(site)

    def floor(self, prof):
        """Ansible's own cost here: a playbook with as many tasks of each kind as the 1-host no-op ran, doing
        nothing (set_fact; stat of /), on 1 and on 3 local hosts. Its ratio is what the scheduling alone costs."""
        controller = int(prof["kinds"].get("controller", {}).get("tasks") or 0)
        modules = int(prof["kinds"].get("module", {}).get("tasks") or 0)
        tasks = []
        for index in range(controller + modules):
            if index % max((controller + modules) // max(modules, 1), 1) == 0 and modules > 0:
                modules -= 1
                tasks.append("    - name: Module task %d\n      ansible.builtin.stat:\n        path: /\n" % index)
            else:
                tasks.append("    - name: Controller task %d\n      ansible.builtin.set_fact:\n        _bench_%d: %d\n"
                             % (index, index % 7, index))
        path = os.path.join(self.workdir, "floor.yml")
        with open(path, "w") as handle:
            handle.write("- name: Ansible's floor\n  hosts: app\n  gather_facts: false\n  tasks:\n" + "".join(tasks))
        result = {}
        for label, hosts in (("1 host", ("localhost",)), ("3 hosts", THREE)):
            inventory = write_inventory(os.path.join(self.workdir, "floor-%d.ini" % len(hosts)), hosts)
            seconds = []
            for dummy in range(self.args.noop_runs):
                seconds.append(must(self.playbooks.run(self.code, path, inventory, {}, label="floor"),
                                    "the floor playbook on %s" % label).seconds)
            result[label] = dict(seconds=[round(x, 2) for x in seconds], median=median(seconds))
            log("floor playbook (%d tasks) on %s: %s s" % (len(tasks), label, " ".join("%.1f" % x for x in seconds)))
        result["tasks"] = dict(controller=controller, module=len(tasks) - controller)
        result["ratio"] = result["3 hosts"]["median"] / result["1 host"]["median"]
        return result

    # -- part rollback
    def hand_relink(self, site, release_id):
        """The runbook's rollback: relink `current`, `pm2 reload` (wait_ready: it returns once the new workers said
        ready), one GET /health (again only if it does not answer 200 + 1.0.0 yet). {step: seconds}, GETs."""
        host = site.hosts[0]
        marks = collections.OrderedDict()
        started = time.time()
        flip(site.root(host), release_id)
        marks["relink"] = time.time() - started
        proc = site.pm2(host).run("reload", APP, check=False)
        if proc.returncode != 0:
            raise BenchError("pm2 reload %s failed (rc %d): %s" % (APP, proc.returncode, proc.stdout[-2000:]))
        marks["pm2 reload"] = time.time() - started
        gets = 0
        while True:
            gets += 1
            if site.served(host) == (200, OLD):
                break
            if time.time() - started > 30:
                raise BenchError("by hand: %s does not serve %s 30 s after the rollback" % (host, OLD))
            time.sleep(0.05)
        marks["GET /health"] = time.time() - started
        return marks, gets

    def serve_again(self, site, release_id):
        """Untimed: make release_id serve again (relink + reload), for the next rollback."""
        host = site.hosts[0]
        flip(site.root(host), release_id)
        must(site.pm2(host).run("reload", APP, check=False), "pm2 reload %s onto %s" % (APP, release_id))

    def part_rollback(self):
        site = self.site("rollback", ("localhost",))
        site.deploy_r1()
        host = site.hosts[0]
        runs = dict(role=[], hand=[])
        for run in range(1, self.args.runs + 1):
            release_id = "r2-%d" % run
            must(site.deploy(release_id, NEW), "deploying %s" % release_id)
            if site.served(host) != (200, NEW):
                raise BenchError("after deploying %s %s serves %r" % (release_id, host, site.served(host)))
            order = ("role", "hand") if run % 2 == 1 else ("hand", "role")
            for index, who in enumerate(order):
                if index:
                    self.serve_again(site, release_id)
                if who == "role":
                    played = must(site.rollback(), "playbooks/rollback.yml from %s" % release_id)
                    seconds, entry = played.seconds, dict(tasks=len(played.times.tasks), times=played.times,
                                                          cpu=round(played.cpu, 2))
                else:
                    marks, gets = self.hand_relink(site, "r1")
                    seconds, entry = marks["GET /health"], dict(steps=marks, gets=gets)
                if site.served(host) != (200, OLD) or current_of(site.root(host)) != "r1":
                    raise BenchError("after the rollback (%s) from %s %s serves %r, current is %s" % (
                        who, release_id, host, site.served(host), current_of(site.root(host))))
                entry.update(run=run, release=release_id, seconds=round(seconds, 2))
                runs[who].append(entry)
                log("rollback run %d, %s: %s -> r1 in %.2f s%s" % (
                    run, who, release_id, seconds, (", %d tasks" % entry["tasks"]) if who == "role" else ""))
        role, hand = median([r["seconds"] for r in runs["role"]]), median([r["seconds"] for r in runs["hand"]])
        self.results["rollback"] = dict(role=runs["role"], hand=runs["hand"], role_median=role, hand_median=hand,
                                        ratio=ratio(role, hand), profile=profile([r.pop("times") for r in runs["role"]]))
        self.drop(site)

    # -- part bad
    def role_bad(self, site, run):
        host = site.hosts[0]
        release_id = "r2-%d" % run
        with Poller(site.port(host), self.args.interval_ms / 1000.0) as poller:
            self.poller = poller
            time.sleep(0.5)
            started = time.time()
            played = site.deploy(release_id, NEW, "unhealthy", node_pm2_candidate_check=False)
            ended = time.time()
            time.sleep(TAIL)
            samples = poller.stop()
        self.poller = None
        if played.proc.returncode == 0:
            raise BenchError("the bad release %s was deployed without a rollback:\n%s" % (
                release_id, played.proc.stdout[-4000:]))
        if site.served(host) != (200, OLD) or current_of(site.root(host)) != "r1":
            raise BenchError("after the bad deploy %s %s serves %r, current is %s:\n%s" % (
                release_id, host, site.served(host), current_of(site.root(host)), played.proc.stdout[-4000:]))
        status = site.node.last_report().get("status")
        result = recovery(samples, started, ended + 1.0)
        if result["first_bad_at"] is None:
            raise BenchError("the poller never saw the bad release %s serve (candidate check on?)" % release_id)
        steps = played.times.steps(SWITCH_STEPS)
        result.update(run=run, release=release_id, deploy_seconds=round(played.seconds, 2), report_status=status,
                      tasks=len(played.times.tasks), times=played.times,
                      steps={label: dict(at=round(at - result["first_bad_at"], 3), status=st) for label, at, st in steps})
        log("role run %d: back to %s %s s after the first bad answer (bad answers for %s s), %d failed of %d "
            "(%d connection errors), deploy %.1f s, report %s" % (
                run, OLD, fmt(result["back_seconds"]), fmt(result["bad_seconds"]), result["failed"], result["requests"],
                result["connection_errors_total"], played.seconds, status))
        return result

    def hand_bad(self, site, run, bad_release):
        """The runbook, on the same host: current -> bad release + pm2 reload, one GET, current -> r1 + pm2 reload."""
        host = site.hosts[0]
        marks = {}
        with Poller(site.port(host), self.args.interval_ms / 1000.0) as poller:
            self.poller = poller
            time.sleep(0.5)
            started = time.time()
            self.serve_again(site, bad_release)
            marks["bad_reloaded"] = time.time()
            deadline = time.time() + 20
            while True:  # the runbook's `curl /health`: the bad release answers 500
                if not good(poller.once()):
                    break
                if time.time() > deadline:
                    raise BenchError("by hand: %s still serves %s 20 s after the switch to %s" % (host, OLD, bad_release))
                time.sleep(0.1)
            marks["checked"] = time.time()
            back, dummy = self.hand_relink(site, "r1")
            marks["back_reloaded"] = marks["checked"] + back["pm2 reload"]
            ended = time.time()
            time.sleep(TAIL)
            samples = poller.stop()
        self.poller = None
        result = recovery(samples, started, ended + 1.0)
        if result["first_bad_at"] is None:
            raise BenchError("by hand: the poller never saw the bad release %s serve" % bad_release)
        result.update(run=run, release=bad_release, deploy_seconds=round(ended - started, 2),
                      steps={k: dict(at=round(v - result["first_bad_at"], 3)) for k, v in marks.items()})
        log("runbook run %d: back to %s %s s after the first bad answer (bad answers for %s s), %d failed of %d "
            "(%d connection errors)" % (run, OLD, fmt(result["back_seconds"]), fmt(result["bad_seconds"]), result["failed"],
                                        result["requests"], result["connection_errors_total"]))
        return result

    def part_bad(self):
        site = self.site("bad", ("localhost",))
        site.deploy_r1()
        runs = dict(role=[], hand=[])
        last_bad = None
        for run in range(1, self.args.runs + 1):
            order = ("role", "hand") if run % 2 == 1 or last_bad is None else ("hand", "role")
            for who in order:
                if who == "role":
                    runs["role"].append(self.role_bad(site, run))
                    last_bad = runs["role"][-1]["release"]
                else:
                    runs["hand"].append(self.hand_bad(site, run, last_bad))
        summary = {}
        for who, results in runs.items():
            backs = [r["back_seconds"] for r in results if r["back_seconds"] is not None]
            summary[who] = dict(median=median(backs), max=max(backs) if backs else None,
                                failed_median=median([r["failed"] for r in results]),
                                connection_errors=sum(r["connection_errors_total"] for r in results))
        summary["ratio"] = ratio(summary["role"]["median"], summary["hand"]["median"])
        self.results["bad"] = dict(health=self.health_label(), summary=summary, role=runs["role"], hand=runs["hand"],
                                   profile=profile([r.pop("times") for r in runs["role"]]))
        self.drop(site)

    # -- report
    def report_noop(self, lines):
        data = self.results.get("noop")
        if not data:
            return
        setups = data["setups"]
        one = setups["1 host"]
        lines += ["", "No-op redeploy (r1 again, live and good everywhere), median of %d; code: %s" % (
            self.args.noop_runs, describe_code(self.code, self.baseline)), ""]
        rows = []
        for label, entry in setups.items():
            prof = entry["profile"]
            rows.append((label, fmt(entry["median"]), " ".join("%.1f" % s for s in entry["seconds"]),
                         fmt(prof["tasks"], "%d"), kind_cell(prof["kinds"].get("controller")),
                         kind_cell(prof["kinds"].get("module")), "%.1f" % entry["cpu_median"])
                        + evidence_cells(entry["evidence"]))
        lines += table(("setup", "median s", "runs s", "tasks", "controller-only tasks", "module tasks", "CPU s")
                       + EVIDENCE_HEADER, rows)
        lines += ["", "what r1's first deploy started (the evidence sees a real deploy):"]
        for name, entry in data["first_deploys"].items():
            e = entry["evidence"]
            lines.append("  %s (%s, %d host(s)): %.1f s, %d tasks; %s pm2 pids, %d migration run(s), %d npm call(s), "
                         "pm2: %s" % (name, entry["checkout"], entry["hosts"], entry["seconds"], entry["tasks"],
                                      "new" if not e["pids_unchanged"] else "no", e["migrations_run"],
                                      len(e["npm_calls"]), " ".join("%s:%d" % kv for kv in sorted(e["pm2_commands"].items()))))
        targets = data.setdefault("targets", {})
        if "noop" in self.args.parts:
            lines.append("")
            targets["tasks"] = dict(value=one["profile"]["tasks"], target=TARGETS["noop_tasks"],
                                    verdict=verdict(one["profile"]["tasks"], TARGETS["noop_tasks"]))
            lines.append("target: no-op on 1 host starts <= %d tasks: %s: %s" % (
                TARGETS["noop_tasks"], fmt(one["profile"]["tasks"], "%d"), targets["tasks"]["verdict"]))
            targets["nothing_started"] = dict(value=one["quiet"], verdict="PASS" if one["quiet"] else "MISS")
            lines.append("target: no-op starts no build, migration or reload (pm2 pids, migration rows, npm calls, "
                         "node_modules, pm2 commands; all runs): %s" % targets["nothing_started"]["verdict"])
            base = setups.get("1 host, baseline")
            if base:
                value = ratio(one["median"], base["median"])
                targets["ratio_to_baseline"] = dict(value=value, target=TARGETS["noop_ratio_to_baseline"],
                                                    verdict=verdict(value, TARGETS["noop_ratio_to_baseline"]))
                lines.append("target: no-op time <= %.1fx the previous code's (same run): %s s / %s s = %s: %s" % (
                    TARGETS["noop_ratio_to_baseline"], fmt(one["median"]), fmt(base["median"]), fmt(value, "%.2fx"),
                    targets["ratio_to_baseline"]["verdict"]))
            else:
                lines.append("target: no-op time <= %.1fx the previous code's: not measured (no --baseline)"
                             % TARGETS["noop_ratio_to_baseline"])
        three = [label for label, entry in setups.items() if entry["hosts"] > 1]
        for label in three:
            value = ratio(setups[label]["median"], one["median"])
            targets[label] = dict(value=value, target=TARGETS["hosts_ratio"], verdict=verdict(value, TARGETS["hosts_ratio"]))
            lines.append("target: no-op on %s <= %.1fx 1 host: %s s / %s s = %s: %s" % (
                label, TARGETS["hosts_ratio"], fmt(setups[label]["median"]), fmt(one["median"]), fmt(value, "%.2fx"),
                targets[label]["verdict"]))
        floor = data["floor"]
        if floor and three:
            tasks = floor["tasks"]["controller"] + floor["tasks"]["module"]
            per_host_task = (floor["3 hosts"]["median"] - floor["1 host"]["median"]) / (2.0 * tasks)
            floor["extra_host_task_seconds"] = per_host_task
            lines.append("")
            lines.append("reference, Ansible alone: a playbook of %d tasks doing nothing (%d set_fact, %d stat) on every "
                         "host: 1 host %.2f s, 3 hosts %.2f s (%.2fx), i.e. %.1f ms per task for each extra host." % (
                             tasks, floor["tasks"]["controller"], floor["tasks"]["module"], floor["1 host"]["median"],
                             floor["3 hosts"]["median"], floor["ratio"], 1000 * per_host_task))
            for label in three:
                entry = setups[label]
                extra = entry["profile"]["host_tasks"] - one["profile"]["host_tasks"]
                budget = TARGETS["hosts_ratio"] * one["median"] - one["median"]
                lines.append("  %s: %d host-task runs against %d on 1 host: %d x %.1f ms = %.1f s expected extra, %.1f s "
                             "measured; %.1f s is the whole budget of <= %.1fx, i.e. at most ~%d tasks on every host "
                             "(now ~%d)." % (
                                 label, entry["profile"]["host_tasks"], one["profile"]["host_tasks"], extra,
                                 1000 * per_host_task, extra * per_host_task, entry["median"] - one["median"], budget,
                                 TARGETS["hosts_ratio"], budget / (2 * per_host_task) if per_host_task > 0 else 0,
                                 extra / 2.0))
        lines += ["", "tasks reporting changed on a no-op (1 host): %s" % ("; ".join(one["changed_tasks"]) or "none")]
        lines += ["", "where a no-op spends its time: " + profile_summary(one["profile"])]
        lines += where_time_goes([(label, entry["profile"]) for label, entry in setups.items()], self.args.top)

    def report_rollback(self, lines):
        data = self.results.get("rollback")
        if not data:
            return
        lines += ["", "playbooks/rollback.yml, r2-N (%s) -> r1 (%s) on 1 host, against the same rollback by hand "
                      "(relink, pm2 reload, GET /health); %d runs, %s:" % (NEW, OLD, self.args.runs, self.health_label()), ""]
        rows = [("rollback.yml", r["run"], "%.2f" % r["seconds"], r["tasks"], "") for r in data["role"]]
        rows += [("by hand", r["run"], "%.2f" % r["seconds"], "", ", ".join("%s at %.2f" % kv for kv in r["steps"].items())
                  + ("" if r["gets"] == 1 else " (%d GETs)" % r["gets"])) for r in data["hand"]]
        lines += table(("", "run", "seconds", "tasks", "steps (s from the start)"), rows)
        data["verdict"] = verdict(data["ratio"], TARGETS["rollback_ratio"])
        lines += ["", "target: rollback.yml <= %.1fx the rollback by hand: %s s / %s s = %s: %s" % (
            TARGETS["rollback_ratio"], fmt(data["role_median"]), fmt(data["hand_median"]), fmt(data["ratio"], "%.1fx"),
            data["verdict"])]
        lines += ["", "where rollback.yml spends its time: " + profile_summary(data["profile"])]
        lines += where_time_goes([("rollback.yml", data["profile"])], self.args.top)

    def report_bad(self, lines):
        data = self.results.get("bad")
        if not data:
            return
        role, hand = data["role"], data["hand"]
        lines += ["", "Bad switch -> %s serving again (deploy r2 = %s unhealthy, candidate check off, %s), %d runs, "
                      "poll every %d ms:" % (OLD, NEW, data["health"], len(role), self.args.interval_ms), ""]
        rows = []
        for who, results in (("deploy.yml (role switches back)", role), ("by-hand runbook (floor)", hand)):
            for r in results:
                rows.append((who, r["run"], fmt(r["back_seconds"]), fmt(r["bad_seconds"]), r["requests"], r["failed"],
                             ",".join("%s:%d" % kv for kv in sorted(r["connection_errors"].items())) or "0",
                             ",".join("%s:%d" % kv for kv in sorted(r["non_200"].items())) or "-",
                             fmt(r["deploy_seconds"], "%.1f"), r.get("tasks", "")))
        lines += table(("", "run", "back to 1.0.0 s", "bad answers for s", "requests", "failed", "conn errors",
                        "non-200", "run s", "tasks"), rows)
        lines.append("")
        for who, results in (("role", role), ("runbook", hand)):
            steps = collections.OrderedDict()
            for r in results:
                for label, step in r["steps"].items():
                    steps.setdefault(label, []).append(step["at"])
            if steps:
                lines.append("%s, seconds after the first bad answer (median): %s" % (who, ", ".join(
                    "%s %+.2f" % (label, median(v)) for label, v in steps.items())))
        summary = data["summary"]
        r, h = summary["role"], summary["hand"]
        summary["verdict_seconds"] = verdict(r["max"], TARGETS["bad_seconds"])
        summary["verdict_ratio"] = verdict(summary["ratio"], TARGETS["bad_ratio"])
        lines += ["", "target: bad switch -> %s again <= %.0f s: role median %s s, max %s s: %s (judged on the max)" % (
            OLD, TARGETS["bad_seconds"], fmt(r["median"]), fmt(r["max"]), summary["verdict_seconds"]),
            "target: <= %.1fx the by-hand runbook: %s s / %s s = %s: %s" % (
                TARGETS["bad_ratio"], fmt(r["median"]), fmt(h["median"]), fmt(summary["ratio"], "%.1fx"),
                summary["verdict_ratio"]),
            "failed requests during the bad deploy (median): role %s, runbook %s; connection errors (all runs): "
            "role %d, runbook %d" % (fmt(r["failed_median"], "%d"), fmt(h["failed_median"], "%d"),
                                     r["connection_errors"], h["connection_errors"])]
        lines += ["", "where the bad deploy spends its time: " + profile_summary(data["profile"])]
        lines += where_time_goes([("bad deploy", data["profile"])], self.args.top)

    def report(self, started, load):
        lines = []
        self.report_noop(lines)
        self.report_rollback(lines)
        self.report_bad(lines)
        lines += ["", "load average (1 min) %.1f at the start, %.1f at the end; %d CPUs: a noisy machine, see "
                      "docs/benchmarks.md" % (load, os.getloadavg()[0], os.cpu_count()), ""]
        print("\n".join(lines), flush=True)
        data = dict(command=" ".join(["bench/rollback.py"] + sys.argv[1:]), started=started, finished=utc_stamp(),
                    load=dict(start=load, end=os.getloadavg()[0]),
                    machine=dict(machine(), postgres=first_line([os.path.join(PG_BIN, "postgres"), "--version"]),
                                 **versions(PM2)),
                    code=self.code.state, baseline=self.baseline.state if self.baseline else None, targets=TARGETS,
                    config=dict(runs=self.args.runs, noop_runs=self.args.noop_runs, serials=self.args.serials,
                                interval_ms=self.args.interval_ms, parts=self.args.parts, health=self.health_label()),
                    results=self.results)
        write_json(self.args.json, data)
        return data

    def main(self):
        self.workdir, started, load = begin("safeship-rollback-")
        try:
            self.code, self.baseline = checkouts(self.args, self.workdir)
            self.shims = Shims(os.path.join(self.workdir, "shims"))
            self.playbooks = Playbooks(os.path.join(self.workdir, "ansible"), path_prepend=[self.shims.directory])
            self.server = PostgresServer()
            log("PostgreSQL on port %d" % self.server.port)
            if "noop" in self.args.parts or "hosts" in self.args.parts:
                self.part_noop()
            if "rollback" in self.args.parts:
                self.part_rollback()
            if "bad" in self.args.parts:
                self.part_bad()
            return self.report(started, load)
        finally:
            self.cleanup()

    def cleanup(self):
        closers = []
        if self.poller is not None:
            closers.append(("the poller", self.poller.stop))
        closers += [("pm2 of %s" % ",".join(site.hosts), site.close) for site in self.sites]
        if self.server is not None:
            closers.append(("PostgreSQL", self.server.close))
        closers.append(("processes left behind", stop_leftovers))
        clean_up(self.workdir, closers, "pm2 daemons and PostgreSQL stopped")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help="any of %s (default all)" % ", ".join(PARTS))
    checkout_options(parser, "a checkout of the previous code: part noop times its no-op too, in the same run")
    parser.add_argument("--runs", type=int, default=3, help="rollbacks and bad deploys, each by the role and by hand "
                                                            "(default 3; medians)")
    parser.add_argument("--noop-runs", type=int, default=3, help="timed no-op redeploys per setup (default 3; medians)")
    parser.add_argument("--serials", default="1",
                        help="deploy_serial values for the 3-host no-op besides 3 (comma-separated; default 1; '' for none)")
    parser.add_argument("--interval-ms", type=int, default=20, help="part bad: poll /health every N ms (default 20)")
    parser.add_argument("--health-retries", type=int, default=None,
                        help="node_pm2_health_retries for every deploy (default: the role's default)")
    parser.add_argument("--health-delay", type=float, default=None,
                        help="node_pm2_health_delay for every deploy (default: the role's default)")
    parser.add_argument("--top", type=int, default=12, help="rows in the profile tables (default 12)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    try:
        args.serials = [3] + [int(s) for s in args.serials.split(",") if s.strip() and int(s) != 3]
    except ValueError:
        parser.error("--serials takes numbers, e.g. 1 or 1,2")
    if args.runs < 1 or args.noop_runs < 1 or args.interval_ms < 1 or args.top < 1 or min(args.serials) < 1:
        parser.error("--runs, --noop-runs, --interval-ms, --top and --serials must be positive")
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error("--parts takes any of %s" % ", ".join(PARTS))
    return args


def main(argv=None):
    args = parse_args(argv)
    return run_bench(Bench(args).main)


if __name__ == "__main__":
    sys.exit(main())
