"""What the benchmark scripts share: errors, logging, machine facts, the JSON report, and a main()
that turns Ctrl-C and SIGTERM into a clean stop (each Bench cleans up in its own finally)."""

from __future__ import print_function

import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time


class BenchError(Exception):
    pass


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def utc_stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def first_line(argv):
    """The first line a command prints (a version), or '?'."""
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False).stdout
        return out.decode("utf-8", "replace").strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def machine():
    """CPU count and model, memory, kernel and Python of this machine."""
    model = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kb = int(handle.readline().split()[1])
    return dict(cpus=os.cpu_count(), cpu_model=model, mem_gib=round(mem_kb / 1024.0 / 1024, 1),
                kernel=platform.release(), python=platform.python_version())


def write_json(path, data):
    """The report as JSON to path, or to stdout for '-'; nothing without a path."""
    if not path:
        return
    text = json.dumps(data, indent=2)
    if path == "-":
        print(text)
        return
    with open(path, "w") as handle:
        handle.write(text + "\n")
    log("JSON written to %s" % path)


def clean_up(workdir, closers, stopped):
    """Close what is still running, then remove workdir. closers: (name, callable) pairs; a failing one is
    logged and the rest still run. A second Ctrl-C meanwhile is ignored so nothing is left behind."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for name, close in closers:
            try:
                close()
            except Exception as exc:  # keep cleaning up
                log("stopping %s failed: %s" % (name, exc))
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
            log("%s, %s removed" % (stopped, workdir))
    finally:
        signal.signal(signal.SIGINT, previous)


def run(bench_main):
    """Run bench_main(); exit status 130 after Ctrl-C or SIGTERM, 1 after a BenchError."""
    def terminate(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        bench_main()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as exc:
        log("error: %s" % exc)
        return 1
    return 0
