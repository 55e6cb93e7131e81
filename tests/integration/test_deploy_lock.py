"""deploy_lock run as Ansible runs it: four ways, two module processes racing 100 times, stale locks (dead process,
expired ttl), tokens, force, and a real ansible-playbook whose lock is stale once it exits."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from helpers.playbooks import Playbook


def lock_doc(path):
    with open(str(path)) as handle:
        return json.load(handle)


def test_deploy_lock_four_ways(run_module, tmp_path):
    path = tmp_path / "app" / ".safeship" / "deploy.lock"
    (tmp_path / "app").mkdir()
    args = dict(path=str(path), token="deploy-20240501-0001", owner="alice@ctl", reason="deploy 1.2", ttl="2h")

    check = run_module("deploy_lock", args, check_mode=True, diff=True)
    assert not check.get("failed"), check.get("msg")
    assert check["changed"] is True and check["holder"]["owner"] == "alice@ctl"
    assert '"owner": "alice@ctl"' in check["diff"]["after"] and check["diff"]["before"] == ""
    assert not path.parent.exists()

    real = run_module("deploy_lock", args, diff=True)
    assert real["changed"] is True and real["token"] == "deploy-20240501-0001"
    assert lock_doc(path)["owner"] == "alice@ctl" and real["expires"] == lock_doc(path)["expires"]
    content = path.read_bytes()

    again = run_module("deploy_lock", args)
    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False and again["holder"] == real["holder"]
    check_again = run_module("deploy_lock", args, check_mode=True)
    assert check_again["changed"] is False
    assert path.read_bytes() == content

    release = dict(path=str(path), state="released", token="deploy-20240501-0001")
    results = [run_module("deploy_lock", release, check_mode=mode) for mode in (True, False, False, True)]
    assert [result["changed"] for result in results] == [True, True, False, False]
    assert results[1]["holder"]["owner"] == "alice@ctl"
    assert not path.exists()
    assert sorted(os.listdir(str(path.parent))) == [".deploy.lock.guard"]


def mode(path):
    return oct(os.stat(str(path)).st_mode & 0o777)


def as_nobody(*argv):
    """Exit code of argv run as the unprivileged user nobody (a web server's user, as far as access goes)."""
    return subprocess.run(["runuser", "-u", "nobody", "--"] + list(argv), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode


@pytest.fixture()
def public_dir():
    """A directory every user may traverse (pytest's own temporary directories are the owner's only)."""
    path = tempfile.mkdtemp(prefix="safeship-lock-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path)


def test_missing_directories_are_created_four_ways(run_module, public_dir):
    """The lock's own directory 0750, the missing ones above it 0755 (the web user still enters the app root),
    existing ones as they were; nothing in check mode."""
    srv = public_dir / "srv"
    srv.mkdir()
    os.chmod(str(srv), 0o711)
    app_root = srv / "shop"
    path = app_root / ".safeship" / "deploy.lock"
    args = dict(path=str(path), token="deploy-20240501-0002", reason="deploy 1.3")

    check = run_module("deploy_lock", args, check_mode=True)
    assert not check.get("failed"), check.get("msg")
    assert check["changed"] is True and check["created_directories"] == [str(app_root), str(path.parent)]
    assert not app_root.exists() and check["executed_commands"] == []

    real = run_module("deploy_lock", args)
    assert not real.get("failed"), real.get("msg")
    assert real["changed"] is True and real["created_directories"] == [str(app_root), str(path.parent)]
    assert (mode(srv), mode(app_root), mode(path.parent), mode(path)) == ("0o711", "0o755", "0o750", "0o644")
    assert as_nobody("test", "-x", str(app_root)) == 0  # the web user can enter the app root...
    assert as_nobody("test", "-x", str(path.parent)) != 0  # ...but not the lock's directory

    again = run_module("deploy_lock", args)
    assert again["changed"] is False and again["created_directories"] == []
    check_again = run_module("deploy_lock", args, check_mode=True)
    assert check_again["changed"] is False and check_again["created_directories"] == []


def test_second_deploy_fails_naming_the_holder(run_module, tmp_path):
    path = str(tmp_path / "deploy.lock")
    first = run_module("deploy_lock", dict(path=path, owner="alice@ctl", reason="deploy 1.2", playbook="deploy"))
    second = run_module("deploy_lock", dict(path=path, owner="bob@ci"))
    assert second["failed"] is True and second["changed"] is False and second.rc != 0
    holder = first["holder"]
    assert "is held by alice@ctl (host %s, user %s, playbook deploy) since %s" % (
        holder["host"], holder["user"], holder["started"]) in second["msg"]
    assert "reason: 'deploy 1.2'" in second["msg"] and "ago" in second["msg"]
    assert second["holder"] == first["holder"] and second["age"] >= 0
    assert lock_doc(path)["owner"] == "alice@ctl"


def test_two_module_processes_race_for_the_lock_100_times(run_module, tmp_path):
    """Each round, two deploy_lock processes start together on a fresh lock: exactly one acquires it and the other
    fails naming it. Rounds run five at a time (different lock files) to keep the test short."""
    rounds, batch = 100, 5
    for first in range(0, rounds, batch):
        running = []
        for number in range(first, first + batch):
            path = str(tmp_path / ("round%03d" % number) / "deploy.lock")
            os.mkdir(os.path.dirname(path))
            for racer in ("a", "b"):
                owner = "racer-%s-%03d" % (racer, number)
                running.append((number, owner, path,
                                run_module.start("deploy_lock", dict(path=path, owner=owner, reason="race"))))
        outcomes = {}
        for number, owner, path, handle in running:
            outcomes.setdefault(number, []).append((owner, path, handle.wait_result(120)))
        for number, results in outcomes.items():
            winners = [owner for owner, path, result in results if not result.get("failed")]
            assert len(winners) == 1, (number, [result for owner, path, result in results])
            for owner, path, result in results:
                if result.get("failed"):
                    assert "is held by %s " % winners[0] in result["msg"], result["msg"]
                    assert result["holder"]["owner"] == winners[0] and result["changed"] is False
                else:
                    assert result["changed"] is True and len(result["token"]) == 40
            assert lock_doc(results[0][1])["owner"] == winners[0]
            assert os.listdir(os.path.dirname(results[0][1])) == ["deploy.lock"]  # no temporary file left


def test_lock_of_a_dead_process_is_broken_only_with_break_stale(run_module, tmp_path):
    path = str(tmp_path / "deploy.lock")
    deploy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        held = run_module("deploy_lock", dict(path=path, owner="run1", pid=deploy.pid))
        assert held["holder"]["pid"] == deploy.pid
        alive = run_module("deploy_lock", dict(path=path, owner="run2", break_stale=True))
        assert alive["failed"] is True and "is held by run1" in alive["msg"]
    finally:
        deploy.kill()
        deploy.wait()
    content = open(path, "rb").read()
    refused = run_module("deploy_lock", dict(path=path, owner="run2"))
    assert refused["failed"] is True and refused["changed"] is False
    assert "is stale" in refused["msg"] and "its process %d is no longer running" % deploy.pid in refused["msg"]
    assert "break_stale: true" in refused["msg"]
    assert open(path, "rb").read() == content
    check = run_module("deploy_lock", dict(path=path, owner="run2", break_stale=True), check_mode=True)
    assert check["changed"] is True and check["broken"]["owner"] == "run1"
    assert open(path, "rb").read() == content
    broken = run_module("deploy_lock", dict(path=path, owner="run2", break_stale=True))
    assert broken["changed"] is True and broken["broken"]["pid"] == deploy.pid
    host = broken["holder"]["host"]
    assert broken["broken"]["stale"] == ["its process %d is no longer running on %s" % (deploy.pid, host)]
    assert lock_doc(path)["owner"] == "run2"


def test_expired_lock(run_module, tmp_path):
    path = str(tmp_path / "deploy.lock")
    held = run_module("deploy_lock", dict(path=path, owner="run1", ttl=1))
    assert held["holder"]["ttl"] == 1
    expires = time.mktime(time.strptime(held["expires"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    while time.time() < expires + 1:
        time.sleep(0.2)
    refused = run_module("deploy_lock", dict(path=path, owner="run2"))
    assert refused["failed"] is True and "expired at %s" % held["expires"] in refused["msg"]
    assert refused["stale"] == [s for s in refused["stale"] if s.startswith("it expired at")]
    taken = run_module("deploy_lock", dict(path=path, owner="run2", ttl="1h", break_stale=True))
    assert taken["changed"] is True and taken["broken"]["owner"] == "run1"
    # the old holder's token no longer releases anything
    late = run_module("deploy_lock", dict(path=path, state="released", token=held["token"]))
    assert late["failed"] is True and "held by run2" in late["msg"] and "broken as stale" in late["msg"]
    assert lock_doc(path)["owner"] == "run2"


def test_release_needs_the_token_unless_forced(run_module, tmp_path):
    path = str(tmp_path / "deploy.lock")
    held = run_module("deploy_lock", dict(path=path, owner="alice@ctl"))
    wrong = run_module("deploy_lock", dict(path=path, state="released", token="0" * 40))
    assert wrong["failed"] is True and wrong["changed"] is False
    assert "held by alice@ctl" in wrong["msg"] and wrong["holder"]["owner"] == "alice@ctl"
    missing = run_module("deploy_lock", dict(path=path, state="released"))
    assert missing["failed"] is True and "needs the token" in missing["msg"]
    assert os.path.exists(path)
    forced = run_module("deploy_lock", dict(path=path, state="released", force=True), diff=True)
    assert forced["changed"] is True and forced["holder"] == held["holder"]
    assert forced["diff"]["after"] == "" and '"owner": "alice@ctl"' in forced["diff"]["before"]
    assert not os.path.exists(path)


def test_bad_input_changes_nothing(run_module, tmp_path):
    path = str(tmp_path / "deploy.lock")
    for args, text in ((dict(ttl="soon"), "ttl 'soon' is not a duration"),
                       (dict(token="short"), "token must be 8 to 256"),
                       (dict(state="held"), "value of state must be one of")):
        result = run_module("deploy_lock", dict(args, path=path))
        assert result["failed"] is True and text in result["msg"], result["msg"]
    assert os.listdir(str(tmp_path)) == []


def run_playbook(tmp_path, name, tasks):
    """(the ansible-playbook process, its output) of a play of these tasks on localhost."""
    playbook = Playbook(tmp_path / "play", env=dict(ANSIBLE_REMOTE_TEMP=str(tmp_path / "remote")))
    running = playbook.start(playbook.write(textwrap.dedent("""\
        - name: {name}
          hosts: localhost
          gather_facts: false
          tasks:
        """).format(name=name) + textwrap.indent(textwrap.dedent(tasks), "    ")))
    return running.process, running.wait(300).stdout


def test_lock_taken_by_ansible_playbook_is_stale_when_it_exits(run_module, tmp_path):
    path = str(tmp_path / "deploy.lock")
    process, output = run_playbook(tmp_path, "killed deploy", """\
        - name: Take the lock and never release it (as a deploy killed with SIGKILL would)
          safeship.webapp.deploy_lock:
            path: {path}
            owner: ci@controller
            reason: deploy
          register: lock
        - name: Show the pid recorded
          ansible.builtin.debug:
            msg: "pid={{{{ lock.holder.pid }}}}"
        """.format(path=path))
    assert process.returncode == 0, output
    assert lock_doc(path)["pid"] == process.pid, output  # the ansible-playbook process itself
    assert "pid=%d" % process.pid in output
    refused = run_module("deploy_lock", dict(path=path, owner="next"))
    assert refused["failed"] is True
    assert "its process %d is no longer running" % process.pid in refused["msg"]
    assert run_module("deploy_lock", dict(path=path, owner="next", break_stale=True))["changed"] is True


def test_failed_deploy_releases_its_lock_in_always(tmp_path):
    path = str(tmp_path / "deploy.lock")
    process, output = run_playbook(tmp_path, "failing deploy", """\
        - name: Deploy under the lock
          block:
            - name: Take the lock
              safeship.webapp.deploy_lock:
                path: {path}
                reason: deploy
                ttl: 2h
              register: deploy_lock_result
            - name: A deploy step that fails
              ansible.builtin.command: /bin/false
              changed_when: false
          always:
            - name: Release the lock
              safeship.webapp.deploy_lock:
                path: {path}
                state: released
                token: "{{{{ deploy_lock_result.token }}}}"
              when: deploy_lock_result is succeeded
        """.format(path=path))
    assert process.returncode == 2, output
    assert "Release the lock" in output and "changed: [localhost]" in output
    assert not os.path.exists(path), output
