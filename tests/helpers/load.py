"""A load generator that runs as a second process: GET requests to one URL at a fixed rate.

    with LoadGenerator("http://127.0.0.1:3000/health", rate=150) as load:
        load.mark("switch-start")
        ...                                  # the switches
        load.mark("switch-end")
    summary = load.summary                   # or summary = load.stop() inside the block
    window = summary.window("switch-start", "switch-end")
    assert window.failed == 0, window.report()

The parent (LoadGenerator) starts this file as a script with the same Python. The child sends
requests from a few worker threads on an open-loop schedule: request i is due at t0 + i / rate,
whoever is free takes it, and a late request goes out at once (so the rate holds on average, and a
slow or hanging server shows as timeouts, not as a lower rate hidden behind fewer requests). Each
request opens a new connection (`Connection: close`) with a short timeout. Every request is recorded:
start, duration, status or error kind, and the `version` and `pid` of a JSON body.

The child reads commands on its stdin: `mark NAME` stamps a point on its own clock, `stop` (or end of
file, so a parent that dies stops it too) ends the sending; in-flight requests finish, then the
child prints every record as JSON on stdout and exits. The summary is computed in the parent from
the records: sent, ok, failed (any status but 200, refused, reset, closed, timeout, ...), failures
by kind, achieved rate, longest gap between two successful responses, the versions in the order they
were served with counts.

Run directly it prints a summary after Ctrl-C or --seconds:
    .venv/bin/python tests/helpers/load.py http://127.0.0.1:3000/health --rate 150 --seconds 10
"""

import argparse
import collections
import errno
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

DEFAULT_RATE = 150
DEFAULT_WORKERS = 8
DEFAULT_TIMEOUT = 2.0
STARTED = "load-generator-started"


class LoadError(RuntimeError):
    pass


# ---- the child: sends the requests --------------------------------------------------------------
def _target(url):
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LoadError("only http://HOST[:PORT]/PATH URLs are supported, not %r" % url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


def _error_kind(exc):
    """A short, stable name for why a request failed."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed"  # the server closed the connection without an answer
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, BrokenPipeError):
        return "broken_pipe"
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete"
    if isinstance(exc, http.client.HTTPException):
        return "bad_response"
    if isinstance(exc, OSError) and exc.errno:
        return "oserror_" + errno.errorcode.get(exc.errno, str(exc.errno)).lower()
    return type(exc).__name__


def _request(host, port, path, timeout, origin):
    """One GET on a new connection -> its record (times in seconds since origin)."""
    record = dict(start=None, duration=None, status=None, error=None, version=None, pid=None)
    start = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
        record["status"] = response.status
        if response.status != 200:
            record["error"] = "http_%d" % response.status
        try:
            data = json.loads(body.decode("utf-8"))
        except ValueError:
            data = None
        if isinstance(data, dict):
            record["version"] = data.get("version")
            record["pid"] = data.get("pid")
    except Exception as exc:  # every failure is a result to record, never a crash of the worker
        record["error"] = _error_kind(exc)
    finally:
        conn.close()
    end = time.monotonic()
    record["start"] = round(start - origin, 6)
    record["duration"] = round(end - start, 6)
    return record


def _run_child(url, rate, workers, timeout, commands, out):
    """Send requests until `stop` or end of file on commands; write {records, marks, ...} to out."""
    host, port, path = _target(url)
    records = []
    marks = []
    lock = threading.Lock()
    stop = threading.Event()
    next_slot = [0]
    origin = time.monotonic()

    def worker():
        while not stop.is_set():
            with lock:
                slot = next_slot[0]
                next_slot[0] += 1
            delay = origin + slot / float(rate) - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
            record = _request(host, port, path, timeout, origin)
            with lock:
                records.append(record)

    threads = [threading.Thread(target=worker, name="load-%d" % n) for n in range(workers)]
    for thread in threads:
        thread.daemon = True
        thread.start()
    out.write(STARTED + "\n")
    out.flush()
    while True:
        line = commands.readline()
        words = line.split()
        if not line or words[:1] == ["stop"]:
            break
        if words[:1] == ["mark"] and len(words) == 2:
            marks.append([words[1], round(time.monotonic() - origin, 6)])
    stopped = time.monotonic() - origin
    stop.set()
    for thread in threads:
        thread.join(timeout + 5)
    with lock:
        done = sorted(records, key=lambda r: r["start"])
    json.dump(dict(url=url, rate=rate, workers=workers, timeout=timeout, stopped=round(stopped, 6),
                   marks=marks, records=done), out)
    out.write("\n")
    out.flush()


# ---- the parent: starts, marks, stops, summarises ------------------------------------------------
class Summary(object):
    """What the load saw, from the records of requests that started in [start, end] (seconds)."""

    def __init__(self, records, start, end, marks=None, label="run"):
        self.label = label
        self.start = start
        self.end = end
        self.marks = dict(marks or {})
        self.records = [r for r in records if start <= r["start"] <= end]
        self.sent = len(self.records)
        self.failures = collections.Counter(r["error"] for r in self.records if r["error"])
        self.failed = sum(self.failures.values())
        self.ok = self.sent - self.failed
        self.duration = end - start
        self.rate = self.sent / self.duration if self.duration > 0 else 0.0
        served = sorted((r for r in self.records if not r["error"]), key=lambda r: r["start"] + r["duration"])
        # the longest time without a successful answer: between two answers, and at either edge
        edges = [start] + [r["start"] + r["duration"] for r in served] + [max(end, start)]
        gaps = [(b - a, a) for a, b in zip(edges, edges[1:])]
        self.longest_gap, self.longest_gap_at = max(gaps) if gaps else (0.0, start)
        self.versions = []  # [[version, consecutive answers], ...] in the order they were served
        for record in served:
            if self.versions and self.versions[-1][0] == record["version"]:
                self.versions[-1][1] += 1
            else:
                self.versions.append([record["version"], 1])
        self.version_changes = max(len(self.versions) - 1, 0)
        self.pids = set(r["pid"] for r in served if r["pid"] is not None)
        durations = sorted(r["duration"] for r in self.records)
        self.latency = dict((name, durations[min(int(q * len(durations)), len(durations) - 1)] if durations else None)
                            for name, q in (("p50", 0.50), ("p99", 0.99), ("max", 1.0)))
        self.first_version = self.versions[0][0] if self.versions else None
        self.last_version = self.versions[-1][0] if self.versions else None

    def settled(self, min_run=10):
        """The versions served in order, counting only runs of at least min_run answers in a row.

        While pm2 reloads a cluster, old and new workers answer in turn (1.0.0, 2.0.0, 1.0.0, ...):
        those short runs are the handover, not switches. Repeats are collapsed."""
        order = []
        for version, count in self.versions:
            if count >= min_run and (not order or order[-1] != version):
                order.append(version)
        return order

    def window(self, start_mark, end_mark):
        """The summary of the requests that started between two marks."""
        for name in (start_mark, end_mark):
            if name not in self.marks:
                raise LoadError("no mark %r (marks: %s)" % (name, ", ".join(sorted(self.marks)) or "none"))
        return Summary(self.records, self.marks[start_mark], self.marks[end_mark], self.marks,
                       label="%s..%s" % (start_mark, end_mark))

    def as_dict(self):
        return dict(label=self.label, sent=self.sent, ok=self.ok, failed=self.failed, failures=dict(self.failures),
                    duration=round(self.duration, 3), rate=round(self.rate, 1),
                    longest_gap=round(self.longest_gap, 4), longest_gap_at=round(self.longest_gap_at, 3),
                    versions=self.versions, version_changes=self.version_changes, settled=self.settled(),
                    first_version=self.first_version, last_version=self.last_version, pids=len(self.pids),
                    latency=self.latency)

    def report(self):
        """A few lines for assertion messages and logs."""
        data = self.as_dict()
        runs = data["versions"]
        shown = runs if len(runs) <= 60 else runs[:30] + [["...", len(runs) - 60]] + runs[-30:]
        return ("%(label)s: sent %(sent)d in %(duration).1f s (%(rate).1f/s), ok %(ok)d, failed %(failed)d %(failures)s, "
                "longest gap %(longest_gap).3f s at +%(longest_gap_at).1f s, %(pids)d pids, latency %(latency)s\n"
                "  settled versions: %(settled)s\n" % data) + "  versions served: %s" % " ".join(
                    "%s x%d" % (v, n) for v, n in shown)


class LoadGenerator(object):
    """Starts the child process; mark(), stop() -> Summary. A context manager (stops on exit)."""

    def __init__(self, url, rate=DEFAULT_RATE, workers=DEFAULT_WORKERS, timeout=DEFAULT_TIMEOUT,
                 python=sys.executable):
        _target(url)
        if rate <= 0 or workers < 1 or timeout <= 0:
            raise LoadError("rate and timeout must be > 0 and workers >= 1")
        self.url = url
        self.rate = rate
        self.workers = workers
        self.timeout = timeout
        self.python = python
        self.process = None
        self.summary = None
        self.data = None

    def start(self, wait=10.0):
        argv = [self.python, os.path.abspath(__file__), self.url, "--child", "--rate", str(self.rate),
                "--workers", str(self.workers), "--timeout", str(self.timeout)]
        # its own session: a Ctrl-C in a terminal reaches the parent, which stops the child itself
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        universal_newlines=True, start_new_session=True)
        ready, dummy, dummy = select.select([self.process.stdout], [], [], wait)
        line = self.process.stdout.readline() if ready else ""
        if line.strip() != STARTED:
            self.kill()
            raise LoadError("the load generator did not start within %.0f s (said %r)" % (wait, line))
        return self

    def mark(self, name):
        """Stamp a point on the child's clock (for Summary.window)."""
        if len(name.split()) != 1:
            raise LoadError("a mark is one word, not %r" % name)
        self.process.stdin.write("mark %s\n" % name)
        self.process.stdin.flush()

    def stop(self, wait=None):
        """Stop sending, wait for in-flight requests, return the Summary of the whole run."""
        if self.summary is not None:
            return self.summary
        wait = wait if wait is not None else self.timeout + 30
        try:
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        try:
            out, dummy = self.process.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            self.kill()
            raise LoadError("the load generator did not stop within %.0f s" % wait)
        if self.process.returncode != 0 or not out.strip():
            raise LoadError("the load generator exited with %s and no records" % self.process.returncode)
        self.data = json.loads(out)
        self.summary = Summary(self.data["records"], 0.0, self.data["stopped"], self.data["marks"])
        return self.summary

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self.kill()
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests per second (default 150)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="concurrent requests (default 8)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="per request, seconds (default 2)")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: at Ctrl-C)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent says when to stop
        try:
            _run_child(args.url, args.rate, args.workers, args.timeout, sys.stdin, sys.stdout)
        except BrokenPipeError:  # the parent is gone
            return 1
        return 0
    load = LoadGenerator(args.url, args.rate, args.workers, args.timeout).start()
    try:
        time.sleep(args.seconds) if args.seconds else signal.pause()
    except KeyboardInterrupt:
        pass
    print(load.stop().report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
