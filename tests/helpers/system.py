"""Process sampling and small filesystems for the fault tests."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading


def proc_cmdlines(with_pids=False):
    """argv of every process as `ps -eo args` shows it; (pid, argv) pairs with with_pids."""
    seen = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        if raw:
            args = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
            seen.append((int(entry), args) if with_pids else args)
    return seen


class PsSampler(object):
    """Collects the command lines of all processes while it runs: `ps -eo args` in a loop, and a
    direct /proc scan between two ps runs so short-lived processes are not missed."""

    def __init__(self, interval=0.02):
        self.interval = interval
        self.commands = []
        self.ps_runs = 0
        self._stop = threading.Event()
        self._threads = []

    def _sample_ps(self):
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eo", "args", "--no-headers"], stdout=subprocess.PIPE,
                                 universal_newlines=True, check=True).stdout
            self.commands.extend(line.strip() for line in out.splitlines() if line.strip())
            self.ps_runs += 1
            self._stop.wait(self.interval)

    def _sample_proc(self):
        while not self._stop.is_set():
            self.commands.extend(proc_cmdlines())
            self._stop.wait(self.interval)

    def __enter__(self):
        for target in (self._sample_ps, self._sample_proc):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        if not self.ps_runs:
            raise AssertionError("ps never ran")
        return False


@contextlib.contextmanager
def small_tmpfs(size):
    """A tmpfs of the given size (e.g. '1m'), mounted on a fresh directory for the block's duration."""
    mount = tempfile.mkdtemp(prefix="safeship-tmpfs-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", mount],
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if done.returncode:
        shutil.rmtree(mount, ignore_errors=True)
        raise RuntimeError("cannot mount a tmpfs (the fault tests need root): %s" % done.stderr.strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=False)
        os.rmdir(mount)
