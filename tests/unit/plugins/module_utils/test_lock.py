"""deploy lock logic: durations, staleness, renewing, breaking and releasing, and races between real processes
calling it (the module's own processes race in tests/integration/test_deploy_lock.py)."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _lock
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError


def params(path, **kwargs):
    base = dict(path=str(path), state="acquired", owner=None, reason=None, playbook=None, ttl=None, pid=None,
                token=None, break_stale=False, force=False)
    base.update(kwargs)
    return base


def acquire(path, **kwargs):
    return _lock.manage(params(path, **kwargs))


def release(path, **kwargs):
    return _lock.manage(params(path, state="released", **kwargs))


def rewrite(path, **changes):
    """Change fields of a lock file in place (as time passing or a process dying would)."""
    with open(str(path)) as handle:
        doc = json.load(handle)
    doc.update(changes)
    with open(str(path), "w") as handle:
        json.dump(doc, handle)


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def leftovers(directory):
    """Files other than the lock and its guard: temporary or moved-aside files must never stay."""
    return sorted(name for name in os.listdir(str(directory)) if name not in ("deploy.lock", ".deploy.lock.guard"))


@pytest.mark.parametrize("value, seconds", [
    (7200, 7200), ("7200", 7200), ("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("1d", 86400), ("45s", 45),
    ("1h 30m", 5400), ("2H", 7200), (None, None), ("", None),
])
def test_parse_ttl(value, seconds):
    assert _lock.parse_ttl(value) == seconds


@pytest.mark.parametrize("value", ["0", 0, -5, "2 hours", "h", "1.5h", "30m2h", True, "5w"])
def test_parse_ttl_refuses(value):
    with pytest.raises(SafeshipError, match="ttl"):
        _lock.parse_ttl(value)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59, "59s"), (60, "1m"), (3723, "1h 2m 3s"),
                                           (90061, "1d 1h 1m 1s"), (-120, "2m")])
def test_human_duration(seconds, text):
    assert _lock.human_duration(seconds) == text


def test_acquire_writes_a_complete_readable_lock_without_the_token(tmp_path):
    path = tmp_path / "deploy.lock"
    result = acquire(path, owner="alice@ctl", reason="deploy 1.2", playbook="deploy", ttl="2h")
    assert result["changed"] is True and len(result["token"]) == 40
    with open(str(path)) as handle:
        doc = json.load(handle)
    assert doc["owner"] == "alice@ctl" and doc["reason"] == "deploy 1.2" and doc["playbook"] == "deploy"
    assert doc["host"] == _lock.this_host() and doc["user"] == _lock.login_user()
    assert doc["ttl"] == 7200
    started, expires = _lock.parse_time(doc["started"]), _lock.parse_time(doc["expires"])
    assert (expires - started).total_seconds() == 7200
    assert result["token"] not in path.read_text()  # only its sha256 is stored
    assert doc["token_sha256"] == _lock.token_digest(result["token"])
    assert oct(os.stat(str(path)).st_mode & 0o777) == "0o644"
    assert result["holder"] == dict((key, doc[key]) for key in _lock.PUBLIC_FIELDS)
    assert leftovers(tmp_path) == []


def test_held_lock_names_holder_and_age(tmp_path):
    path = tmp_path / "deploy.lock"
    acquire(path, owner="alice@ctl", reason="deploy 1.2", ttl="1h")
    rewrite(path, started="2020-01-01T00:00:00Z", expires="2999-01-01T00:00:00Z")
    before = path.read_bytes()
    with pytest.raises(SafeshipError) as err:
        acquire(path, owner="bob@ci")
    msg = err.value.msg
    assert "held by alice@ctl" in msg and "reason: 'deploy 1.2'" in msg and "since 2020-01-01T00:00:00Z" in msg
    assert "d " in msg.split("since")[1]  # an age in days
    assert err.value.details["holder"]["owner"] == "alice@ctl"
    assert err.value.details["age"] > 365 * 86400
    assert path.read_bytes() == before


def test_same_token_is_idempotent_and_extends_ttl(tmp_path):
    path = tmp_path / "deploy.lock"
    first = acquire(path, token="deploy-0001", ttl="1h", reason="r")
    assert first["changed"] is True and first["token"] == "deploy-0001"
    again = acquire(path, token="deploy-0001", ttl="1h", reason="r")
    assert again["changed"] is False and again["holder"] == first["holder"]
    unchanged_reason = acquire(path, token="deploy-0001")  # omitted options keep what is recorded
    assert unchanged_reason["changed"] is False and unchanged_reason["holder"]["reason"] == "r"
    longer = acquire(path, token="deploy-0001", ttl="3h")
    assert longer["changed"] is True and longer["holder"]["ttl"] == 10800
    started = _lock.parse_time(longer["holder"]["started"])
    assert (_lock.parse_time(longer["expires"]) - started).total_seconds() == 10800
    shorter = acquire(path, token="deploy-0001", ttl="10m")  # the expiry never moves earlier
    assert shorter["expires"] == longer["expires"]
    assert acquire(path, token="deploy-0001", ttl="10m")["changed"] is False


def test_own_expired_lock_is_renewed_from_now(tmp_path):
    path = tmp_path / "deploy.lock"
    acquire(path, token="deploy-0002", ttl=60)
    rewrite(path, started="2020-01-01T00:00:00Z", expires="2020-01-01T00:01:00Z")
    renewed = acquire(path, token="deploy-0002", ttl=60)
    assert renewed["changed"] is True
    left = (_lock.parse_time(renewed["expires"]) - _lock.utc_now()).total_seconds()
    assert 50 < left <= 60
    assert acquire(path, token="deploy-0002", ttl=60)["changed"] is False


def test_expired_lock_is_broken_only_with_break_stale(tmp_path):
    path = tmp_path / "deploy.lock"
    acquire(path, owner="old@ci", ttl=60)
    rewrite(path, started="2020-01-01T00:00:00Z", expires="2020-01-01T00:01:00Z")
    before = path.read_bytes()
    with pytest.raises(SafeshipError) as err:
        acquire(path, owner="new@ci")
    assert "is stale" in err.value.msg and "expired at 2020-01-01T00:01:00Z" in err.value.msg
    assert "break_stale: true" in err.value.msg
    assert err.value.details["stale"] and path.read_bytes() == before
    check = _lock.manage(params(path, owner="new@ci", break_stale=True), check_mode=True)
    assert check["changed"] is True and check["broken"]["owner"] == "old@ci" and path.read_bytes() == before
    broken = acquire(path, owner="new@ci", break_stale=True)
    assert broken["changed"] is True and broken["broken"]["owner"] == "old@ci"
    assert "expired" in broken["broken"]["stale"][0]
    assert json.loads(path.read_text())["owner"] == "new@ci"
    assert leftovers(tmp_path) == []


def test_lock_of_a_dead_process_is_stale(tmp_path):
    path = tmp_path / "deploy.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        acquire(path, owner="run1", pid=sleeper.pid)
        with pytest.raises(SafeshipError, match="is held by run1 .*pid %d" % sleeper.pid):
            acquire(path, owner="run2", break_stale=True)  # alive: break_stale does not break a live lock
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(SafeshipError, match="its process %d is no longer running" % sleeper.pid):
        acquire(path, owner="run2")
    assert acquire(path, owner="run2", break_stale=True)["broken"]["pid"] == sleeper.pid


def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path):
    path = tmp_path / "deploy.lock"
    acquire(path, owner="run1", pid=os.getpid())
    # same pid, but a different start time: another process got the dead run's pid
    rewrite(path, pid_start=_lock.process_start(os.getpid()) - 1)
    with pytest.raises(SafeshipError, match="no longer running"):
        acquire(path, owner="run2")


def test_pid_on_another_host_is_not_checked(tmp_path):
    path = tmp_path / "deploy.lock"
    acquire(path, owner="run1", ttl="1h")
    rewrite(path, pid=dead_pid(), host="elsewhere.example")
    with pytest.raises(SafeshipError) as err:
        acquire(path, owner="run2", break_stale=True)
    assert "is held by run1" in err.value.msg and "cannot be checked" in err.value.msg


def test_pid_option_must_be_running(tmp_path):
    with pytest.raises(SafeshipError, match="is not a running process"):
        acquire(tmp_path / "deploy.lock", pid=dead_pid())
    assert not (tmp_path / "deploy.lock").exists()


def test_release_needs_the_token_or_force(tmp_path):
    path = tmp_path / "deploy.lock"
    token = acquire(path, owner="alice@ctl")["token"]
    with pytest.raises(SafeshipError) as err:
        release(path, token="not-the-token")
    assert "held by alice@ctl" in err.value.msg and "token given is not the one" in err.value.msg
    with pytest.raises(SafeshipError, match="needs the token"):
        release(path)
    assert path.exists()
    check = _lock.manage(params(path, state="released", token=token), check_mode=True)
    assert check["changed"] is True and path.exists()
    done = release(path, token=token)
    assert done["changed"] is True and done["holder"]["owner"] == "alice@ctl" and not path.exists()
    assert release(path, token=token)["changed"] is False
    acquire(path, owner="bob")
    forced = release(path, force=True)
    assert forced["changed"] is True and forced["holder"]["owner"] == "bob" and not path.exists()
    assert leftovers(tmp_path) == []


def test_invalid_lock_file_is_neither_taken_nor_broken(tmp_path):
    path = tmp_path / "deploy.lock"
    path.write_text("locked by hand\n")
    for kwargs in (dict(), dict(break_stale=True)):
        with pytest.raises(SafeshipError, match="not a valid lock"):
            acquire(path, **kwargs)
    with pytest.raises(SafeshipError, match="not a valid lock.*force: true"):
        release(path, token="whatever-token")
    assert path.read_text() == "locked by hand\n"
    assert release(path, force=True)["changed"] is True and not path.exists()


def mode(path):
    return oct(os.stat(str(path)).st_mode & 0o777)


@pytest.fixture()
def module_umask():
    previous = os.umask(0o077)  # as run_module sets it: the modes must not depend on the umask
    yield
    os.umask(previous)


def test_missing_directories_are_created_lock_dir_0750_parents_0755(tmp_path, module_umask):
    root = tmp_path / "srv"
    root.mkdir(mode=0o700)
    lock = root / "shop" / "production" / ".safeship" / "deploy.lock"
    check = _lock.manage(params(lock), check_mode=True)
    assert check["changed"] is True and not (root / "shop").exists()
    assert check["created_directories"] == [str(root / "shop"), str(root / "shop" / "production"),
                                            str(lock.parent)]
    result = acquire(lock)
    assert result["created_directories"] == check["created_directories"] and lock.is_file()
    assert (mode(root), mode(root / "shop"), mode(root / "shop" / "production"), mode(lock.parent)) == (
        "0o700", "0o755", "0o755", "0o750")
    # existing directories are left as they are, and nothing is created again
    os.chmod(str(lock.parent), 0o711)
    release(lock, token=result["token"])
    again = acquire(lock)
    assert again["created_directories"] == [] and mode(lock.parent) == "0o711"


def test_lock_path_problems(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SafeshipError, match="file exists and is not a directory"):
        acquire(tmp_path / "file" / "deep" / "deploy.lock")
    assert not (tmp_path / "file" / "deep").exists()
    with pytest.raises(SafeshipError, match="is a directory"):
        acquire(tmp_path)
    with pytest.raises(SafeshipError, match="absolute"):
        acquire("relative/deploy.lock")
    # releasing never creates anything
    assert release(tmp_path / "missing" / "deploy.lock", force=True)["changed"] is False
    assert not (tmp_path / "missing").exists()


def test_find_playbook_pid_walks_up_to_the_main_process(tmp_path):
    """A process named ansible-playbook forks a worker (same command line) that starts a shell that starts us."""
    fake = tmp_path / "ansible-playbook"
    fake.write_text(
        "import os, subprocess, sys, time\n"
        "if os.fork() == 0:\n"
        "    subprocess.call(['/bin/sh', '-c', 'sleep 30; true'])\n"
        "    os._exit(0)\n"
        "time.sleep(30)\n")
    main = subprocess.Popen([sys.executable, str(fake)], start_new_session=True)
    try:
        deadline = time.time() + 20
        leaf = None
        while leaf is None and time.time() < deadline:
            time.sleep(0.05)
            out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], stdout=subprocess.PIPE, universal_newlines=True,
                                 check=True).stdout
            rows = [line.split(None, 2) for line in out.splitlines()]
            parent = dict((int(row[0]), int(row[1])) for row in rows)
            for row in rows:
                if len(row) == 3 and row[2].startswith("sleep 30"):
                    pid, chain = int(row[0]), []
                    while pid in parent and pid > 1 and len(chain) < 10:
                        pid = parent[pid]
                        chain.append(pid)
                    if main.pid in chain:
                        leaf = int(row[0])
        assert leaf is not None, "the fake process tree did not start"
        assert _lock.find_playbook_pid(start_pid=leaf) == main.pid
        assert _lock.find_playbook_pid() is None  # pytest does not run under ansible-playbook
    finally:
        os.killpg(main.pid, signal.SIGKILL)  # the fake's own session: only its processes
        main.wait()


# ---------------------------------------------------------------------------------------------------------------
# races between processes


def _racer(name, paths, barrier, results, break_stale):
    for index, path in enumerate(paths):
        barrier.wait()
        try:
            result = _lock.manage(params(path, owner=name, break_stale=break_stale))
            results.put((index, name, True, result["holder"]["owner"]))
        except SafeshipError as exc:
            results.put((index, name, False, exc.msg))
        except Exception as exc:  # pylint: disable=broad-except
            results.put((index, name, None, repr(exc)))


def _race(tmp_path, racers, rounds, prepare=None, break_stale=False):
    paths = [str(tmp_path / ("round%03d" % index) / "deploy.lock") for index in range(rounds)]
    for path in paths:
        os.mkdir(os.path.dirname(path))
        if prepare:
            prepare(path)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(racers)
    results = context.Queue()
    names = ["racer%d" % number for number in range(racers)]
    processes = [context.Process(target=_racer, args=(name, paths, barrier, results, break_stale)) for name in names]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for dummy in range(racers * rounds)]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    by_round = {}
    for index, name, won, detail in outcomes:
        assert won is not None, detail
        by_round.setdefault(index, []).append((name, won, detail))
    for index, entries in by_round.items():
        winners = [name for name, won, detail in entries if won]
        assert len(winners) == 1, (index, entries)
        for name, won, detail in entries:
            if not won:
                assert "held by %s " % winners[0] in detail, detail
        with open(paths[index]) as handle:
            assert json.load(handle)["owner"] == winners[0]
        assert leftovers(os.path.dirname(paths[index])) == []
    return by_round


def test_concurrent_acquires_exactly_one_wins(tmp_path):
    by_round = _race(tmp_path, racers=4, rounds=100)
    assert len(by_round) == 100


def test_concurrent_breakers_of_a_stale_lock_exactly_one_wins(tmp_path):
    def stale(path):
        acquire(path, owner="crashed", ttl=60)
        rewrite(path, started="2020-01-01T00:00:00Z", expires="2020-01-01T00:01:00Z")
    by_round = _race(tmp_path, racers=3, rounds=50, prepare=stale, break_stale=True)
    assert len(by_round) == 50
