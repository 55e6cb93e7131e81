"""The node_pm2 role run by ansible-playbook on localhost with a real pm2 (private PM2_HOME), real
npm ci / build / prune of the fixture app and real HTTP: deploy v1 -> v2 -> rollback to v1, what
the endpoint serves each time, broken releases that never become current, automatic rollback after
a failed switch, idempotence and check mode, several code bases on one host, git and tarball
sources, and no secret in the output."""

import json
import os
import stat
import subprocess
import tarfile
import threading
import time

import pytest

from helpers.node_apps import get_json, make_release
from helpers.playbooks import Playbook, recap
from helpers.ports import free_port
from helpers.releases import current_of, state_of, tree_snapshot

SECRET = "sk_live_9f8e7d6c5b4a"

DEPLOY = """\
---
- name: Deploy the shop
  hosts: app
  gather_facts: false
  roles:
    - role: safeship.webapp.node_pm2
"""


class Shop(object):
    """One code base of the fixture app under tmp_path/<name>, deployed with the role."""

    def __init__(self, tmp_path, pm2_home, name="shop", instances=2):
        self.tmp = tmp_path
        self.name = name
        self.root = str(tmp_path / "srv" / name)
        self.port = free_port()
        self.migration_log = str(tmp_path / (name + "-migrations.log"))
        self.pm2 = pm2_home
        self.playbook = Playbook(tmp_path / ("play-" + name))
        self.vars = dict(
            node_pm2_app_root=self.root,
            node_pm2_pm2_home=pm2_home.path,
            node_pm2_pm2_binary=pm2_home.binary,
            node_pm2_apps=[dict(name=name + "-web", script="dist/server.js", instances=instances, port=self.port)],
            node_pm2_env=dict(GREETING="hola from " + name, API_SECRET=SECRET),
            node_pm2_migrate_command=["npm", "run", "migrate:production"],
            node_pm2_migrate_env=dict(MIGRATION_LOG=self.migration_log),
            node_pm2_health_delay=0.5,
        )

    def artifact(self, version, variant="good"):
        path = str(self.tmp / "artifacts" / ("%s-%s-%s" % (self.name, version, variant)))
        if not os.path.exists(path):
            make_release(path, version, variant)
        return path

    def deploy(self, release_id, version, variant="good", *options, **more):
        extra = dict(self.vars, node_pm2_release_id=release_id, node_pm2_artifact=self.artifact(version, variant))
        extra.update(more)
        return self.playbook.run(DEPLOY, extra, *options)

    def action(self, action, *options, **more):
        extra = dict(self.vars, node_pm2_action=action)
        extra.update(more)
        return self.playbook.run(DEPLOY, extra, *options)

    def url(self, path="/health"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def served(self):
        status, body = get_json(self.url())
        return status, body and body.get("version")

    def pids(self):
        return sorted(instance[0] for instance in self.pm2.apps().get(self.name + "-web", []))


@pytest.fixture()
def shop(tmp_path, pm2_home):
    return Shop(tmp_path, pm2_home)


class CurrentWatcher(object):
    """Reads the `current` symlink and the served version every few milliseconds while a deploy runs."""

    def __init__(self, shop):
        self.shop = shop
        self.targets = set()
        self.answers = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def _watch(self):
        link = os.path.join(self.shop.root, "current")
        last_http = 0.0
        while not self._stop.is_set():
            try:
                self.targets.add(os.path.basename(os.readlink(link)))
            except OSError:
                pass
            if time.monotonic() - last_http > 0.05:
                last_http = time.monotonic()
                try:
                    self.answers.append(self.shop.served())
                except OSError as err:
                    self.answers.append((None, str(err)))
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def assert_no_secret(proc):
    assert SECRET not in proc.stdout


def test_deploy_v1_v2_rollback_serves_each_version(shop):
    # v1: built, pruned, migrated once, started under pm2 from current/
    proc = shop.deploy("v1", "1.0.0")
    assert proc.returncode == 0
    assert_no_secret(proc)
    assert shop.served() == (200, "1.0.0")
    assert get_json(shop.url("/"))[1]["greeting"] == "hola from shop"
    assert current_of(shop.root) == "v1" and state_of(shop.root) == {"v1": "good"}
    release = os.path.join(shop.root, "releases", "v1")
    assert os.path.isfile(os.path.join(release, "dist", "build.json"))
    assert not os.path.lexists(os.path.join(release, "node_modules", "build-info")), "dev dependency not pruned"
    env_link = os.path.join(release, ".env")
    assert os.path.islink(env_link)
    shared_env = os.path.join(shop.root, "shared", ".env")
    assert stat.S_IMODE(os.stat(shared_env).st_mode) == 0o600
    with open(shared_env) as handle:
        assert 'API_SECRET="%s"' % SECRET in handle.read()
    ecosystem = os.path.join(shop.root, ".safeship", "pm2", "ecosystem.json")
    assert stat.S_IMODE(os.stat(ecosystem).st_mode) == 0o600
    with open(shop.migration_log) as handle:
        assert [line.split()[0] for line in handle] == ["1.0.0"]
    apps = [p for p in shop.pm2.jlist() if p["name"] == "shop-web"]
    assert len(apps) == 2
    assert all(p["pm2_env"]["pm_cwd"] == os.path.join(shop.root, "current") for p in apps)
    assert all(p["pm2_env"]["exec_mode"] == "cluster_mode" for p in apps)
    assert not [p for p in shop.pm2.jlist() if p["name"].endswith("-candidate")]
    with open(os.path.join(shop.pm2.path, "dump.pm2")) as handle:  # pm2 save: resurrected after a reboot
        assert [app["name"] for app in json.load(handle)] == ["shop-web", "shop-web"]
    v1_pids = shop.pids()

    # the same deploy again changes nothing: no build, no migration, no reload
    again = shop.deploy("v1", "1.0.0")
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0
    assert shop.pids() == v1_pids
    with open(shop.migration_log) as handle:
        assert len(handle.readlines()) == 1

    # check mode plans v2 and changes nothing
    before = tree_snapshot(shop.root)
    check = shop.deploy("v2", "2.0.0", "good", "--check")
    assert check.returncode == 0
    assert "would deploy release v2" in check.stdout
    assert tree_snapshot(shop.root) == before and shop.pids() == v1_pids

    # v2: reloaded in place, new workers, new version
    proc = shop.deploy("v2", "2.0.0")
    assert proc.returncode == 0
    assert_no_secret(proc)
    assert shop.served() == (200, "2.0.0")
    assert current_of(shop.root) == "v2" and state_of(shop.root) == {"v1": "good", "v2": "good"}
    v2_pids = shop.pids()
    assert len(v2_pids) == 2 and not set(v2_pids) & set(v1_pids)
    with open(shop.migration_log) as handle:
        assert [line.split()[0] for line in handle] == ["1.0.0", "2.0.0"]

    # rollback: back to v1, served again; running it again changes nothing
    proc = shop.action("rollback")
    assert proc.returncode == 0
    assert shop.served() == (200, "1.0.0")
    assert current_of(shop.root) == "v1"
    assert state_of(shop.root) == {"v1": "good", "v2": "rolled_back"}
    # naming the release to go back to makes it idempotent; a bare rollback again would go further
    # back, and there is no good release before v1: one clear error, nothing changes
    again = shop.action("rollback", node_pm2_rollback_to="v1")
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0
    further = shop.action("rollback")
    assert further.returncode != 0 and "no good release to roll back to from v1" in further.stdout
    assert shop.served() == (200, "1.0.0") and current_of(shop.root) == "v1"

    # switch to v2 again (a release built earlier), then back to v1 by name
    assert shop.action("switch", node_pm2_release_id="v2").returncode == 0
    assert shop.served() == (200, "2.0.0")
    assert shop.action("rollback", node_pm2_rollback_to="v1").returncode == 0
    assert shop.served() == (200, "1.0.0") and current_of(shop.root) == "v1"


def test_broken_releases_are_refused_before_the_switch_and_one_failing_after_it_switches_back(shop):
    # one v1 for every case (each deploy of v1 costs a build and a pm2 start): what a refused or
    # rolled-back release leaves behind must not change what the next case sees anyway
    assert shop.deploy("v1", "1.0.0").returncode == 0
    pids = shop.pids()
    states = {"v1": "good"}
    for release_id, variant, error in (("v3", "crash", "PAYMENTS_API_KEY is not set"),
                                       ("v3u", "unhealthy", "500")):
        with CurrentWatcher(shop) as watcher:
            proc = shop.deploy(release_id, "3.0.0", variant)
        assert proc.returncode != 0, variant
        assert error in proc.stdout, variant
        assert "release %s of %s was not switched to" % (release_id, shop.root) in proc.stdout
        # said once: the engine does not wrap the stack's own stop in a second "release v3 of ..."
        assert ("was not switched to: Node pm2 | Candidate | Stop the deploy before the switch: release %s"
                % release_id) not in proc.stdout
        assert_no_secret(proc)
        # never current, never served, the live workers untouched, the candidate gone
        states[release_id] = "bad"
        assert watcher.targets == {"v1"}, variant
        assert watcher.answers and set(watcher.answers) == {(200, "1.0.0")}, variant
        assert current_of(shop.root) == "v1" and state_of(shop.root) == states
        assert shop.pids() == pids, variant
        assert sorted(shop.pm2.apps()) == ["shop-web"]

    # unhealthy once switched (no candidate check): rolled back to v1 and marked bad
    proc = shop.deploy("v4", "4.0.0", "unhealthy", node_pm2_candidate_check=False, node_pm2_health_retries=2)
    assert proc.returncode != 0
    assert "release v4 of %s failed after the switch" % shop.root in proc.stdout
    assert "Switched back to v1, which is healthy again; v4 is marked bad." in proc.stdout
    assert shop.served() == (200, "1.0.0")
    assert current_of(shop.root) == "v1"
    assert state_of(shop.root) == dict(states, v4="bad")
    assert_no_secret(proc)


def test_two_code_bases_on_one_host_share_pm2_and_leave_each_other_alone(tmp_path, pm2_home):
    backend = Shop(tmp_path, pm2_home, "backend")
    frontend = Shop(tmp_path, pm2_home, "frontend", instances=1)
    assert backend.deploy("b1", "1.0.0").returncode == 0
    assert frontend.deploy("f1", "1.0.0").returncode == 0
    backend_pids = backend.pids()
    assert frontend.deploy("f2", "2.0.0").returncode == 0
    assert frontend.served() == (200, "2.0.0") and backend.served() == (200, "1.0.0")
    assert backend.pids() == backend_pids
    assert sorted(pm2_home.apps()) == ["backend-web", "frontend-web"]
    assert get_json(frontend.url("/"))[1]["greeting"] == "hola from frontend"


def test_git_and_tarball_sources(shop, tmp_path):
    # a git repository of v1 (served over file://), a tarball of v2 as `npm pack` makes it (package/)
    repo = shop.artifact("1.0.0")
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-qm", "v1"],
                 ["git", "tag", "v1.0.0"]):
        subprocess.run(argv, cwd=repo, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout.strip()
    proc = shop.deploy("g1", "1.0.0", node_pm2_source="git", node_pm2_git_repo="file://" + repo,
                       node_pm2_git_version="v1.0.0", node_pm2_artifact="")
    assert proc.returncode == 0
    assert shop.served() == (200, "1.0.0")
    with open(os.path.join(shop.root, ".safeship", "releases.json")) as handle:
        assert [r["git_sha"] for r in json.load(handle)["releases"]] == [sha]

    tarball = str(tmp_path / "shop-2.0.0.tgz")
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(shop.artifact("2.0.0"), arcname="package")
    proc = shop.deploy("t2", "2.0.0", node_pm2_artifact=tarball, node_pm2_artifact_strip_components=1)
    assert proc.returncode == 0
    assert shop.served() == (200, "2.0.0") and current_of(shop.root) == "t2"


def test_bad_variables_fail_before_anything_changes(shop):
    proc = shop.deploy("v1", "1.0.0", node_pm2_apps=[dict(name="a b", script="dist/server.js", port=shop.port)])
    assert proc.returncode != 0
    assert "unique names (letters, digits" in proc.stdout
    proc = shop.deploy("v1", "1.0.0", node_pm2_env={"NOT-VALID": "x"})
    assert proc.returncode != 0 and "NOT-VALID" in proc.stdout
    assert not os.path.exists(shop.root)
