# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Switches under load: the node_pm2 role against a plain `pm2 reload` and `pm2 stop && pm2 start`.

The same harness for each strategy: two built releases (1.0.0 and 2.0.0) of the fixture app
tests/fixtures/node_app, a load generator in a second process (tests/helpers/load.py: GET /health
at --rate requests/s, a new connection per request, 2 s timeout), and --switches switches that
alternate the two releases while the load runs:

  (a) role:         the node_pm2 role (cluster mode, --instances workers, wait_ready, kill_timeout
                    5000 ms): both releases deployed with action deploy, then ONE ansible-playbook
                    run of include_role action switch in a loop (as tests/integration/
                    test_node_pm2_zero_downtime.py does);
  (b) pm2 reload:   cluster mode, --instances workers, started WITHOUT --wait-ready and with pm2's
                    default kill timeout; a switch flips the `current` symlink and runs
                    `pm2 reload NAME`;
  (c) stop+start:   what the seed runbooks do: fork mode (one process: a second fork-mode process
                    could not bind the same port), a switch flips `current` and runs
                    `pm2 stop NAME && pm2 start NAME`.

In (b) and (c) each switch then waits until /health serves the new version (as the role's health
check does), so a switch never overlaps the next one. Printed per strategy: requests sent during
the switches, failed, failure rate, failures by kind, longest gap between two successful answers,
time per switch. Numbers are printed, never asserted: this is not a test.

Self-contained: a temp dir with the releases, the app roots and a PM2_HOME per strategy; every pm2
daemon is killed and the dir removed at the end, on errors, Ctrl-C and SIGTERM.

    .venv/bin/python bench/switch.py                       # 20 switches, 150 req/s, 2 instances
    .venv/bin/python bench/switch.py --strategies bc --switches 5
    .venv/bin/python bench/switch.py --json switch.json
    .venv/bin/python bench/switch.py --exit-delay-ms 0     # the app exits as soon as its server closed

--exit-delay-ms changes the bench's own copies of the app (never tests/fixtures): on SIGINT it closes
its server and exits that long afterwards instead of the fixture's 1000 ms. See docs/benchmarks.md for why.
"""

from __future__ import print_function

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from benchlib import BenchError, clean_up, first_line, flip, log, machine, pm2_version, utc_stamp, write_json
from benchlib import run as run_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from helpers.load import LoadGenerator  # noqa: E402 pylint: disable=wrong-import-position
from helpers.node_apps import PM2, Pm2Home, built_release, free_port, wait_for_version  # noqa: E402 pylint: disable=wrong-import-position
from helpers.pm2_switch import RolePlay  # noqa: E402 pylint: disable=wrong-import-position

VERSIONS = ("1.0.0", "2.0.0")
NAMES = {"a": "node_pm2 role (reload, wait_ready)", "b": "pm2 reload, no wait_ready",
         "c": "pm2 stop && pm2 start (fork)"}


EXIT_AS_IS = "Number(process.env.EXIT_DELAY_MS || 1000)"


def delay_exit(path, delay_ms):
    """Make the app at path (a release dir) exit delay_ms after its server closed instead of the fixture's 1000 ms
    (0: at once, which shows the cluster hand-off race)."""
    if delay_ms is None:
        return
    for sub in ("src", "dist"):
        script = os.path.join(path, sub, "server.js")
        if not os.path.exists(script):
            continue
        with open(script) as handle:
            text = handle.read()
        if EXIT_AS_IS not in text:
            raise BenchError("--exit-delay-ms: %r is not in %s (the fixture changed); drop the option" % (EXIT_AS_IS, script))
        with open(script, "w") as handle:
            handle.write(text.replace(EXIT_AS_IS, "%d" % delay_ms))


class Strategy(object):
    """Set up one strategy in its own dir and PM2_HOME; switch(); close() kills its pm2 daemon."""

    key = None

    def __init__(self, bench, workdir):
        self.bench = bench
        self.args = bench.args
        self.workdir = workdir
        os.makedirs(workdir)
        self.pm2 = Pm2Home(os.path.join(workdir, "pm2"))
        self.port = free_port()
        self.url = "http://127.0.0.1:%d/health" % self.port
        self.name = "bench" + self.key

    def pm2_run(self, *args):
        proc = self.pm2.run(*args, check=False)
        if proc.returncode != 0:
            raise BenchError("pm2 %s exited with %d: %s" % (" ".join(args), proc.returncode, proc.stdout[-2000:]))
        return proc

    def wait_version(self, version):
        answer = wait_for_version(self.url, version, timeout=60)
        if not answer or answer[0] != 200 or (answer[1] or {}).get("version") != version:
            raise BenchError("%s: %s did not serve %s (last answer: %r)" % (self.key, self.url, version, answer))

    def close(self):
        self.pm2.close()


class PlainPm2(Strategy):
    """(b) and (c): two built releases under app_root/releases, pm2 started from an ecosystem file."""

    exec_mode = None

    def setup(self):
        self.app_root = os.path.join(self.workdir, "app")
        for version in VERSIONS:
            delay_exit(built_release(os.path.join(self.app_root, "releases", version), version), self.args.exit_delay_ms)
        flip(self.app_root, VERSIONS[0])
        app = dict(name=self.name, script="dist/server.js", cwd=os.path.join(self.app_root, "current"),
                   exec_mode=self.exec_mode, instances=self.instances(), env=dict(PORT=str(self.port)))
        ecosystem = os.path.join(self.workdir, "ecosystem.json")
        with open(ecosystem, "w") as handle:
            json.dump(dict(apps=[app]), handle, indent=2)
        self.pm2.run("ping")
        self.pm2_run("start", ecosystem)
        self.wait_version(VERSIONS[0])
        return VERSIONS[0]

    def instances(self):
        return 1

    def run_switches(self, order):
        times = []
        for version in order:
            started = time.monotonic()
            flip(self.app_root, version)
            self.switch_command()
            self.wait_version(version)
            times.append(time.monotonic() - started)
        return times


class Reload(PlainPm2):
    key = "b"
    exec_mode = "cluster"

    def instances(self):
        return self.args.instances

    def switch_command(self):
        self.pm2_run("reload", self.name)


class StopStart(PlainPm2):
    key = "c"
    exec_mode = "fork"

    def switch_command(self):
        self.pm2_run("stop", self.name)
        self.pm2_run("start", self.name)


class Role(Strategy):
    """(a): the node_pm2 role, through ansible-playbook."""

    key = "a"

    def setup(self):
        self.play = RolePlay(os.path.join(self.workdir, "play"), self.pm2, self.port, instances=self.args.instances,
                             name=self.name)
        for version in VERSIONS:
            delay_exit(self.play.artifact(version), self.args.exit_delay_ms)  # the build copies src/ to dist/
            proc = self.play.deploy("v" + version, version)
            if proc.returncode != 0:
                raise BenchError("deploying %s with the role failed (rc %d): %s" % (version, proc.returncode,
                                                                                    proc.stdout[-3000:]))
        self.wait_version(VERSIONS[1])
        return VERSIONS[1]

    def run_switches(self, order):
        started = time.monotonic()
        proc = self.play.switch(["v" + version for version in order])
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            raise BenchError("the switch playbook failed (rc %d): %s" % (proc.returncode, proc.stdout[-3000:]))
        return [elapsed / len(order)] * len(order)  # one playbook run: the mean is all there is

    def close(self):
        if getattr(self, "play", None) is not None:
            self.play.kill()
        Strategy.close(self)


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.workdir = None
        self.strategy = None
        self.results = []

    def measure(self, cls):
        strategy = self.strategy = cls(self, os.path.join(self.workdir, cls.key))
        try:
            log("%s: %s, setting up on port %d" % (cls.key, NAMES[cls.key], strategy.port))
            live = strategy.setup()
            other = [v for v in VERSIONS if v != live][0]
            order = [other if n % 2 == 0 else live for n in range(self.args.switches)]
            log("%s: %d switches under %d req/s" % (cls.key, len(order), self.args.rate))
            with LoadGenerator(strategy.url, rate=self.args.rate) as load:
                time.sleep(1.0)
                load.mark("switching")
                load_before = os.getloadavg()[0]
                started = time.monotonic()
                times = strategy.run_switches(order)
                elapsed = time.monotonic() - started
                load.mark("switched")
                time.sleep(1.0)
            window = load.summary.window("switching", "switched")
            result = dict(strategy=cls.key, name=NAMES[cls.key], switches=len(order), seconds=round(elapsed, 2),
                          switch_seconds_mean=round(statistics.mean(times), 3),
                          switch_seconds_median=round(statistics.median(times), 3),
                          switch_seconds_max=round(max(times), 3), final_expected=order[-1],
                          instances=self.args.instances if cls.key != "c" else 1,
                          load_average_before=round(load_before, 2), load_average_after=round(os.getloadavg()[0], 2),
                          window=window.as_dict(), whole_run=load.summary.as_dict())
            log("%s: %s" % (cls.key, window.report()))
            self.results.append(result)
        finally:
            self.strategy = None
            strategy.close()

    def machine(self):
        return dict(machine(), node=first_line(["node", "--version"]),
                    pm2=pm2_version(PM2),
                    ansible=first_line([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "--version"]))

    def report(self, started, finished):
        header = ("", "strategy", "sent", "failed", "failed/switch", "failure rate", "longest gap", "s/switch", "max s/switch",
                  "final")
        table = [header]
        for r in self.results:
            w = r["window"]
            table.append((r["strategy"], r["name"], str(w["sent"]), str(w["failed"]), "%.1f" % (1.0 * w["failed"] / r["switches"]),
                          "%.2f %%" % (100.0 * w["failed"] / w["sent"] if w["sent"] else 0),
                          "%.3f s" % w["longest_gap"], "%.2f" % r["switch_seconds_mean"],
                          "%.2f" % r["switch_seconds_max"],
                          "ok" if w["last_version"] == r["final_expected"] else "WRONG (%s)" % w["last_version"]))
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = ["", "%d switches per strategy, load %s req/s on /health (during the switches)%s:" % (
            self.args.switches, self.args.rate,
            ", app exits %d ms after closing" % self.args.exit_delay_ms if self.args.exit_delay_ms is not None else ""), ""]
        for index, row in enumerate(table):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        for r in self.results:
            w = r["window"]
            lines.append("%s: %.1f req/s achieved, failures %s, latency p50 %.1f ms p99 %.1f ms max %.1f ms, "
                         "%d version changes (%d settled), %d pids, load average %.1f -> %.1f" % (
                             r["strategy"], w["rate"], w["failures"] or "none", 1000 * (w["latency"]["p50"] or 0),
                             1000 * (w["latency"]["p99"] or 0), 1000 * (w["latency"]["max"] or 0),
                             w["version_changes"], max(len(w["settled"]) - 1, 0), w["pids"],
                             r["load_average_before"], r["load_average_after"]))
        lines.append("")
        print("\n".join(lines), flush=True)
        data = dict(command=" ".join(["bench/switch.py"] + sys.argv[1:]), started=started, finished=finished,
                    machine=self.machine(), config=dict(switches=self.args.switches, rate=self.args.rate,
                                                        instances=self.args.instances,
                                                        exit_delay_ms=self.args.exit_delay_ms),
                    results=self.results)
        write_json(self.args.json, data)
        return data

    def main(self):
        self.workdir = tempfile.mkdtemp(prefix="safeship-switch-")
        started = utc_stamp()
        log("work directory %s" % self.workdir)
        try:
            for cls in (Role, Reload, StopStart):
                if cls.key in self.args.strategies:
                    self.measure(cls)
            finished = utc_stamp()
            return self.report(started, finished)
        finally:
            self.cleanup()

    def cleanup(self):
        closers = [(self.strategy.key, self.strategy.close)] if self.strategy is not None else []
        clean_up(self.workdir, closers, "pm2 daemons killed")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switches", type=int, default=20, help="switches per strategy (default 20)")
    parser.add_argument("--rate", type=float, default=150, help="requests per second (default 150)")
    parser.add_argument("--instances", type=int, default=2,
                        help="cluster workers for (a) and (b) (default 2; (c) runs one fork-mode process)")
    parser.add_argument("--strategies", default="abc", help="subset of the strategies a b c (default abc)")
    parser.add_argument("--exit-delay-ms", type=int, default=None,
                        help="make the app exit this long after its server closed on SIGINT instead of the "
                             "fixture's 1000 ms (0: at once, which shows the cluster hand-off race)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' for stdout)")
    args = parser.parse_args(argv)
    args.strategies = "".join(c for c in "abc" if c in args.strategies)
    if args.switches < 1 or args.rate <= 0 or args.instances < 1 or (args.exit_delay_ms is not None and args.exit_delay_ms < 0) or not args.strategies:
        parser.error("--switches, --rate and --instances must be positive and --strategies must name a b or c")
    return args


def main(argv=None):
    args = parse_args(argv)
    return run_bench(Bench(args).main)


if __name__ == "__main__":
    sys.exit(main())
