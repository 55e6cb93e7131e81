"""A reader resolving `current` as fast as it can, in another process, while releases are switched.

This is what a web server does on every request: follow `current` and open a file below it. With an atomic
switch (new symlink under a temporary name, renamed over `current`) it never fails. The control test shows
the reader does catch the gap of a non-atomic switch (unlink, then symlink), so the first test can fail."""

import multiprocessing
import os

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _release as release

from helpers.releases import current_of, write_files

RELEASES = ["r1", "r2", "r3"]


def _reader(app_root, stop, started, reads, failures, first_failure):
    current = os.path.join(app_root, "current")
    releases_dir = os.path.join(app_root, "releases")
    started.set()
    count = 0
    while not stop.is_set():
        problem = None
        try:
            real = os.path.realpath(current)
            os.stat(current)
            with open(os.path.join(current, "REVISION")) as handle:
                content = handle.read()
            if os.path.dirname(real) != releases_dir or os.path.basename(real) not in RELEASES:
                problem = "current resolved to %s" % real
            elif content not in RELEASES:
                problem = "REVISION read %r" % content
        except OSError as exc:
            problem = "%s: %s" % (type(exc).__name__, exc)
        count += 1
        if count % 64 == 0:
            reads.value = count
        if problem:
            with failures.get_lock():
                failures.value += 1
            if not first_failure.value:
                first_failure.value = problem.encode()[:200]
    reads.value = count


class Reader(object):
    def __init__(self, app_root):
        ctx = multiprocessing.get_context("fork")
        self.stop = ctx.Event()
        self.started = ctx.Event()
        self.reads = ctx.Value("l", 0)
        self.failures = ctx.Value("l", 0)
        self.first_failure = ctx.Array("c", 256)
        self.process = ctx.Process(target=_reader, args=(
            app_root, self.stop, self.started, self.reads, self.failures, self.first_failure))

    def __enter__(self):
        self.process.start()
        assert self.started.wait(30)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


@pytest.fixture()
def app_root(tmp_path):
    root = str(tmp_path / "app")
    for rid in RELEASES:
        release.manage(release.default_params(app_root=root, release_id=rid))
        write_files(os.path.join(root, "releases", rid), {"REVISION": rid})
        release.manage(release.default_params(app_root=root, release_id=rid, state="ready"))
    release.manage(release.default_params(app_root=root, release_id="r1", state="switched"))
    return root


def test_a_reader_never_fails_to_resolve_current_during_200_switches(app_root):
    with Reader(app_root) as reader:
        reads_before = reader.reads.value
        for number in range(200):
            rid = RELEASES[(number + 1) % len(RELEASES)]
            result = release.manage(release.default_params(app_root=app_root, release_id=rid, state="switched"))
            assert result["changed"] is True and result["current"] == rid
            assert current_of(app_root) == rid
        reads_during = reader.reads.value - reads_before
    assert reader.failures.value == 0, reader.first_failure.value.decode()
    assert reads_during > 0  # the reader ran while switching
    assert reader.reads.value > 200
    assert os.readlink(os.path.join(app_root, "current")) == "releases/r3"  # 200 switches from r1: r1 -> r2 ... r3
    assert sorted(os.listdir(app_root)) == [".safeship", "current", "releases"]  # no temporary link left


def test_a_reader_never_fails_while_the_module_switches(app_root, run_module):
    """The same through the module as Ansible runs it (fewer switches: each is a Python start)."""
    with Reader(app_root) as reader:
        for number in range(12):
            rid = RELEASES[(number + 1) % len(RELEASES)]
            result = run_module("release", dict(app_root=app_root, release_id=rid, state="switched"))
            assert not result.get("failed"), result.get("msg")
            assert result["changed"] is True and current_of(app_root) == rid
    assert reader.failures.value == 0, reader.first_failure.value.decode()
    assert reader.reads.value > 12


def test_control_the_reader_catches_a_non_atomic_switch(app_root):
    current = os.path.join(app_root, "current")
    with Reader(app_root) as reader:
        for number in range(200000):
            os.unlink(current)
            os.symlink(os.path.join("releases", RELEASES[number % len(RELEASES)]), current)
            if reader.failures.value:
                break
    assert reader.failures.value > 0, "the reader never saw the gap of unlink+symlink in %d switches" % number
    # the gap shows either as a failed open or as realpath returning the unresolved link path itself
    seen = reader.first_failure.value.decode()
    assert "FileNotFoundError" in seen or seen == "current resolved to %s" % current, seen
