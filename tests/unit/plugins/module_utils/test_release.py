"""The release logic in-process, on real directories: input checks, adoption, refusals, cleanup rules."""

import json
import os

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _release as release
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError

from helpers.releases import current_of, state_of, tree_snapshot, write_files


@pytest.fixture()
def root(tmp_path):
    return str(tmp_path / "app")


def manage(root, check_mode=False, **params):
    return release.manage(release.default_params(app_root=root, **params), check_mode=check_mode)


def refused(root, **params):
    before = tree_snapshot(root)
    with pytest.raises(SafeshipError) as err:
        manage(root, **params)
    assert tree_snapshot(root) == before
    return err.value.msg


def build(root, rid, status="ready"):
    manage(root, release_id=rid)
    write_files(os.path.join(root, "releases", rid), {"REVISION": rid})
    if status != "building":
        manage(root, release_id=rid, state="ready")
    if status in ("live", "good"):
        manage(root, release_id=rid, state="switched")
    if status in ("good", "bad"):
        manage(root, release_id=rid, state=status)


# ---- input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("rid", ["20261122T153000Z", "v1.4.2", "1.4.2+build.7", "release_7", "a", "x" * 128])
def test_valid_release_ids(rid):
    assert release.check_release_id(rid) == rid


@pytest.mark.parametrize("rid", ["../x", "x/../../etc", "-rf", "..", ".", ".hidden", "a b", "", "x" * 129, "a..b",
                                 "a/b", "/abs", "rel;rm", "tab\t", None, 7])
def test_invalid_release_ids_name_the_option_and_value(rid):
    with pytest.raises(SafeshipError) as err:
        release.check_release_id(rid, "to")
    assert err.value.msg.startswith("to %r is not a valid release id" % (rid,))


@pytest.mark.parametrize("value, expected", [
    ("storage", "storage"), ("bootstrap/cache", "bootstrap/cache"), ("storage/", "storage"), (".env", ".env"),
    ("public/.well-known", "public/.well-known"),
])
def test_relative_paths(value, expected):
    assert release.check_relative_path(value, "shared_paths") == expected


@pytest.mark.parametrize("value", ["/etc", "../x", "a/../../b", "a//b", "./a", "a/.", "", "/", None])
def test_relative_paths_refused(value):
    with pytest.raises(SafeshipError, match="shared_paths entry"):
        release.check_relative_path(value, "shared_paths")


@pytest.mark.parametrize("value, expected", [("0755", 0o755), ("750", 0o750), (0o2775, 0o2775), ("02775", 0o2775)])
def test_parse_mode(value, expected):
    assert release.parse_mode(value) == expected


@pytest.mark.parametrize("value", ["rwxr-xr-x", "0855", "", None, True, -1, 0o10000, "12345"])
def test_parse_mode_refuses(value):
    with pytest.raises(SafeshipError, match="is not an octal file mode"):
        release.parse_mode(value)


def test_a_registered_db_backup_result_becomes_a_small_reference():
    registered = {
        "changed": True, "path": "/var/backups/app/app_20261122.dump.zst", "sha256": "ab" * 32, "size": 1048576,
        "manifest_path": "/var/backups/app/app_20261122.dump.zst.manifest.json", "estimated_size": 9,
        "free_space": 10, "duration": 2.3, "executed_commands": ["pg_dump ..."], "invocation": {"module_args": {}},
        "manifest": {"engine": "postgresql", "database": "app", "label": "app-predeploy", "tables": {"users": 3},
                     "created_at": "2026-11-22T15:30:00Z"},
    }
    assert release.normalize_backup(registered) == {
        "path": "/var/backups/app/app_20261122.dump.zst", "sha256": "ab" * 32, "size": 1048576,
        "manifest_path": "/var/backups/app/app_20261122.dump.zst.manifest.json", "engine": "postgresql",
        "database": "app", "label": "app-predeploy", "created_at": "2026-11-22T15:30:00Z"}


@pytest.mark.parametrize("entry", [{}, {"sha256": "x"}, {"path": ""}, "a string", {"path": 3}])
def test_backup_references_need_a_path(entry):
    with pytest.raises(SafeshipError, match="each entry of backups needs a path"):
        release.normalize_backup(entry)


@pytest.mark.parametrize("params, message", [
    (dict(state="switched"), "state=switched needs release_id"),
    (dict(state="present", release_id="a", to="b"), "to is only used with state=rolled_back"),
    (dict(state="cleaned", keep=0), "keep must be at least 1"),
    (dict(state="cleaned", keep_bad=-1), "keep_bad must be 0 or more"),
    (dict(release_id="a", git_sha="not-a-sha"), "git_sha 'not-a-sha' is not a git commit id"),
    (dict(release_id="a", shared_paths=["storage"], shared_files=["storage"]), "is listed twice"),
    (dict(release_id="a", shared_paths=["storage/logs", "storage"]), "is inside shared path 'storage'"),
    (dict(release_id="a", group="no-such-group-here"), "group 'no-such-group-here' is not a group"),
])
def test_bad_input_is_one_clear_error_and_nothing_is_created(root, params, message):
    assert message in refused(root, **params)
    assert not os.path.exists(root)


def test_app_root_must_be_absolute_and_not_slash():
    with pytest.raises(SafeshipError, match="must be an absolute path"):
        manage("srv/app", release_id="a")
    with pytest.raises(SafeshipError, match="must not be '/'"):
        manage("/", state="cleaned")


def test_other_states_need_an_existing_app_root(root):
    assert "app_root %s does not exist" % root in refused(root, state="cleaned")


# ---- statuses ---------------------------------------------------------------------------------

def test_a_release_that_failed_while_building_can_never_be_served(root):
    """building -> bad -> good would make a half-built release switchable (found by the property test)."""
    build(root, "r1", status="good")
    build(root, "r2", status="building")
    manage(root, release_id="r2", state="bad")
    assert "it failed while building" in refused(root, release_id="r2", state="good")
    assert "failed while building" in refused(root, release_id="r2", state="ready")
    assert "it is marked bad" in refused(root, release_id="r2", state="switched")
    assert "marked bad" in refused(root, state="rolled_back", to="r2")


def test_a_built_bad_release_can_be_marked_good_again(root):
    build(root, "r1", status="good")
    build(root, "r2", status="live")
    manage(root, release_id="r2", state="bad")
    assert manage(root, release_id="r2", state="good")["release"]["status"] == "good"


def test_switching_back_to_a_good_release_keeps_it_good(root):
    build(root, "r1", status="good")
    build(root, "r2", status="good")
    result = manage(root, release_id="r1", state="switched")
    assert result["previous"] == "r2" and result["last_good"] == "r2"
    assert state_of(root) == {"r1": "good", "r2": "good"}


def test_rollback_skips_a_good_release_whose_directory_is_gone(root):
    for rid in ("r1", "r2", "r3"):
        build(root, rid, status="good")
    os.rename(os.path.join(root, "releases", "r2"), os.path.join(root, "r2-moved"))
    assert manage(root, release_id="r3", state="rolled_back")["rollback"] == {"from": "r3", "to": "r1"}
    assert "directory %s is missing" % os.path.join(root, "releases", "r2") in refused(
        root, state="rolled_back", to="r2")


def test_nothing_to_roll_back_without_current(root):
    build(root, "r1")
    assert "nothing to roll back" in refused(root, state="rolled_back")


def test_rollback_to_the_current_release_changes_nothing(root):
    build(root, "r1", status="good")
    result = manage(root, state="rolled_back", to="r1")
    assert result["changed"] is False and result["rollback"] is None and "already current" in result["msg"]


def test_a_release_recorded_past_building_whose_directory_vanished_is_not_recreated(root):
    build(root, "r1", status="good")
    build(root, "r2")
    os.rename(os.path.join(root, "releases", "r2"), os.path.join(root, "r2-moved"))
    assert "will not be recreated empty" in refused(root, release_id="r2")
    assert "cannot switch to release r2: its directory" in refused(root, release_id="r2", state="switched")


def test_present_recreates_a_building_release_whose_directory_vanished(root):
    build(root, "r1", status="building")
    os.rename(os.path.join(root, "releases", "r1"), os.path.join(root, "r1-moved"))
    result = manage(root, release_id="r1")
    assert result["changed"] is True and os.path.isdir(result["path"])


def test_metadata_is_recorded_and_changes_are_reported(root):
    build(root, "r1")
    result = manage(root, release_id="r1", state="ready", version="1.4.2", git_sha="9b8e0d4",
                    backups=[{"path": "/b/app.dump", "sha256": "cd" * 32}], protected=True)
    assert result["changed"] is True
    rec = result["release"]
    assert (rec["version"], rec["git_sha"], rec["protected"]) == ("1.4.2", "9b8e0d4", True)
    assert rec["backups"] == [{"path": "/b/app.dump", "sha256": "cd" * 32}]
    again = manage(root, release_id="r1", state="ready", version="1.4.2", git_sha="9b8e0d4",
                   backups=[{"path": "/b/app.dump", "sha256": "cd" * 32}], protected=True)
    assert again["changed"] is False
    assert manage(root, release_id="r1", state="ready", protected=False)["release"]["protected"] is False


def test_transitions_are_timestamped_once(root):
    build(root, "r1", status="good")
    with open(os.path.join(root, ".safeship", "releases.json")) as handle:
        rec = json.load(handle)["releases"][0]
    for key in ("created", "ready_at", "live_at", "good_at", "switched_at"):
        assert rec[key].endswith("Z"), key
    assert manage(root, release_id="r1", state="good")["changed"] is False


def test_state_file_is_private_and_has_no_partial_left(root):
    build(root, "r1")
    state = os.path.join(root, ".safeship")
    assert oct(os.stat(os.path.join(state, "releases.json")).st_mode & 0o777) == oct(0o600)
    assert sorted(os.listdir(state)) == ["releases.json", "releases.json.lock"]


# ---- what is on disk --------------------------------------------------------------------------

def test_adoption_orders_by_name_and_marks_the_current_live(root):
    for rid in ("b2", "a1", "c3"):
        write_files(os.path.join(root, "releases", rid), {"REVISION": rid})
    os.makedirs(os.path.join(root, "releases", "not valid"))
    os.symlink("releases/b2", os.path.join(root, "current"))
    result = manage(root, check_mode=True, state="cleaned")
    assert [(r["id"], r["status"]) for r in result["releases"]] == [("a1", "ready"), ("b2", "live"), ("c3", "ready")]
    assert result["adopted"] == ["a1", "b2", "c3"] and result["changed"] is True
    assert not os.path.exists(os.path.join(root, ".safeship"))


def test_an_absolute_current_link_from_another_tool_is_understood_and_replaced_by_a_relative_one(root):
    build(root, "r1")
    build(root, "r2")
    os.symlink(os.path.join(root, "releases", "r1"), os.path.join(root, "current"))
    result = manage(root, release_id="r2", state="switched")
    assert result["switched_from"] == "r1"
    assert os.readlink(os.path.join(root, "current")) == "releases/r2"


def test_unmanaged_directories_are_reported_and_never_touched(root):
    for number in range(1, 5):
        build(root, "r%d" % number)
    manage(root, release_id="r4", state="switched")
    write_files(os.path.join(root, "releases", "hand-made"), {"x": "y"})
    result = manage(root, state="cleaned", keep=1)
    assert result["unmanaged"] == ["hand-made"]
    assert sorted(os.listdir(os.path.join(root, "releases"))) == ["hand-made", "r4"]


def test_current_pointed_by_hand_at_an_unknown_directory_is_adopted_live(root):
    build(root, "r1", status="good")
    write_files(os.path.join(root, "releases", "hotfix"), {"REVISION": "hotfix"})
    os.unlink(os.path.join(root, "current"))
    os.symlink("releases/hotfix", os.path.join(root, "current"))
    result = manage(root, state="cleaned", keep=1)
    assert result["adopted"] == ["hotfix"] and result["current"] == "hotfix"
    assert state_of(root) == {"r1": "good", "hotfix": "live"}


def test_cleanup_forgets_releases_whose_directory_is_gone_and_removes_leftovers(root):
    for number in range(1, 4):
        build(root, "r%d" % number)
    manage(root, release_id="r3", state="switched")
    os.rename(os.path.join(root, "releases", "r1"), os.path.join(root, "r1-moved"))
    os.symlink("releases/r2", os.path.join(root, "current.0123456789abcdef"))  # an interrupted switch
    os.makedirs(os.path.join(root, "releases", ".r0.deleting-0badc0de", "sub"))  # an interrupted cleanup
    result = manage(root, state="cleaned", keep=5)
    assert result["forgotten"] == ["r1"] and result["removed"] == []
    assert sorted(os.path.basename(p) for p in result["removed_stale"]) == [
        ".r0.deleting-0badc0de", "current.0123456789abcdef"]
    assert sorted(os.listdir(root)) == [".safeship", "current", "r1-moved", "releases"]
    assert sorted(state_of(root)) == ["r2", "r3"]
    assert manage(root, state="cleaned", keep=5)["changed"] is False


def test_cleanup_with_release_id_keeps_that_release(root):
    for number in range(1, 5):
        build(root, "r%d" % number)
    manage(root, release_id="r4", state="switched")
    result = manage(root, state="cleaned", keep=1, release_id="r1")
    assert result["removed"] == ["r2", "r3"]


def test_cleanup_removes_half_built_releases_but_not_the_newest(root):
    build(root, "r1", status="good")
    build(root, "r2", status="building")
    build(root, "r3", status="building")
    result = manage(root, state="cleaned", keep=5)
    assert result["removed"] == ["r2"]
    assert current_of(root) == "r1"


def test_a_shared_files_entry_that_is_a_directory_is_refused(root):
    build(root, "r1", status="building")
    os.makedirs(os.path.join(root, "releases", "r1", "config"))
    assert "listed in shared_files but" in refused(root, release_id="r1", state="ready", shared_files=["config"])
    os.makedirs(os.path.join(root, "shared", "uploads"))
    assert "listed in shared_files but" in refused(root, release_id="r1", state="ready", shared_files=["uploads"])


def test_a_release_link_pointing_elsewhere_is_relinked(root):
    build(root, "r1", status="building")
    os.makedirs(os.path.join(root, "shared", "storage"))
    os.symlink("/tmp", os.path.join(root, "releases", "r1", "storage"))
    result = manage(root, release_id="r1", state="ready", shared_paths=["storage"])
    assert result["shared"][0]["action"] == "linked"
    assert os.readlink(os.path.join(root, "releases", "r1", "storage")) == "../../shared/storage"


def test_a_shared_directory_that_is_itself_a_link_is_used(root, tmp_path):
    """shared/storage -> a mount elsewhere is common (NFS, a bigger disk)."""
    os.makedirs(str(tmp_path / "nfs" / "storage"))
    os.makedirs(os.path.join(root, "shared"))
    os.symlink(str(tmp_path / "nfs" / "storage"), os.path.join(root, "shared", "storage"))
    build(root, "r1", status="building")
    result = manage(root, release_id="r1", state="ready", shared_paths=["storage"])
    assert result["shared"][0]["action"] == "linked"
    write_files(os.path.join(root, "releases", "r1", "storage"), {"f": "via link"})
    assert os.path.isfile(str(tmp_path / "nfs" / "storage" / "f"))


def test_diff_shows_current_and_statuses(root):
    build(root, "r1", status="good")
    build(root, "r2")
    result = release.manage(release.default_params(app_root=root, release_id="r2", state="switched", protected=True),
                            diff=True)
    assert result["diff"]["before"] == "current: r1\nreleases:\n  r1: good (current)\n  r2: ready\n"
    assert result["diff"]["after"] == "current: r2\nreleases:\n  r1: good\n  r2: live (current, protected)\n"
