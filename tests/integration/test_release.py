"""The release module run as Ansible runs it (a subprocess), on real directories and symlinks."""

import grp
import json
import os
import pwd
import subprocess
import time

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _release as release
from helpers.releases import current_of, state_of, tree_snapshot, write_files


class App(object):
    """The release module bound to one app_root."""

    def __init__(self, run_module, root):
        self.run_module = run_module
        self.root = str(root)

    def __call__(self, check_mode=False, diff=False, **args):
        args.setdefault("app_root", self.root)
        return self.run_module("release", args, check_mode=check_mode, diff=diff)

    def ok(self, check_mode=False, diff=False, **args):
        result = self(check_mode=check_mode, diff=diff, **args)
        assert not result.get("failed"), result.get("msg")
        return result

    def fails(self, **args):
        """Run a refused action: it must fail, report changed=false and leave every file as it was."""
        before = tree_snapshot(self.root)
        result = self(**args)
        assert result.get("failed") is True, result
        assert result["changed"] is False
        assert tree_snapshot(self.root) == before
        return result

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def setup(self, **args):
        """Arrange a situation in-process (the same code as the module, without a Python start per step)."""
        return release.manage(release.default_params(app_root=self.root, **args))

    def build(self, rid, status="ready", **extra):
        """A release with files in it, taken to status (building, ready, live, good or bad)."""
        self.setup(release_id=rid, **extra)
        write_files(self.path("releases", rid), {"REVISION": rid, "public/index.php": "<?php echo '%s';" % rid})
        if status == "building":
            return
        self.setup(release_id=rid, state="ready")
        if status in ("live", "good"):
            self.setup(release_id=rid, state="switched")
        if status in ("good", "bad"):
            self.setup(release_id=rid, state=status)


@pytest.fixture()
def app(run_module, tmp_path):
    return App(run_module, tmp_path / "app")


def four_ways(app, args, expect_first=True, diff=False):
    """check -> real -> again -> again in check, asserting changed each time and that check wrote nothing."""
    before = tree_snapshot(app.root)
    check = app.ok(check_mode=True, diff=diff, **args)
    assert check["changed"] is expect_first
    assert tree_snapshot(app.root) == before, "check mode wrote something"
    real = app.ok(diff=diff, **args)
    assert real["changed"] is expect_first
    # check mode predicts the real run
    for key in ("current", "previous", "last_good"):
        assert check[key] == real[key], key
    assert [(r["id"], r["status"]) for r in check["releases"]] == [(r["id"], r["status"]) for r in real["releases"]]
    after = tree_snapshot(app.root)
    again = app.ok(**args)
    assert again["changed"] is False
    assert tree_snapshot(app.root) == after
    check_again = app.ok(check_mode=True, **args)
    assert check_again["changed"] is False
    assert tree_snapshot(app.root) == after
    return check, real


# ---- every state four ways ------------------------------------------------------------------

def test_present_four_ways(app):
    check, real = four_ways(app, dict(release_id="r1", version="1.0.0", git_sha="3f2c1a7"))
    assert real["path"] == app.path("releases", "r1")
    assert os.path.isdir(real["path"])
    assert real["release"]["status"] == "building" and real["release"]["version"] == "1.0.0"
    assert real["current"] is None and state_of(app.root) == {"r1": "building"}
    assert oct(os.stat(real["path"]).st_mode & 0o777) == oct(0o755)
    assert not os.path.lexists(app.path("current"))


def test_present_check_mode_on_a_missing_app_root_creates_nothing(app):
    check = app.ok(check_mode=True, release_id="r1")
    assert check["changed"] is True and check["path"] == app.path("releases", "r1")
    assert not os.path.exists(app.root)


def test_ready_four_ways(app):
    app.build("r1", status="building")
    four_ways(app, dict(release_id="r1", state="ready"))
    assert state_of(app.root) == {"r1": "ready"}


def test_switched_four_ways(app):
    app.build("r1", status="good")
    app.build("r2")
    check, real = four_ways(app, dict(release_id="r2", state="switched"), diff=True)
    assert check["current"] == "r2" and check["switched_from"] == "r1"
    assert real["current"] == "r2" and real["previous"] == "r1" and real["switched_from"] == "r1"
    assert os.readlink(app.path("current")) == "releases/r2"  # relative
    with open(app.path("current", "REVISION")) as handle:
        assert handle.read() == "r2"
    assert state_of(app.root) == {"r1": "good", "r2": "live"}
    assert real["diff"]["before"] == "current: r1\nreleases:\n  r1: good (current)\n  r2: ready\n"
    assert real["diff"]["after"] == "current: r2\nreleases:\n  r1: good\n  r2: live (current)\n"
    # no temporary link left next to current
    assert sorted(os.listdir(app.root)) == [".safeship", "current", "releases"]


def test_switching_away_from_a_live_release_makes_it_ready_again(app):
    app.build("r1", status="live")
    app.build("r2")
    app.ok(release_id="r2", state="switched")
    assert state_of(app.root) == {"r1": "ready", "r2": "live"}


def test_good_four_ways(app):
    app.build("r1", status="live")
    four_ways(app, dict(release_id="r1", state="good"))
    assert state_of(app.root) == {"r1": "good"}


def test_bad_four_ways_and_the_current_stays_current(app):
    app.build("r1", status="good")
    app.build("r2", status="live")
    check, real = four_ways(app, dict(release_id="r2", state="bad"))
    assert state_of(app.root) == {"r1": "good", "r2": "bad"}
    assert current_of(app.root) == "r2"  # marking bad never switches
    assert "is now marked bad; it stays current until you roll back" in json.dumps(real.get("warnings"))


def test_rolled_back_four_ways_is_idempotent_with_release_id(app):
    app.build("r1", status="good", backups=[{"path": "/var/backups/app_1.dump", "sha256": "ab" * 32}])
    app.build("r2", status="live")
    check, real = four_ways(app, dict(release_id="r2", state="rolled_back"))
    assert check["rollback"] == {"from": "r2", "to": "r1"} and real["rollback"] == {"from": "r2", "to": "r1"}
    assert real["current"] == "r1" and real["previous"] == "r2"
    assert real["release"]["id"] == "r1"
    # the backup taken for r1's deploy is in the result, for a database restore
    assert real["release"]["backups"] == [{"path": "/var/backups/app_1.dump", "sha256": "ab" * 32}]
    assert current_of(app.root) == "r1"
    assert state_of(app.root) == {"r1": "good", "r2": "rolled_back"}
    again = app.ok(release_id="r2", state="rolled_back")
    assert again["rollback"] is None and "nothing to roll back" in again["msg"]


def test_rolled_back_to_a_named_release_four_ways(app):
    app.build("r1", status="good")
    app.build("r2", status="good")
    app.build("r3", status="live")
    check, real = four_ways(app, dict(state="rolled_back", to="r1"))
    assert real["rollback"] == {"from": "r3", "to": "r1"}
    assert state_of(app.root) == {"r1": "good", "r2": "good", "r3": "rolled_back"}


def test_rollback_without_release_id_steps_back_one_good_release_each_run(app):
    for rid in ("r1", "r2", "r3"):
        app.build(rid, status="good")
    assert app.ok(state="rolled_back")["rollback"] == {"from": "r3", "to": "r2"}
    assert app.ok(state="rolled_back")["rollback"] == {"from": "r2", "to": "r1"}
    refused = app.fails(state="rolled_back")
    assert "no good release to roll back to from r1" in refused["msg"]


def test_cleaned_four_ways(app):
    for number in range(1, 9):
        app.build("r%d" % number, status="good" if number == 8 else "ready")
    check, real = four_ways(app, dict(state="cleaned", keep=3))
    assert check["removed"] == real["removed"] == ["r1", "r2", "r3", "r4", "r5"]
    assert sorted(os.listdir(app.path("releases"))) == ["r6", "r7", "r8"]
    assert sorted(state_of(app.root)) == ["r6", "r7", "r8"]
    assert [r["id"] for r in real["removed_releases"]] == real["removed"]


# ---- the failures people hit with other tools -----------------------------------------------

def test_cleanup_never_deletes_the_current_release_after_repeated_failed_builds(app):
    """ansistrano-style cleanup (by mtime, keep N) deletes the live release after N failed deploys."""
    app.build("r1", status="good")
    for number in range(2, 9):
        # half the failures are marked bad, half are builds cancelled before ready
        app.build("r%d" % number, status="bad" if number % 2 else "building")
    # mtimes lie: the current release looks the oldest, the failed ones the newest
    os.utime(app.path("releases", "r1"), (1, 1))
    for number in range(2, 9):
        stamp = time.time() + 3600 * number
        os.utime(app.path("releases", "r%d" % number), (stamp, stamp))
    result = app.ok(state="cleaned", keep=1, keep_bad=1)
    assert current_of(app.root) == "r1" and os.path.isfile(app.path("current", "REVISION"))
    # r8 (building) is the newest and may be building right now; r7 is the newest bad one
    assert sorted(os.listdir(app.path("releases"))) == ["r1", "r7", "r8"]
    assert result["removed"] == ["r2", "r3", "r4", "r5", "r6"]


def test_cleanup_keeps_the_rollback_target_the_newest_good_and_protected_releases(app):
    app.build("r1", status="good", protected=True)
    app.build("r2", status="good")
    app.build("r3", status="good")
    for number in range(4, 8):
        app.build("r%d" % number)
    app.build("r8", status="live")
    result = app.ok(state="cleaned", keep=1, keep_bad=0)
    # r8 current (and the one newest kept), r3 newest good = rollback target, r1 protected
    assert sorted(os.listdir(app.path("releases"))) == ["r1", "r3", "r8"]
    assert result["removed"] == ["r2", "r4", "r5", "r6", "r7"]
    # rollback still has somewhere to go
    assert app.ok(release_id="r8", state="rolled_back")["rollback"] == {"from": "r8", "to": "r3"}


def test_cleanup_of_a_release_with_shared_links_leaves_shared_data_alone(app):
    os.makedirs(app.path("shared", "storage", "app"))
    write_files(app.path("shared"), {"storage/app/upload.jpg": "precious", ".env": "APP_KEY=x"})
    for number in range(1, 4):
        app.build("r%d" % number, status="building")
        app.ok(release_id="r%d" % number, state="ready", shared_paths=["storage"], shared_files=[".env"])
        app.ok(release_id="r%d" % number, state="switched")
    app.ok(state="cleaned", keep=1)
    assert sorted(os.listdir(app.path("releases"))) == ["r3"]
    with open(app.path("shared", "storage", "app", "upload.jpg")) as handle:
        assert handle.read() == "precious"
    with open(app.path("shared", ".env")) as handle:
        assert handle.read() == "APP_KEY=x"


def test_rollback_refuses_bad_and_building_releases(app):
    app.build("r1", status="bad")
    app.build("r2", status="building")
    app.build("r3", status="live")
    refused = app.fails(state="rolled_back", to="r1")
    assert "refusing to roll back to release r1: it is marked bad" in refused["msg"]
    refused = app.fails(state="rolled_back", to="r2")
    assert "refusing to roll back to release r2: it is still building" in refused["msg"]
    refused = app.fails(state="rolled_back")  # neither is a candidate on its own
    assert "no good release to roll back to from r3" in refused["msg"]
    assert current_of(app.root) == "r3"


def test_switch_refuses_bad_building_and_unknown_releases(app):
    app.build("r1", status="good")
    app.build("r2", status="building")
    app.build("r3", status="bad")
    assert "still building" in app.fails(release_id="r2", state="switched")["msg"]
    assert "marked bad" in app.fails(release_id="r3", state="switched")["msg"]
    assert "release r9 is not known" in app.fails(release_id="r9", state="switched")["msg"]
    assert "still building" in app.fails(release_id="r2", state="good")["msg"]
    assert current_of(app.root) == "r1"


def test_a_real_directory_as_current_gives_the_fix_and_the_fix_works(app):
    os.makedirs(app.path("current", "public"))
    write_files(app.path("current"), {"REVISION": "by hand"})
    refused = app.fails(release_id="r1")
    assert "is a real directory, not a symlink" in refused["msg"]
    fix = refused["msg"].split("run again (it is adopted as the live release): ")[1]
    assert fix.startswith("cd %s && mkdir -p releases && mv current releases/manual-" % app.root)
    subprocess.run(fix, shell=True, check=True)
    adopted = app.ok(release_id="r1")
    assert adopted["current"].startswith("manual-") and adopted["adopted"] == [adopted["current"]]
    assert state_of(app.root) == {adopted["current"]: "live", "r1": "building"}
    with open(app.path("current", "REVISION")) as handle:
        assert handle.read() == "by hand"


def test_a_dangling_current_is_an_error_and_switched_repairs_it(app):
    app.build("r1", status="good")
    app.build("r2", status="good")
    os.rename(app.path("releases", "r2"), app.path("gone"))
    refused = app.fails(state="cleaned")
    assert "points to releases/r2, which does not exist" in refused["msg"]
    assert "release_id one of: r1" in refused["msg"]
    repaired = app.ok(release_id="r1", state="switched")
    assert repaired["changed"] is True and current_of(app.root) == "r1"


def test_current_pointing_outside_releases_is_refused(app, tmp_path):
    app.build("r1")
    os.makedirs(str(tmp_path / "elsewhere"))
    os.symlink(str(tmp_path / "elsewhere"), app.path("current"))
    refused = app.fails(release_id="r1", state="switched")
    assert "which is not a directory in %s" % app.path("releases") in refused["msg"]


@pytest.mark.parametrize("bad_id", ["../x", "x/../../etc", "-rf", "..", ".hidden", "a b", "", "x" * 129, "a..b"])
def test_bad_release_ids_are_refused_before_anything_happens(app, bad_id):
    refused = app(release_id=bad_id)
    assert refused.get("failed") is True and refused["changed"] is False
    assert "is not a valid release id" in refused["msg"]
    assert not os.path.exists(app.root)
    app.build("r1", status="live")
    before = tree_snapshot(app.root)
    for args in (dict(release_id=bad_id, state="bad"), dict(state="rolled_back", to=bad_id)):
        refused = app(**args)
        assert refused.get("failed") is True and "is not a valid release id" in refused["msg"]
    assert tree_snapshot(app.root) == before


# ---- shared paths ---------------------------------------------------------------------------

def test_shared_paths_first_time_move_the_release_copy_then_later_releases_link_it(app):
    app.ok(release_id="r1")
    write_files(app.path("releases", "r1"), {
        "storage/logs/.gitignore": "*", "bootstrap/cache/.gitignore": "*", ".env": "APP_ENV=production"})
    shared = dict(shared_paths=["storage", "bootstrap/cache"], shared_files=[".env", "database/database.sqlite"])
    check = app.ok(check_mode=True, release_id="r1", state="ready", **shared)
    assert [(s["path"], s["action"]) for s in check["shared"]] == [
        ("storage", "moved"), ("bootstrap/cache", "moved"), (".env", "moved"), ("database/database.sqlite", "created")]
    assert not os.path.exists(app.path("shared"))
    first = app.ok(release_id="r1", state="ready", **shared)
    assert [s["action"] for s in first["shared"]] == ["moved", "moved", "moved", "created"]
    rel = app.path("releases", "r1")
    assert os.readlink(os.path.join(rel, "storage")) == "../../shared/storage"
    assert os.readlink(os.path.join(rel, "bootstrap", "cache")) == "../../../shared/bootstrap/cache"
    assert os.readlink(os.path.join(rel, ".env")) == "../../shared/.env"
    assert os.path.isfile(app.path("shared", "storage", "logs", ".gitignore"))
    assert os.path.isfile(app.path("shared", "database", "database.sqlite"))
    with open(os.path.join(rel, ".env")) as handle:  # through the link
        assert handle.read() == "APP_ENV=production"
    assert app.ok(release_id="r1", state="ready", **shared)["changed"] is False

    # the next release ships its own storage/ and .env: replaced by links, the shared data stays
    app.ok(release_id="r2")
    write_files(app.path("releases", "r2"), {"storage/logs/.gitignore": "new", ".env": "APP_ENV=local"})
    second = app.ok(release_id="r2", state="ready", **shared)
    assert [(s["path"], s["action"]) for s in second["shared"]] == [
        ("storage", "replaced"), ("bootstrap/cache", "linked"), (".env", "replaced"),
        ("database/database.sqlite", "linked")]
    with open(app.path("releases", "r2", ".env")) as handle:
        assert handle.read() == "APP_ENV=production"
    with open(app.path("shared", "storage", "logs", ".gitignore")) as handle:
        assert handle.read() == "*"


def test_shared_paths_are_linked_by_present_when_the_code_is_already_there(app):
    os.makedirs(app.path("releases", "r1", "storage"))  # e.g. ansible.builtin.git cloned it
    result = app.ok(release_id="r1", shared_paths=["storage"])
    assert result["adopted"] == ["r1"] and result["release"]["status"] == "building"
    assert result["shared"][0]["action"] == "moved"
    assert os.path.islink(app.path("releases", "r1", "storage"))


def test_a_missing_shared_directory_is_created_empty(app):
    app.build("r1")
    result = app.ok(release_id="r1", state="ready", shared_paths=["storage/app/public"])
    assert result["shared"][0]["action"] == "created"
    assert os.path.isdir(app.path("shared", "storage", "app", "public"))
    assert os.path.islink(app.path("releases", "r1", "storage", "app", "public"))


@pytest.mark.parametrize("entry, message", [
    ("/etc", "is absolute"),
    ("../outside", "must not contain '..'"),
    ("storage/../../etc", "must not contain '..'"),
    ("./storage", "must not contain '..'"),
    ("", "is not a path"),
])
def test_bad_shared_paths_are_refused(app, entry, message):
    app.build("r1")
    refused = app.fails(release_id="r1", state="ready", shared_paths=[entry])
    assert message in refused["msg"]


def test_nested_shared_paths_and_symlinked_parents_are_refused(app, tmp_path):
    app.build("r1", status="building")
    refused = app.fails(release_id="r1", state="ready", shared_paths=["storage", "storage/logs"])
    assert "is inside shared path 'storage'" in refused["msg"]
    os.makedirs(str(tmp_path / "etc"))
    os.symlink(str(tmp_path / "etc"), app.path("releases", "r1", "bootstrap"))
    refused = app.fails(release_id="r1", state="ready", shared_paths=["bootstrap/cache"])
    assert "bootstrap is a symlink, not a directory of the release" in refused["msg"]
    assert state_of(app.root) == {"r1": "building"}


# ---- state file ------------------------------------------------------------------------------

def test_missing_state_adopts_existing_releases(app):
    for rid in ("20260101T000000Z", "20260201T000000Z", "20260301T000000Z"):
        write_files(app.path("releases", rid), {"REVISION": rid})
    os.symlink("releases/20260201T000000Z", app.path("current"))
    check = app.ok(check_mode=True, state="cleaned", keep=1)
    assert check["adopted"] == ["20260101T000000Z", "20260201T000000Z", "20260301T000000Z"]
    assert not os.path.exists(app.path(".safeship"))
    result = app.ok(state="cleaned", keep=1)
    # adopted by name: the newest kept, the current kept, the oldest removed
    assert result["removed"] == ["20260101T000000Z"]
    assert state_of(app.root) == {"20260201T000000Z": "live", "20260301T000000Z": "ready"}


def test_a_corrupted_state_file_is_a_clear_error(app):
    app.build("r1", status="good")
    with open(app.path(".safeship", "releases.json"), "w") as handle:
        handle.write('{"releases": [')
    refused = app.fails(state="cleaned")
    assert "releases.json is not valid JSON" in refused["msg"] and "move it away" in refused["msg"]
    with open(app.path(".safeship", "releases.json"), "w") as handle:
        json.dump({"releases": [{"id": "r1", "status": "shiny", "seq": 1}]}, handle)
    refused = app.fails(state="cleaned")
    assert "release r1 has the unknown status 'shiny'" in refused["msg"]


def test_concurrent_runs_do_not_lose_records(app):
    app.ok(release_id="r0")
    runs = [app.run_module.start("release", dict(app_root=app.root, release_id="c%d" % n, version=str(n)))
            for n in range(8)]
    for run in runs:
        assert not run.wait_result(120).get("failed")
    assert sorted(state_of(app.root)) == ["c%d" % n for n in range(8)] + ["r0"]


def test_owner_and_group_of_created_directories(app, tmp_path):
    result = app.ok(release_id="r1", owner="nobody", group="nogroup", mode="0750")
    st = os.stat(result["path"])
    assert (st.st_uid, st.st_gid) == (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    assert oct(st.st_mode & 0o777) == oct(0o750)
    refused = app.fails(release_id="r2", owner="no-such-user-here")
    assert "owner 'no-such-user-here' is not a user" in refused["msg"]


# ---- writable paths -------------------------------------------------------------------------

WEB = pwd.getpwnam("www-data")


def owners(top):
    """{relative path: (uid, gid)} of everything below top, symlinks not followed."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            found[os.path.relpath(path, top)] = (st.st_uid, st.st_gid)
    return found


def test_writable_paths_four_ways_through_a_first_shared_move(app):
    """The first release's own storage (root-owned files) moves to shared/ and is handed to the web user;
    the missing directories are created 0775; bootstrap/cache (not shared) stays in the release."""
    app.build("r1", status="building")
    write_files(app.path("releases", "r1"), {"storage/logs/old.log": "x", "bootstrap/app.php": "<?php"})
    args = dict(release_id="r1", state="ready", shared_paths=["storage"], writable_owner="www-data",
                writable_group="www-data", writable_paths=["storage", "storage/framework/views", "bootstrap/cache"])
    check, real = four_ways(app, args)
    assert [(e["path"], e["created"]) for e in check["writable"]] == [
        ("storage", True), ("storage/framework/views", True), ("bootstrap/cache", True)]
    by_path = dict((e["path"], e) for e in real["writable"])
    assert by_path["storage"]["target"] == app.path("shared", "storage")
    assert by_path["storage"]["chowned"] == 3  # storage, storage/logs, storage/logs/old.log
    assert by_path["bootstrap/cache"]["target"] == app.path("releases", "r1", "bootstrap", "cache")
    assert set(owners(app.path("shared", "storage")).values()) == {(WEB.pw_uid, WEB.pw_gid)}
    assert os.stat(app.path("shared", "storage")).st_uid == WEB.pw_uid
    views = os.stat(app.path("shared", "storage", "framework", "views"))
    assert oct(views.st_mode & 0o777) == oct(0o775)
    assert os.stat(app.path("releases", "r1", "bootstrap", "cache")).st_uid == WEB.pw_uid
    # the code around them is not handed over
    assert os.stat(app.path("releases", "r1", "bootstrap", "app.php")).st_uid == 0
    assert os.readlink(app.path("releases", "r1", "storage")) == "../../shared/storage"


def test_writable_paths_take_back_a_file_root_left_and_never_follow_a_symlink(app, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    app.build("r1", status="building")
    args = dict(release_id="r1", state="ready", writable_paths=["storage"], writable_owner="www-data")
    app.ok(**args)
    write_files(app.path("releases", "r1"), {"storage/root-made.log": "x"})
    os.symlink(str(outside), app.path("releases", "r1", "storage", "escape"))
    check = app.ok(check_mode=True, **args)
    assert check["changed"] is True and check["writable"][0]["chowned"] == 2  # the file and the link itself
    assert os.stat(app.path("releases", "r1", "storage", "root-made.log")).st_uid == 0
    real = app.ok(**args)
    assert real["changed"] is True
    assert os.stat(app.path("releases", "r1", "storage", "root-made.log")).st_uid == WEB.pw_uid
    assert os.lstat(app.path("releases", "r1", "storage", "escape")).st_uid == WEB.pw_uid
    assert os.stat(str(outside)).st_uid == 0
    assert app.ok(**args)["changed"] is False


@pytest.mark.parametrize("args, message", [
    (dict(writable_paths=["../etc"]), "writable_paths entry '../etc' must not contain"),
    (dict(writable_paths=["/var/www"]), "writable_paths entry '/var/www' is absolute"),
    (dict(writable_paths=["storage"], writable_owner="no-such-user-42"), "writable_owner 'no-such-user-42' is not a user"),
    (dict(writable_paths=["storage"], writable_group="no-such-group-42"), "writable_group 'no-such-group-42' is not a group"),
    (dict(writable_paths=["storage"], writable_mode="rwx"), "mode 'rwx' is not an octal file mode"),
    (dict(writable_paths=["artisan"]), "writable path 'artisan' is"),
])
def test_bad_writable_paths_are_refused_and_nothing_changes(app, args, message):
    app.build("r1", status="building")
    write_files(app.path("releases", "r1"), {"artisan": "#!/usr/bin/env php"})
    result = app.fails(release_id="r1", state="ready", **args)
    assert message in result["msg"]
