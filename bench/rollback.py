# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollback time and no-op redeploys of playbooks/deploy.yml, on the Node fixture app on PostgreSQL.

Standalone: a throwaway PostgreSQL 15 server on a free loopback port, and sites of
tests/helpers/deploy_site.NodeSite (the fixture app tests/fixtures/node_app deployed with
playbooks/deploy.yml on local hosts, each with its own app root, pm2 daemon and port). Timed in one run:

  1. rollback: time from a bad switch to the old release serving again (target <= 10 s).
     r1 (1.0.0) is deployed healthy; then, --runs times, a bad release r2-N (2.0.0, the fixture's
     `unhealthy` variant: it starts and says ready, /health answers 500) is deployed with
     node_pm2_candidate_check=false, so it really serves before its health check fails and the role
     switches back. A poller thread GETs /health every --interval-ms (new connection each, 2 s
     timeout) and records (time, status, version). Measured from the first answer that is not
     200 + 1.0.0 (the bad release serving) to the first 200 + 1.0.0 answer after the last bad one
     (with two cluster workers the old and the new release answer in turns during a reload, so the
     first good answer after the first bad one comes from the old worker still running, ~20 ms later:
     that figure is in the JSON as first_good_after_first_bad). Failed requests during the whole deploy
     are counted: non-200 answers and connection errors (refused, reset, timeout), apart.
     Reference, on the same site with the same bad release: the by-hand runbook. `current` repointed at
     the bad release and `pm2 reload shop-web` (the bad deploy), one GET /health (500), `current`
     repointed at r1 and `pm2 reload shop-web` again, timed by the same poller. It starts the rollback
     the moment the bad answer arrives, so it is the floor of a by-hand rollback: a person adds the time
     to notice and type. Role and runbook alternate, the order rotated between runs.
  2. no-op redeploy: the same release id again, everything already live and good, on 3 hosts
     (app1, app2, app3) against 1 host (localhost): target ratio <= 1.3x. Each site deploys r1 once,
     then the identical playbooks/deploy.yml run is timed --noop-runs times (order rotated; medians),
     with deploy_serial 3 (one switch batch) and with each value of --serials. pm2 pids are compared
     before and after every run: a no-op reloads nothing. Every run is profiled with the callback
     bench/callback_plugins/bench_task_times.py (task start and per-host times), and the report says
     where the time goes. Reference: a playbook with as many tasks of each kind doing nothing (set_fact,
     stat), on 1 and on 3 hosts: what Ansible itself costs here per task for each extra host.

Printed: a table per part and the targets with PASS/MISS. Exit 0 either way (a benchmark reports, it
does not assert), 1 when a deploy itself fails (r1, a no-op, or a bad deploy that was not rolled back).
Everything (pm2 daemons, the server, the temp dir) is removed at the end, also on errors, Ctrl-C and
SIGTERM.

    .venv/bin/python bench/rollback.py                      # 3 rollback runs, 3 no-op runs per setup
    .venv/bin/python bench/rollback.py --runs 1 --noop-runs 1 --serials ""   # smoke run, ~4 minutes
    .venv/bin/python bench/rollback.py --parts rollback --health-retries 10 --health-delay 1   # role defaults
    .venv/bin/python bench/rollback.py --parts noop --json noop.json
"""

from __future__ import print_function

import argparse
import collections
import contextlib
import http.client
import io
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import BenchError, clean_up, first_line, log, machine, utc_stamp, write_json
from benchlib import run as run_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from helpers.deploy_site import NodeSite  # noqa: E402 pylint: disable=wrong-import-position
from helpers.node_apps import PM2  # noqa: E402 pylint: disable=wrong-import-position
from helpers.playbooks import Playbook  # noqa: E402 pylint: disable=wrong-import-position
from helpers.releases import current_of  # noqa: E402 pylint: disable=wrong-import-position
from helpers.servers import PostgresServer  # noqa: E402 pylint: disable=wrong-import-position
from integration import seed  # noqa: E402 pylint: disable=wrong-import-position

CALLBACKS = os.path.join(ROOT, "bench", "callback_plugins")
CALLBACK = "bench_task_times"
OLD, NEW = "1.0.0", "2.0.0"
APP = "shop-web"  # NodeSite's pm2 app
TARGETS = dict(rollback_seconds=10.0, noop_ratio=1.3)
THREE = ("app1", "app2", "app3")
POLL_TIMEOUT = 2.0
# Requests that start up to 1 s after a deploy ends are counted; polling goes on this long after it, so one
# that hangs until the poller's timeout still ends (as a timeout) inside the samples.
TAIL = 1.0 + POLL_TIMEOUT + 0.5
# Actions that run on the controller only (no module process on the host).
CONTROLLER_ACTIONS = {"set_fact", "include_tasks", "include_role", "import_tasks", "assert", "meta", "debug", "fail",
                      "set_stats", "validate_argument_spec", "include_vars", "add_host", "group_by"}
# The role's steps in a bad switch, in order, found by task name in the callback's lines (best effort:
# a renamed task only drops its column).
SWITCH_STEPS = [("switched", "Switch | Point current at the release"), ("reloaded", "Switch | Start or reload the apps"),
                ("probe_failed", "Health | Probe each app"), ("back", "Switch back | Point current back"),
                ("back_reloaded", "Switch back | Reload the apps"), ("back_healthy", "Health | Probe each app")]


def pm2_version():
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(PM2))), "package.json")) as handle:
            return json.load(handle)["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec="%.2f", none="-"):
    return none if value is None else spec % value


def table(header, rows):
    rows = [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return lines


def task_file(path):
    """'.../ansible_collections/safeship/webapp/roles/deploy/tasks/hook.yml:5' -> 'roles/deploy/tasks/hook.yml'."""
    path = path.rsplit(":", 1)[0]
    collection = os.path.join(".build", "collections", "ansible_collections", "safeship", "webapp") + os.sep
    path = os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path
    return path[len(collection):] if path.startswith(collection) else path


def play_label(name):
    """'Deploy | Switch - a few hosts at a time' -> 'switch'."""
    return name.split("|", 1)[-1].split(" - ", 1)[0].strip().lower()


def git_state():
    """The commit measured and the files that differed from it (others edit the checkout meanwhile)."""
    def git(*args):
        proc = subprocess.run(["git", "-C", ROOT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True, check=False)
        return proc.stdout.strip()
    return dict(commit=git("rev-parse", "--short", "HEAD"),
                modified=[line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
                          if line[3:].startswith(("roles/", "playbooks/", "plugins/"))])


def kind_cell(kind):
    """'7.5 s = 150 x 0.050 s' for a kind of task in the profile."""
    if not kind:
        return "-"
    return "%.1f s = %d x %.3f s" % (kind["wall"], kind["tasks"], kind["per_task"])


def verdict(value, target):
    return "-" if value is None else ("PASS" if value <= target else "MISS")


# ---- processes left behind ------------------------------------------------------------------
# A Ctrl-C kills ansible-playbook (subprocess.run), but its workers run in sessions of their own and would
# finish their task (a pm2 reload...) with nobody waiting. As a child subreaper this process inherits them,
# and every other orphan below it (the pm2 and postgres daemons too), so the cleanup can stop them by pid.
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    try:
        import ctypes  # pylint: disable=import-outside-toplevel
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def own_children():
    """[(pid, pgid)] of this process's live children (from /proc)."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.append((int(name), int(fields[2])))
    return found


def reap():
    while True:
        try:
            pid, dummy = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_leftovers():
    """Stop whatever still runs below this process (a child leading its own group: the whole group), then reap."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        children = own_children()
        if not children:
            break
        log("stopping %d process(es) left behind: %s" % (len(children), " ".join(str(pid) for pid, dummy in children)))
        for pid, pgid in children:
            try:
                if pgid == pid:
                    os.killpg(pgid, sig)
                else:
                    os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + 5
        while own_children() and time.time() < deadline:
            reap()
            time.sleep(0.1)
    reap()


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
    versions = collections.Counter(s.version for s in window if s.status is not None)
    gaps = [b.end - a.end for a, b in zip(window, window[1:])]
    result = dict(requests=len(window), failed=sum(statuses.values()) + sum(errors.values()),
                  non_200=dict(statuses), connection_errors=dict(errors), connection_errors_total=sum(errors.values()),
                  versions=dict(versions), answers_not_old=len(bad),
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


# ---- the task times callback ------------------------------------------------------------------
class TaskTimes(object):
    """The JSON lines of bench_task_times for one playbook run."""

    def __init__(self, path):
        self.events = []
        if os.path.exists(path):
            with open(path) as handle:
                self.events = [json.loads(line) for line in handle if line.strip()]
        marks = [e for e in self.events if e["ev"] in ("task", "play", "end")]
        hosts = collections.defaultdict(list)
        for event in self.events:
            if event["ev"] == "host":
                hosts[event["uuid"]].append(event)
        self.tasks = []
        self.plays = []
        for index, event in enumerate(marks):
            following = marks[index + 1]["t"] if index + 1 < len(marks) else event["t"]
            if event["ev"] == "task":
                self.tasks.append(dict(event, wall=following - event["t"], hosts=hosts.get(event["uuid"], [])))
            elif event["ev"] == "play":
                following = next((m["t"] for m in marks[index + 1:] if m["ev"] in ("play", "end")), event["t"])
                self.plays.append(dict(name=event["name"], wall=following - event["t"]))
        self.first = self.events[0]["t"] if self.events else None
        self.last = self.events[-1]["t"] if self.events else None

    def steps(self, names, after=None):
        """[(label, end time of the task's first host result)] for names in order, each after the previous."""
        found = []
        since = after or 0
        for label, needle in names:
            hit = next((h for t in self.tasks if needle in t["name"] for h in t["hosts"]
                        if h["end"] >= since and h["status"] != "skipped"), None)
            if hit is None:
                continue
            found.append((label, hit["end"], hit["status"]))
            since = hit["end"]
        return found

    def changed(self):
        return sorted({t["name"] for t in self.tasks for h in t["hosts"] if h["status"] == "changed"})

    def statuses(self):
        return dict(collections.Counter(h["status"] for t in self.tasks for h in t["hosts"]))


def short_action(action):
    return action.rsplit(".", 1)[-1]


def profile(runs):
    """Medians over several runs of the same setup: per play, per kind of task, per task (file:line; a task
    in a file included several times sums its runs), and the time no host was running anything."""
    per_task = collections.defaultdict(list)
    seen = collections.defaultdict(list)
    names = {}
    kinds = collections.defaultdict(list)
    executions = collections.defaultdict(list)
    plays = collections.defaultdict(list)
    idle = []
    host_results = []
    startup = []
    counts = []
    for times, dummy in runs:
        if not times.tasks:
            continue
        startup.append(times.first - times.start_at)
        counts.append(len(times.tasks))
        by_kind = collections.Counter()
        runs_of_kind = collections.Counter()
        by_task = collections.Counter()
        times_seen = collections.Counter()
        quiet = 0.0
        for task in times.tasks:
            key = task["path"] or task["name"]
            action = short_action(task["action"])
            names[key] = (task["name"], action)
            by_task[key] += task["wall"]
            times_seen[key] += 1
            kind = "controller" if action in CONTROLLER_ACTIONS else "module"
            by_kind[kind] += task["wall"]
            runs_of_kind[kind] += 1
            busy = max([h["end"] - h["t"] for h in task["hosts"]] or [0.0])
            quiet += max(task["wall"] - busy, 0.0)
        for key, wall in by_task.items():
            per_task[key].append(wall)
            seen[key].append(times_seen[key])
        for kind, wall in by_kind.items():
            kinds[kind].append(wall)
            executions[kind].append(runs_of_kind[kind])
        per_play = collections.Counter()
        for play in times.plays:  # with serial, one line per batch: summed
            per_play[play["name"]] += play["wall"]
        for name, wall in per_play.items():
            plays[name].append(wall)
        host_results.append(sum(len(task["hosts"]) for task in times.tasks))
        idle.append(quiet)
    return dict(startup=median(startup), tasks=median(counts), no_host_busy=median(idle), host_tasks=median(host_results),
                plays={k: median(v) for k, v in plays.items()},
                kinds={k: dict(wall=median(v), tasks=median(executions[k]), per_task=median(v) / median(executions[k]))
                       for k, v in kinds.items()},
                per_task={k: dict(name=names[k][0], action=names[k][1], wall=median(v), times=median(seen[k]))
                          for k, v in per_task.items()})


# ---- the bench -------------------------------------------------------------------------------
class Bench(object):
    def __init__(self, args):
        self.args = args
        self.workdir = None
        self.server = None
        self.sites = []
        self.poller = None
        self.health = None
        self.playbook_runs = 0
        self.rollback = dict(role=[], hand=[])
        self.noop = collections.OrderedDict()
        self.noop_times = collections.defaultdict(list)
        self.noop_changed = {}
        self.noop_floor = None

    # -- helpers
    def site(self, name, hosts):
        database = "bench_" + name
        seed.seed_postgres(self.server, database, users=20, orders=50, invoices=10)
        site = NodeSite(os.path.join(self.workdir, name), self.server, database, hosts=hosts)
        self.sites.append(site)
        return site

    def playbook(self, site, release_id, version, variant="good", **more):
        """site.deploy with the task times callback on; (process, seconds, TaskTimes)."""
        self.playbook_runs += 1
        path = os.path.join(self.workdir, "times-%03d.jsonl" % self.playbook_runs)
        os.environ["BENCH_TASK_TIMES"] = path
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        with contextlib.redirect_stdout(io.StringIO()):  # Playbook echoes ansible's output; it is in site's play/*.log
            proc = site.deploy(release_id, version, variant, **more)
        elapsed = time.time() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times = TaskTimes(path)
        times.start_at = started
        # CPU of ansible-playbook, its workers and the modules they ran (all waited for); not the pm2 daemons
        times.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return proc, elapsed, times

    def health_vars(self):
        """The role's health check during the bad deploy: NodeSite's (4 retries, 0.5 s apart) unless overridden."""
        more = {}
        if self.args.health_retries is not None:
            more["node_pm2_health_retries"] = self.args.health_retries
        if self.args.health_delay is not None:
            more["node_pm2_health_delay"] = self.args.health_delay
        return more

    def health_label(self, site):
        return "health check %s retries, %s s apart" % (
            self.args.health_retries if self.args.health_retries is not None else site.vars["node_pm2_health_retries"],
            self.args.health_delay if self.args.health_delay is not None else site.vars["node_pm2_health_delay"])

    @staticmethod
    def must(proc, what):
        if proc.returncode != 0:
            raise BenchError("%s failed (rc %d):\n%s" % (what, proc.returncode, proc.stdout[-4000:]))

    def deploy_r1(self, site, **more):
        proc, elapsed, dummy = self.playbook(site, "r1", OLD, **more)
        self.must(proc, "deploying r1 (%s) on %s" % (OLD, ", ".join(site.hosts)))
        served = [site.served(h) for h in site.hosts]
        if served != [(200, OLD)] * len(site.hosts):
            raise BenchError("after deploying r1 the hosts serve %r" % served)
        log("r1 deployed on %s in %.1f s" % (", ".join(site.hosts), elapsed))

    # -- part 1
    def role_rollback(self, site, run):
        host = site.hosts[0]
        release_id = "r2-%d" % run
        with Poller(site.ports[host], self.args.interval_ms / 1000.0) as poller:
            self.poller = poller
            time.sleep(0.5)
            started = time.time()
            proc, elapsed, times = self.playbook(site, release_id, NEW, "unhealthy", node_pm2_candidate_check=False,
                                                 **self.health_vars())
            ended = time.time()
            time.sleep(TAIL)
            samples = poller.stop()
        self.poller = None
        if proc.returncode == 0:
            raise BenchError("the bad release %s was deployed without a rollback:\n%s" % (release_id, proc.stdout[-4000:]))
        if site.served(host) != (200, OLD) or current_of(site.roots[host]) != "r1":
            raise BenchError("after the bad deploy %s %s serves %r, current is %s:\n%s" % (
                release_id, host, site.served(host), current_of(site.roots[host]), proc.stdout[-4000:]))
        status = site.last_report().get("status")
        result = recovery(samples, started, ended + 1.0)
        if result["first_bad_at"] is None:
            raise BenchError("the poller never saw the bad release %s serve (candidate check on?)" % release_id)
        steps = times.steps(SWITCH_STEPS)
        result.update(run=run, release=release_id, deploy_seconds=round(elapsed, 2), report_status=status,
                      steps={label: dict(at=round(at - result["first_bad_at"], 3), status=st) for label, at, st in steps})
        self.rollback["role"].append(result)
        log("role run %d: back to %s %s s after the first bad answer (bad answers for %s s), %d failed of %d "
            "(%d connection errors), deploy %.1f s, report %s" % (
                run, OLD, fmt(result["back_seconds"]), fmt(result["bad_seconds"]), result["failed"], result["requests"],
                result["connection_errors_total"], elapsed, status))
        return release_id

    def hand_rollback(self, site, run, bad_release):
        """The runbook, on the same host: current -> bad release + pm2 reload, one GET, current -> r1 + pm2 reload."""
        host = site.hosts[0]
        root = site.roots[host]
        pm2 = site.pm2[host]
        marks = {}

        def reload():
            proc = pm2.run("reload", APP, check=False)
            if proc.returncode != 0:
                raise BenchError("pm2 reload %s failed (rc %d): %s" % (APP, proc.returncode, proc.stdout[-2000:]))

        with Poller(site.ports[host], self.args.interval_ms / 1000.0) as poller:
            self.poller = poller
            time.sleep(0.5)
            started = time.time()
            flip(root, bad_release)
            reload()
            marks["bad_reloaded"] = time.time()
            deadline = time.time() + 20
            while True:  # the runbook's `curl /health`: the bad release answers 500
                answer = poller.once()
                if not good(answer):
                    break
                if time.time() > deadline:
                    raise BenchError("by hand: %s still serves %s 20 s after the switch to %s" % (host, OLD, bad_release))
                time.sleep(0.1)
            marks["checked"] = time.time()
            flip(root, "r1")
            reload()
            marks["back_reloaded"] = time.time()
            while not good(poller.once()):
                if time.time() > deadline + 20:
                    raise BenchError("by hand: %s does not serve %s again after the rollback" % (host, OLD))
                time.sleep(0.05)
            ended = time.time()
            time.sleep(TAIL)
            samples = poller.stop()
        self.poller = None
        result = recovery(samples, started, ended + 1.0)
        if result["first_bad_at"] is None:
            raise BenchError("by hand: the poller never saw the bad release %s serve" % bad_release)
        result.update(run=run, release=bad_release, deploy_seconds=round(ended - started, 2),
                      steps={k: dict(at=round(v - result["first_bad_at"], 3)) for k, v in marks.items()})
        self.rollback["hand"].append(result)
        log("runbook run %d: back to %s %s s after the first bad answer (bad answers for %s s), %d failed of %d "
            "(%d connection errors)" % (run, OLD, fmt(result["back_seconds"]), fmt(result["bad_seconds"]), result["failed"],
                                        result["requests"], result["connection_errors_total"]))

    def part_rollback(self):
        log("rollback: a site on localhost")
        site = self.site("rollback", ("localhost",))
        self.health = self.health_label(site)
        self.deploy_r1(site)
        last_bad = None
        for run in range(1, self.args.runs + 1):
            order = ("role", "hand") if run % 2 == 1 or last_bad is None else ("hand", "role")
            for who in order:
                if who == "role":
                    last_bad = self.role_rollback(site, run)
                else:
                    self.hand_rollback(site, run, last_bad)
        site.close()
        self.sites.remove(site)

    # -- part 2
    def part_noop(self):
        one = self.site("noop1", ("localhost",))
        three = self.site("noop3", THREE)
        self.deploy_r1(one)
        self.deploy_r1(three, deploy_serial=3)
        setups = [("1 host", one, 1)] + [("3 hosts, serial %d" % s, three, s) for s in self.args.serials]
        for label, dummy, serial in setups:
            self.noop[label] = dict(hosts=len(dummy.hosts), serial=serial, seconds=[], cpu_seconds=[])
        for rep in range(self.args.noop_runs):
            shift = rep % len(setups)
            for label, site, serial in setups[shift:] + setups[:shift]:
                before = self.pids(site)
                proc, elapsed, times = self.playbook(site, "r1", OLD, deploy_serial=serial)
                self.must(proc, "the no-op redeploy of r1 (%s)" % label)
                after = self.pids(site)
                if before != after:
                    raise BenchError("the no-op redeploy (%s) reloaded pm2: pids %r -> %r" % (label, before, after))
                self.noop[label]["seconds"].append(round(elapsed, 2))
                self.noop[label]["cpu_seconds"].append(round(times.cpu, 2))
                self.noop_times[label].append((times, elapsed))
                self.noop_changed[label] = times.changed()
                log("no-op %s, run %d: %.2f s (%d tasks, %s)" % (label, rep + 1, elapsed, len(times.tasks),
                                                                 times.statuses()))
        for label, entry in self.noop.items():
            entry["median"] = median(entry["seconds"])
            entry["cpu_median"] = median(entry["cpu_seconds"])
            entry["profile"] = profile(self.noop_times[label])
            entry["changed_tasks"] = self.noop_changed.get(label, [])
        self.floor()

    def floor(self):
        """Ansible's own cost here: a playbook with as many tasks of each kind as the 1-host no-op ran, doing
        nothing (set_fact; stat of /), on 1 and on 3 local hosts. Its ratio is what the scheduling alone costs."""
        prof = self.noop["1 host"]["profile"]["kinds"]
        controller = int(prof.get("controller", {}).get("tasks") or 0)
        modules = int(prof.get("module", {}).get("tasks") or 0)
        tasks = []
        for index in range(controller + modules):
            if index % max((controller + modules) // max(modules, 1), 1) == 0 and modules > 0:
                modules -= 1
                tasks.append("    - name: Module task %d\n      ansible.builtin.stat:\n        path: /\n" % index)
            else:
                tasks.append("    - name: Controller task %d\n      ansible.builtin.set_fact:\n        _bench_%d: %d\n"
                             % (index, index % 7, index))
        text = "- name: Ansible's floor\n  hosts: app\n  gather_facts: false\n  tasks:\n" + "".join(tasks)
        os.environ.pop("BENCH_TASK_TIMES", None)  # the callback stays on (as in the deploys) but writes nothing
        result = {}
        for label, hosts in (("1 host", ("localhost",)), ("3 hosts", THREE)):
            play = Playbook(os.path.join(self.workdir, "floor-%d" % len(hosts)), hosts=hosts)
            seconds = []
            for dummy in range(self.args.noop_runs):
                started = time.time()
                with contextlib.redirect_stdout(io.StringIO()):
                    proc = play.run(text)
                seconds.append(time.time() - started)
                self.must(proc, "the floor playbook on %s" % label)
            result[label] = dict(seconds=[round(x, 2) for x in seconds], median=median(seconds))
            log("floor playbook (%d tasks) on %s: %s s" % (len(tasks), label, " ".join("%.1f" % x for x in seconds)))
        result["tasks"] = dict(controller=controller, module=len(tasks) - controller)
        result["ratio"] = result["3 hosts"]["median"] / result["1 host"]["median"]
        self.noop_floor = result

    @staticmethod
    def pids(site):
        return {h: sorted(p for p, dummy, dummy2 in site.pm2[h].apps().get(APP, [])) for h in site.hosts}

    # -- report
    def report_rollback(self, lines):
        role, hand = self.rollback["role"], self.rollback["hand"]
        if not role:
            return {}
        lines += ["", "1. Bad switch -> %s serving again (deploy r2 = %s unhealthy, candidate check off, %s), %d runs, "
                      "poll every %d ms:" % (OLD, NEW, self.health, len(role), self.args.interval_ms), ""]
        rows = []
        for who, results in (("deploy.yml (role rollback)", role), ("by-hand runbook (floor)", hand)):
            for r in results:
                rows.append((who, r["run"], fmt(r["back_seconds"]), fmt(r["bad_seconds"]), r["requests"], r["failed"],
                             ",".join("%s:%d" % kv for kv in sorted(r["connection_errors"].items())) or "0",
                             ",".join("%s:%d" % kv for kv in sorted(r["non_200"].items())) or "-",
                             fmt(r["deploy_seconds"], "%.1f")))
        lines += table(("", "run", "back to 1.0.0 s", "bad answers for s", "requests", "failed", "conn errors",
                        "non-200", "run s"), rows)
        summary = {}
        for who, results in (("role", role), ("hand", hand)):
            backs = [r["back_seconds"] for r in results if r["back_seconds"] is not None]
            summary[who] = dict(median=median(backs), max=max(backs) if backs else None,
                                failed_median=median([r["failed"] for r in results]),
                                connection_errors=sum(r["connection_errors_total"] for r in results))
        lines.append("")
        steps = collections.defaultdict(list)
        for r in role:
            for label, step in r["steps"].items():
                steps[label].append(step["at"])
        if steps:
            lines.append("role, seconds after the first bad answer (median): " + ", ".join(
                "%s %+.2f" % (label, median(steps[label])) for label, dummy in SWITCH_STEPS if label in steps))
        hsteps = collections.defaultdict(list)
        for r in hand:
            for label, step in r["steps"].items():
                hsteps[label].append(step["at"])
        if hsteps:
            lines.append("runbook, seconds after the first bad answer (median): " + ", ".join(
                "%s %+.2f" % (label, median(v)) for label, v in hsteps.items()))
        r, h = summary["role"], summary["hand"]
        lines.append("")
        against = (" (runbook floor median %s s, max %s s; role/runbook %.1fx)" % (
            fmt(h["median"]), fmt(h["max"]), r["median"] / h["median"])) if h["median"] and r["median"] else ""
        lines.append("target: bad switch -> %s again <= %.0f s: role median %s s, max %s s: %s (judged on the max)%s" % (
            OLD, TARGETS["rollback_seconds"], fmt(r["median"]), fmt(r["max"]), verdict(r["max"], TARGETS["rollback_seconds"]),
            against))
        lines.append("failed requests during the bad deploy (median): role %s, runbook %s; connection errors (all runs): "
                     "role %d, runbook %d" % (fmt(r["failed_median"], "%d"), fmt(h["failed_median"], "%d"),
                                              r["connection_errors"], h["connection_errors"]))
        return summary

    def report_noop(self, lines):
        if not self.noop:
            return {}
        base = self.noop.get("1 host", {}).get("median")
        lines += ["", "2. No-op redeploy (r1 again, live and good everywhere), median of %d:" % self.args.noop_runs, ""]
        rows = []
        ratios = {}
        for label, entry in self.noop.items():
            ratio = entry["median"] / base if base and entry["hosts"] > 1 else None
            ratios[label] = ratio
            prof = entry["profile"]
            rows.append((label, fmt(entry["median"]), " ".join("%.1f" % s for s in entry["seconds"]),
                         fmt(ratio, "%.2fx", ""), "" if ratio is None else "%s (<= %.1fx)" % (
                             verdict(ratio, TARGETS["noop_ratio"]), TARGETS["noop_ratio"]),
                         fmt(prof["tasks"], "%d"), fmt(prof["startup"]),
                         ", ".join("%s %.1f" % (play_label(k), v) for k, v in prof["plays"].items() if v >= 0.05),
                         kind_cell(prof["kinds"].get("controller")), kind_cell(prof["kinds"].get("module")),
                         fmt(prof["no_host_busy"], "%.1f"), "%.1f (%.1f CPUs busy)" % (
                             entry["cpu_median"], entry["cpu_median"] / entry["median"])))
        lines += table(("setup", "median s", "runs s", "ratio", "target", "tasks", "start-up s",
                        "plays s", "controller-only tasks", "module tasks",
                        "no host busy s", "CPU s"), rows)
        floor = self.noop_floor
        if floor:
            tasks = floor["tasks"]["controller"] + floor["tasks"]["module"]
            per_host_task = (floor["3 hosts"]["median"] - floor["1 host"]["median"]) / (2.0 * tasks)
            floor["extra_host_task_seconds"] = per_host_task
            lines.append("")
            lines.append("reference, Ansible alone: a playbook of %d tasks doing nothing (%d set_fact, %d stat) on every host: "
                         "1 host %.2f s, 3 hosts %.2f s (%.2fx), i.e. %.1f ms per task for each extra host." % (
                             tasks, floor["tasks"]["controller"], floor["tasks"]["module"], floor["1 host"]["median"],
                             floor["3 hosts"]["median"], floor["ratio"], 1000 * per_host_task))
            one = self.noop["1 host"]
            for label, entry in self.noop.items():
                if entry["hosts"] == 1:
                    continue
                extra = entry["profile"]["host_tasks"] - one["profile"]["host_tasks"]
                budget = TARGETS["noop_ratio"] * one["median"] - one["median"]
                lines.append("  %s: %d host-task runs against %d on 1 host: %d x %.1f ms = %.1f s expected extra, %.1f s "
                             "measured; %.1f s is the whole budget of <= %.1fx, i.e. at most ~%d tasks on every host "
                             "(now ~%d)." % (
                                 label, entry["profile"]["host_tasks"], one["profile"]["host_tasks"], extra,
                                 1000 * per_host_task, extra * per_host_task, entry["median"] - one["median"], budget,
                                 TARGETS["noop_ratio"], budget / (2 * per_host_task) if per_host_task > 0 else 0,
                                 extra / 2.0))
        lines.append("")
        changed = self.noop.get("1 host", {}).get("changed_tasks", [])
        lines.append("tasks reporting changed on a no-op (1 host): %s" % ("; ".join(changed) or "none"))
        # where the time goes: the tasks that cost the most on 3 hosts, with their 1-host cost beside
        three = [label for label in self.noop if self.noop[label]["hosts"] > 1]
        if base and three:
            label = three[0]
            p3 = self.noop[label]["profile"]["per_task"]
            p1 = self.noop["1 host"]["profile"]["per_task"]
            lines += ["", "where a no-op spends its time (%s vs 1 host; wall s per task, summed over its runs in one playbook, "
                      "median of the runs; top %d by 3-host cost):"
                      % (label, self.args.top), ""]
            top = sorted(p3.items(), key=lambda kv: -kv[1]["wall"])[:self.args.top]
            lines += table(("task", "action", "runs", "3 hosts", "1 host", "+"), [
                (v["name"][:78], v["action"], fmt(v["times"], "%d"), "%.2f" % v["wall"], fmt(p1.get(k, {}).get("wall")),
                 fmt(v["wall"] - p1[k]["wall"] if k in p1 else None, "%+.2f")) for k, v in top])
            by_action = collections.defaultdict(lambda: [0.0, 0.0, 0])
            for k, v in p3.items():
                by_action[v["action"]][0] += v["wall"]
                by_action[v["action"]][2] += 1
            for k, v in p1.items():
                by_action[v["action"]][1] += v["wall"]
            by_file = collections.defaultdict(lambda: [0.0, 0.0, 0])
            for k, v in p3.items():
                by_file[task_file(k)][0] += v["wall"]
                by_file[task_file(k)][2] += v["times"] or 0
            for k, v in p1.items():
                by_file[task_file(k)][1] += v["wall"]
            lines += ["", "by task file (sums of the medians above):", ""]
            lines += table(("file", "3 hosts s", "1 host s", "+ s", "task runs"), [
                (f, "%.2f" % s3, "%.2f" % s1, "%+.2f" % (s3 - s1), n)
                for f, (s3, s1, n) in sorted(by_file.items(), key=lambda kv: -kv[1][0])[:self.args.top]])
            lines += ["", "by action (sums of the medians above over every task of that action):", ""]
            lines += table(("action", "3 hosts s", "1 host s", "+ s", "tasks"), [
                (a, "%.2f" % s3, "%.2f" % s1, "%+.2f" % (s3 - s1), n)
                for a, (s3, s1, n) in sorted(by_action.items(), key=lambda kv: -kv[1][0])[:self.args.top]])
        return ratios

    def machine(self):
        return dict(machine(), node=first_line(["node", "--version"]), pm2=pm2_version(),
                    ansible=first_line([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "--version"]),
                    postgres=first_line([os.path.join("/usr/lib/postgresql/15/bin", "postgres"), "--version"]),
                    git=git_state())

    def report(self, started, finished, load):
        lines = []
        rollback = self.report_rollback(lines)
        ratios = self.report_noop(lines)
        lines += ["", "load average (1 min) %.1f at the start, %.1f at the end; %d CPUs: a noisy machine, see "
                      "docs/benchmarks.md" % (load, os.getloadavg()[0], os.cpu_count()), ""]
        print("\n".join(lines), flush=True)
        data = dict(command=" ".join(["bench/rollback.py"] + sys.argv[1:]), started=started, finished=finished,
                    machine=self.machine(), targets=TARGETS,
                    config=dict(runs=self.args.runs, noop_runs=self.args.noop_runs, serials=self.args.serials,
                                interval_ms=self.args.interval_ms, parts=self.args.parts, health=self.health),
                    rollback=dict(summary=rollback, runs=self.rollback),
                    noop=dict(ratios=ratios, floor=self.noop_floor, setups=self.noop))
        write_json(self.args.json, data)
        return data

    def main(self):
        become_subreaper()
        self.workdir = tempfile.mkdtemp(prefix="safeship-rollback-")
        started = utc_stamp()
        load = os.getloadavg()[0]
        log("work directory %s" % self.workdir)
        enabled = [c for c in os.environ.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c.strip()]
        os.environ["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(enabled + [CALLBACK])
        os.environ["ANSIBLE_CALLBACK_PLUGINS"] = os.pathsep.join(
            [CALLBACKS] + [p for p in os.environ.get("ANSIBLE_CALLBACK_PLUGINS", "").split(os.pathsep) if p])
        try:
            self.server = PostgresServer()
            log("PostgreSQL on port %d" % self.server.port)
            if "rollback" in self.args.parts:
                self.part_rollback()
            if "noop" in self.args.parts:
                self.part_noop()
            return self.report(started, utc_stamp(), load)
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


def flip(app_root, release_id):
    """Point app_root/current at releases/<id> atomically (a new relative link renamed over it), as a runbook
    should (`ln -sfn` is not atomic)."""
    tmp = os.path.join(app_root, ".current.bench-tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", release_id), tmp)
    os.rename(tmp, os.path.join(app_root, "current"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="bad deploys rolled back, each by the role and by hand (default 3)")
    parser.add_argument("--noop-runs", type=int, default=3, help="timed no-op redeploys per setup (default 3; medians)")
    parser.add_argument("--serials", default="1",
                        help="deploy_serial values for the 3-host no-op besides 3 (comma-separated; default 1; '' for none)")
    parser.add_argument("--interval-ms", type=int, default=20, help="poll /health every N ms (default 20)")
    parser.add_argument("--health-retries", type=int, default=None,
                        help="node_pm2_health_retries for the bad deploy (default: NodeSite's 4; the role's default is 10)")
    parser.add_argument("--health-delay", type=float, default=None,
                        help="node_pm2_health_delay for the bad deploy (default: NodeSite's 0.5; the role's default is 1)")
    parser.add_argument("--parts", default="rollback,noop", help="rollback, noop or both (default both)")
    parser.add_argument("--top", type=int, default=12, help="rows in the no-op profile tables (default 12)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    try:
        args.serials = [3] + [int(s) for s in args.serials.split(",") if s.strip() and int(s) != 3]
    except ValueError:
        parser.error("--serials takes numbers, e.g. 1 or 1,2")
    if args.runs < 1 or args.noop_runs < 1 or args.interval_ms < 1 or args.top < 1 or min(args.serials) < 1:
        parser.error("--runs, --noop-runs, --interval-ms, --top and --serials must be positive")
    if not args.parts or set(args.parts) - {"rollback", "noop"}:
        parser.error("--parts takes rollback and/or noop")
    return args


def main(argv=None):
    args = parse_args(argv)
    return run_bench(Bench(args).main)


if __name__ == "__main__":
    sys.exit(main())
