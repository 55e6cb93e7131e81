# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""First deploy of the demo's sample app with playbooks/deploy.yml, against the same steps done by hand.

Standalone, no server: the sample notes app (demo/sample_app: Node, SQLite through sql.js, no build step) released
as v1 (1.0.0) on localhost, the way scripts/demo does it: playbooks/deploy.yml with --code's (default: this
checkout's) inventories/demo, the release handed over as an artifact directory. Every run is a true first deploy:
a fresh demo_dir (app root, SQLite file, backups) and a fresh pm2 home, its daemon killed after the run; the app's
port is a free one. Both run with this checkout's .venv and pm2.

  deploy.yml  ansible-playbook playbooks/deploy.yml -i inventories/demo -e deploy_release_id=v1
              -e node_pm2_artifact=<artifact> -e demo_dir=<fresh> -e demo_port=<port> -e node_pm2_pm2_binary=<pm2>;
              then it must serve 1.0.0 on /health. Its tasks are counted and profiled with
              bench/callback_plugins/bench_task_times.py.
  by hand     the steps of the runbook, timed one by one: copy the artifact into releases/v1, `npm ci --no-audit
              --no-fund` there, `npm run migrate` (DATABASE_PATH in shared/data), link `current` (atomic rename),
              `pm2 start server.js -i 2 --wait-ready` from current/ (the app sends 'ready' once it listens), one
              GET /health (again only while it does not answer 200 + 1.0.0).
  baseline    with --baseline PATH: deploy.yml of that checkout too (the previous code), the same way.

Target: deploy.yml <= 5x by hand (medians of --runs, the order rotated every run). npm's cache is warmed once
before the first run (an untimed `npm ci` in a scratch copy), so no run pays for a download the others do not.
Exit 0 either way (a benchmark reports, it does not assert), 1 when a deploy fails. Everything (pm2 daemons, the
temp dir) is removed at the end, also on errors, Ctrl-C and SIGTERM.

    .venv/bin/python bench/deploy.py                                   # 3 runs of each
    .venv/bin/python bench/deploy.py --runs 1                          # smoke run, ~1 minute
    .venv/bin/python bench/deploy.py --baseline /work/baseline --json first.json
"""

from __future__ import print_function

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time

from benchlib import (ROOT, BenchError, Playbooks, begin, checkout_options, checkouts, clean_up, describe_code, flip,
                      fmt, log, machine, median, must, profile, profile_summary, ratio, stop_leftovers, table, utc_stamp,
                      verdict, versions, where_time_goes, write_json)
from benchlib import run as run_bench

sys.path.insert(0, os.path.join(ROOT, "tests"))

from helpers.demo_app import assemble_release  # noqa: E402 pylint: disable=wrong-import-position
from helpers.node_apps import PM2, Pm2Home, free_port, get_json  # noqa: E402 pylint: disable=wrong-import-position

VERSION = "1.0.0"
RELEASE = "v1"
APP = "notes"  # the demo inventory's pm2 app
TARGET_RATIO = 5.0
NPM_CI = ["npm", "ci", "--no-audit", "--no-fund"]  # node_pm2_npm_ci_args' defaults


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.workdir = None
        self.homes = []
        self.code = self.baseline = self.playbooks = None
        self.artifact = None
        self.runs = collections.OrderedDict()

    def serves(self, port):
        """One GET /health: whether it answers 200 with 1.0.0."""
        try:
            status, body = get_json("http://127.0.0.1:%d/health" % port)
        except OSError:
            return False
        return status == 200 and bool(body) and body.get("version") == VERSION

    def pm2_home(self, path):
        home = Pm2Home(path)
        self.homes.append(home)
        return home

    def stop(self, home):
        home.close()
        self.homes.remove(home)

    def with_role(self, checkout, run):
        base = os.path.join(self.workdir, "run-%d-%s" % (run, checkout.label))
        os.makedirs(base)
        port = free_port()
        home = self.pm2_home(os.path.join(base, "pm2"))  # the inventory's node_pm2_pm2_home: demo_dir/pm2
        extra = dict(deploy_release_id=RELEASE, node_pm2_artifact=self.artifact, demo_dir=base, demo_port=port,
                     node_pm2_pm2_binary=PM2)
        played = must(self.playbooks.run(checkout, "deploy.yml", checkout.path("inventories", "demo"), extra,
                                         label="first-%s" % checkout.label),
                      "the first deploy of the sample app with %s" % checkout.describe())
        if not self.serves(port):
            raise BenchError("after the deploy (%s) the sample app does not serve %s on port %d" % (
                checkout.label, VERSION, port))
        self.stop(home)
        return dict(seconds=round(played.seconds, 2), tasks=len(played.times.tasks), cpu=round(played.cpu, 2),
                    times=played.times)

    def by_hand(self, run):
        base = os.path.join(self.workdir, "run-%d-hand" % run)
        root = os.path.join(base, "srv", APP)
        release = os.path.join(root, "releases", RELEASE)
        database = os.path.join(root, "shared", "data", "notes.sqlite")
        port = free_port()
        home = self.pm2_home(os.path.join(base, "pm2"))
        env = dict(os.environ, DATABASE_PATH=database, PORT=str(port), PM2_HOME=home.path)
        steps = collections.OrderedDict()
        started = time.time()
        last = [started]

        def step(name, argv=None, cwd=None):
            if argv:
                proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      universal_newlines=True, check=False)
                must(proc, "by hand: %s" % " ".join(argv))
            now = time.time()
            steps[name] = round(now - last[0], 3)
            last[0] = now

        shutil.copytree(self.artifact, release)
        step("copy")
        step("npm ci", NPM_CI, release)
        os.makedirs(os.path.dirname(database))
        step("migrate", ["npm", "run", "--silent", "migrate"], release)
        flip(root, RELEASE)
        step("link current")
        current = os.path.join(root, "current")
        step("pm2 start", [PM2, "start", "server.js", "--name", APP, "-i", "2", "--wait-ready", "--listen-timeout",
                           "10000", "--kill-timeout", "5000", "--cwd", current], current)
        gets = 1
        while not self.serves(port):
            if time.time() - started > 60:
                raise BenchError("by hand: the sample app does not serve %s on port %d" % (VERSION, port))
            gets += 1
            time.sleep(0.05)
        step("GET /health")
        seconds = time.time() - started
        self.stop(home)
        return dict(seconds=round(seconds, 2), steps=steps, gets=gets)

    def warm_npm_cache(self):
        scratch = os.path.join(self.workdir, "npm-warm-up")
        shutil.copytree(self.artifact, scratch)
        must(subprocess.run(NPM_CI, cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, check=False), "npm ci (warming npm's cache)")
        shutil.rmtree(scratch)

    def main(self):
        self.workdir, started, load = begin("safeship-first-deploy-")
        try:
            self.code, self.baseline = checkouts(self.args, self.workdir)
            who = [("deploy.yml", self.code), ("by hand", None)]
            if self.baseline:
                who.append(("deploy.yml, baseline", self.baseline))
            self.playbooks = Playbooks(os.path.join(self.workdir, "ansible"))
            self.artifact = assemble_release(os.path.join(self.workdir, "artifacts", "notes-1"), "1")
            self.warm_npm_cache()
            for label, dummy in who:
                self.runs[label] = []
            for run in range(1, self.args.runs + 1):
                shift = (run - 1) % len(who)
                for label, checkout in who[shift:] + who[:shift]:
                    result = self.with_role(checkout, run) if checkout else self.by_hand(run)
                    result["run"] = run
                    self.runs[label].append(result)
                    if checkout:
                        detail = ", %d tasks" % result["tasks"]
                    else:
                        detail = " (%s)" % ", ".join("%s %.2f" % kv for kv in result["steps"].items())
                    log("run %d, %s: %.2f s%s" % (run, label, result["seconds"], detail))
            return self.report(started, load)
        finally:
            self.cleanup()

    def report(self, started, load):
        summary = collections.OrderedDict()
        for label, results in self.runs.items():
            summary[label] = dict(median=median([r["seconds"] for r in results]),
                                  tasks=median([r.get("tasks") for r in results]))
            if results and "times" in results[0]:
                summary[label]["profile"] = profile([r.pop("times") for r in results])
        hand = summary["by hand"]["median"]
        lines = ["", "First deploy of demo/sample_app (v1, %s) on localhost, SQLite, pm2 (2 cluster workers); fresh app "
                     "root and pm2 home each run; %d runs, the order rotated; code: %s" % (
                         VERSION, self.args.runs, describe_code(self.code, self.baseline)), ""]
        rows = []
        for label, results in self.runs.items():
            value = ratio(summary[label]["median"], hand) if label != "by hand" else None
            summary[label]["ratio"] = value
            rows.append((label, fmt(summary[label]["median"]), " ".join("%.1f" % r["seconds"] for r in results),
                         fmt(summary[label]["tasks"], "%d"), fmt(value, "%.1fx", "")))
        lines += table(("", "median s", "runs s", "tasks", "ratio to by hand"), rows)
        steps = collections.OrderedDict()
        for r in self.runs["by hand"]:
            for name, seconds in r["steps"].items():
                steps.setdefault(name, []).append(seconds)
        lines += ["", "by hand, median per step: " + ", ".join("%s %.2f s" % (k, median(v)) for k, v in steps.items())
                  + "; GETs until 200: %s" % " ".join(str(r["gets"]) for r in self.runs["by hand"])]
        value = summary["deploy.yml"]["ratio"]
        lines += ["", "target: first deploy with deploy.yml <= %.0fx the same steps by hand: %s s / %s s = %s: %s" % (
            TARGET_RATIO, fmt(summary["deploy.yml"]["median"]), fmt(hand), fmt(value, "%.1fx"),
            verdict(value, TARGET_RATIO))]
        profiles = [(label, s["profile"]) for label, s in summary.items() if "profile" in s]
        lines += ["", "where deploy.yml spends its time: " + profile_summary(summary["deploy.yml"]["profile"])]
        lines += where_time_goes(profiles, self.args.top)
        lines += ["", "load average (1 min) %.1f at the start, %.1f at the end; %d CPUs: a noisy machine, see "
                      "docs/benchmarks.md" % (load, os.getloadavg()[0], os.cpu_count()), ""]
        print("\n".join(lines), flush=True)
        data = dict(command=" ".join(["bench/deploy.py"] + sys.argv[1:]), started=started, finished=utc_stamp(),
                    load=dict(start=load, end=os.getloadavg()[0]), machine=dict(machine(), **versions(PM2)),
                    code=self.code.state, baseline=self.baseline.state if self.baseline else None,
                    target_ratio=TARGET_RATIO, verdict=verdict(value, TARGET_RATIO), summary=summary, runs=self.runs)
        write_json(self.args.json, data)
        return data

    def cleanup(self):
        closers = [("pm2 in %s" % home.path, home.close) for home in self.homes]
        closers.append(("processes left behind", stop_leftovers))
        clean_up(self.workdir, closers, "pm2 daemons stopped")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="first deploys of each kind (default 3; medians)")
    checkout_options(parser, "a checkout of the previous code, timed the same way")
    parser.add_argument("--top", type=int, default=12, help="rows in the profile tables (default 12)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.top < 1:
        parser.error("--runs and --top must be positive")
    return args


def main(argv=None):
    return run_bench(Bench(parse_args(argv)).main)


if __name__ == "__main__":
    sys.exit(main())
