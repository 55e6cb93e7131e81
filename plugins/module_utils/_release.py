# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the releases of an application (<app_root>/releases/<id>, shared/, current).

Private: the interface may change without notice; only this collection's modules use it.

The current release is what the `current` symlink says (os.readlink), never a guess from mtimes.
Statuses, creation order and metadata live in <app_root>/.safeship/releases.json, read and written
under an exclusive lock. Creation order is a sequence number in that file, never a timestamp.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import errno
import grp
import os
import pwd
import re
import shutil

from ansible.module_utils.common.warnings import warn

from ansible_collections.safeship.webapp.plugins.module_utils._common import (
    SafeshipError,
    fsync_path,
    iso,
    read_json,
    remove_path,
    utc_now,
    write_json_atomic,
)
from ansible_collections.safeship.webapp.plugins.module_utils._state import locked, state_dir

RELEASES_DIR = "releases"
SHARED_DIR = "shared"
CURRENT = "current"
STATE_FILE = "releases.json"
STATE_FORMAT = 1
SWITCH_HISTORY = 50

STATES = ("present", "ready", "switched", "good", "bad", "rolled_back", "cleaned")
STATUSES = ("building", "ready", "live", "good", "bad", "rolled_back")
# Statuses a release may be switched (or rolled back) to.
SWITCHABLE = ("ready", "live", "good", "rolled_back")
NEEDS_RELEASE_ID = ("present", "ready", "switched", "good", "bad")

_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_GIT_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_TMP_LINK = re.compile(r"^%s\.[0-9a-f]{16}$" % CURRENT)
_DELETING = re.compile(r"^\.[A-Za-z0-9][A-Za-z0-9._+-]*\.deleting-[0-9a-f]{8}$")

# Keys of a backup reference that are Ansible result noise, not part of the reference.
_BACKUP_NOISE = frozenset(["changed", "failed", "skipped", "msg", "rc", "duration", "estimated_size", "free_space",
                           "removed_partials", "removed", "invocation", "executed_commands", "warnings",
                           "deprecations", "diff"])
_BACKUP_FROM_MANIFEST = ("engine", "database", "label", "format", "compression", "created_at")


def argument_spec():
    return dict(
        app_root=dict(type="path", required=True),
        release_id=dict(type="str"),
        state=dict(type="str", default="present", choices=list(STATES)),
        to=dict(type="str"),
        keep=dict(type="int", default=5),
        keep_bad=dict(type="int", default=2),
        shared_paths=dict(type="list", elements="str", default=[]),
        shared_files=dict(type="list", elements="str", default=[]),
        version=dict(type="str"),
        git_sha=dict(type="str"),
        backups=dict(type="list", elements="dict"),
        protected=dict(type="bool"),
        owner=dict(type="str"),
        group=dict(type="str"),
        mode=dict(type="raw", default="0755"),
        writable_paths=dict(type="list", elements="str", default=[]),
        writable_owner=dict(type="str"),
        writable_group=dict(type="str"),
        writable_mode=dict(type="raw", default="0775"),
    )


REQUIRED_IF = [("state", state, ["release_id"]) for state in NEEDS_RELEASE_ID]


def default_params(**params):
    """Module parameters with the argument spec's defaults: for calling manage() in-process."""
    result = dict((name, spec.get("default")) for name, spec in argument_spec().items())
    result.update(params)
    return result


def check_release_id(value, option="release_id"):
    if not isinstance(value, str) or not _RELEASE_ID.match(value) or ".." in value:
        raise SafeshipError(
            "%s %r is not a valid release id: use letters, digits, '.', '_', '-' and '+', starting with a letter "
            "or digit, at most 128 characters, with no '/' and no '..'." % (option, value))
    return value


def check_relative_path(value, option):
    """A path inside the release and inside shared/: relative, no '..', no '.', no empty parts."""
    if not isinstance(value, str) or not value.strip("/"):
        raise SafeshipError("%s entry %r is not a path: give a path relative to the release, such as "
                            "'storage' or 'bootstrap/cache'." % (option, value))
    if value.startswith("/"):
        raise SafeshipError("%s entry %r is absolute: give a path relative to the release, such as "
                            "'storage' or '.env'." % (option, value))
    parts = value.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise SafeshipError("%s entry %r must not contain '..', '.' or '//': give a plain path relative to "
                                "the release, such as 'storage' or 'bootstrap/cache'." % (option, value))
    return "/".join(parts)


def parse_mode(value):
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str) and re.match(r"^0?[0-7]{3,4}$", value):
        mode = int(value, 8)
    else:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise SafeshipError("mode %r is not an octal file mode: quote it, for example mode: '0755'." % (value,))
    return mode


def normalize_backup(entry):
    """Keep the reference part of a backup: a registered db_backup result works as it is."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
        raise SafeshipError("each entry of backups needs a path (a registered safeship.webapp.db_backup result, "
                            "or a mapping such as {path: ..., sha256: ...}); got %r." % (entry,))
    ref = {}
    for key, value in entry.items():
        if key.startswith("_") or key in _BACKUP_NOISE:
            continue
        if value is None or isinstance(value, (str, int, float, bool)):
            ref[key] = value
    manifest = entry.get("manifest")
    if isinstance(manifest, dict):
        for key in _BACKUP_FROM_MANIFEST:
            if key not in ref and isinstance(manifest.get(key), (str, int, float)):
                ref[key] = manifest[key]
    return ref


def _lookup_id(name, option, lookup, field, kind):
    """The numeric id of a user or group name for os.lchown; -1 (leave it) when no name is given."""
    if not name:
        return -1
    try:
        return getattr(lookup(name), field)
    except KeyError:
        raise SafeshipError("%s %r is not a %s on this host." % (option, name, kind))


def _short(ids):
    ids = list(ids)
    return ", ".join(ids) if ids else "none"


class Releases(object):
    """One run of the release module: plan in memory; outside check mode, do it and save the state."""

    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self.want_diff = diff
        self._validate()
        root = os.path.normpath(params["app_root"])
        self.app_root = root
        self.state_path = os.path.join(state_dir(root), STATE_FILE)
        self.releases_dir = os.path.join(root, RELEASES_DIR)
        self.shared_dir = os.path.join(root, SHARED_DIR)
        self.current_link = os.path.join(root, CURRENT)

    # ---- input -----------------------------------------------------------------------------
    def _validate(self):
        p = self.params
        state = p.get("state") or "present"
        if state not in STATES:
            raise SafeshipError("state %r is not one of: %s." % (state, ", ".join(STATES)))
        self.state = state
        if not p.get("app_root") or not os.path.isabs(p["app_root"]):
            raise SafeshipError("app_root %r must be an absolute path." % (p.get("app_root"),))
        if os.path.normpath(p["app_root"]) == "/":
            raise SafeshipError("app_root must not be '/': give the application's own directory, such as /srv/app.")
        self.release_id = p.get("release_id")
        if self.release_id is not None:
            check_release_id(self.release_id)
        elif state in NEEDS_RELEASE_ID:
            raise SafeshipError("state=%s needs release_id." % state)
        self.to = p.get("to")
        if self.to is not None:
            if state != "rolled_back":
                raise SafeshipError("to is only used with state=rolled_back (state is %s)." % state)
            check_release_id(self.to, "to")
        keep, keep_bad = p.get("keep"), p.get("keep_bad")
        if not isinstance(keep, int) or keep < 1:
            raise SafeshipError("keep must be at least 1 (got %r): the current release is always kept." % (keep,))
        if not isinstance(keep_bad, int) or keep_bad < 0:
            raise SafeshipError("keep_bad must be 0 or more (got %r)." % (keep_bad,))
        shared = []
        for option, kind in (("shared_paths", "path"), ("shared_files", "file")):
            for raw in p.get(option) or []:
                rel = check_relative_path(raw, option)
                if any(rel == other for other, _kind in shared):
                    raise SafeshipError("shared path %r is listed twice (in shared_paths or shared_files)." % rel)
                shared.append((rel, kind))
        for rel, _kind in shared:
            for other, _other_kind in shared:
                if other.startswith(rel + "/"):
                    raise SafeshipError("shared path %r is inside shared path %r: list only %r (everything below "
                                        "it is shared already)." % (other, rel, rel))
        self.shared = shared
        self.writable = []
        for raw in p.get("writable_paths") or []:
            rel = check_relative_path(raw, "writable_paths")
            if rel not in self.writable:
                self.writable.append(rel)
        self.writable_mode = parse_mode(p.get("writable_mode", "0775"))
        self.writable_uid = self._user_id(p.get("writable_owner"), "writable_owner")
        self.writable_gid = self._group_id(p.get("writable_group"), "writable_group")
        if p.get("git_sha") is not None and not _GIT_SHA.match(p["git_sha"]):
            raise SafeshipError("git_sha %r is not a git commit id (7 to 64 hexadecimal digits)." % (p["git_sha"],))
        self.backups = None
        if p.get("backups") is not None:
            self.backups = [normalize_backup(entry) for entry in p["backups"]]
        self.mode = parse_mode(p.get("mode", "0755"))
        self.uid = self._user_id(p.get("owner"), "owner")
        self.gid = self._group_id(p.get("group"), "group")

    @staticmethod
    def _user_id(name, option):
        return _lookup_id(name, option, pwd.getpwnam, "pw_uid", "user")

    @staticmethod
    def _group_id(name, option):
        return _lookup_id(name, option, grp.getgrnam, "gr_gid", "group")

    # ---- paths and the current symlink ---------------------------------------------------------
    def release_path(self, rid):
        return os.path.join(self.releases_dir, rid)

    def _is_release_dir(self, rid):
        path = self.release_path(rid)
        return os.path.isdir(path) and not os.path.islink(path)

    def read_current(self):
        """(release id or None, dangling target or None), read from the symlink; raise when it is not one."""
        link = self.current_link
        if not os.path.lexists(link):
            return None, None
        if not os.path.islink(link):
            kind = "a real directory" if os.path.isdir(link) else "a file"
            example = "manual-" + utc_now().strftime("%Y%m%d%H%M%S")
            raise SafeshipError(
                "%s is %s, not a symlink (a deploy made by hand?): the module never replaces it. Move it into "
                "releases/ and link it, then run again (it is adopted as the live release): "
                "cd %s && mkdir -p %s && mv %s %s/%s && ln -s %s/%s %s"
                % (link, kind, self.app_root, RELEASES_DIR, CURRENT, RELEASES_DIR, example, RELEASES_DIR, example,
                   CURRENT), current_path=link)
        target = os.readlink(link)
        resolved = os.path.normpath(os.path.join(self.app_root, target))
        parent, name = os.path.split(resolved)
        inside = os.path.normpath(parent) == os.path.normpath(self.releases_dir) or (
            os.path.isdir(parent) and os.path.realpath(parent) == os.path.realpath(self.releases_dir))
        if not inside:
            raise SafeshipError(
                "%s points to %s, which is not a directory in %s: the module manages only releases it can "
                "see there. Point it at a release (ln -sfn %s/<id> %s) or move that directory into %s."
                % (link, target, self.releases_dir, RELEASES_DIR, link, self.releases_dir), current_path=link)
        if not _RELEASE_ID.match(name) or ".." in name:
            raise SafeshipError("%s points to %s, whose name %r is not a valid release id; rename the directory "
                                "and the link." % (link, target, name), current_path=link)
        if not os.path.isdir(resolved):
            return None, target
        return name, None

    def _dangling_error(self, target, state):
        known = [r["id"] for r in state["releases"] if r["status"] in SWITCHABLE and self._is_release_dir(r["id"])]
        return SafeshipError(
            "%s points to %s, which does not exist (deleted by hand?). Repair it by switching to an existing "
            "release: state=switched with release_id one of: %s." % (self.current_link, target, _short(known)),
            current_path=self.current_link)

    def _release_dirs(self):
        """Names of the release directories on disk (valid ids, real directories), sorted by name."""
        try:
            names = os.listdir(self.releases_dir)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return []
            raise SafeshipError("cannot list %s: %s" % (self.releases_dir, exc.strerror or exc))
        return sorted(n for n in names if _RELEASE_ID.match(n) and ".." not in n and self._is_release_dir(n))

    # ---- state -----------------------------------------------------------------------------
    def _empty_state(self):
        return {"format": STATE_FORMAT, "next_seq": 1, "releases": [], "switches": []}

    def _read_state(self):
        path = self.state_path
        if not os.path.lexists(path):
            return None
        try:
            data = read_json(path)
        except SafeshipError as exc:
            raise SafeshipError("%s. Restore it from a backup, or move it away: the module then adopts the "
                                "directories in %s (the current one as live, the others as ready)."
                                % (exc.msg.rstrip("."), self.releases_dir))
        problem = None
        if not isinstance(data, dict) or not isinstance(data.get("releases"), list):
            problem = "it has no list of releases"
        else:
            seen = set()
            for rec in data["releases"]:
                if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not _RELEASE_ID.match(
                        rec["id"]) or ".." in rec["id"]:
                    problem = "entry %r has no valid id" % (rec,)
                elif rec.get("status") not in STATUSES:
                    problem = "release %s has the unknown status %r" % (rec["id"], rec.get("status"))
                elif not isinstance(rec.get("seq"), int):
                    problem = "release %s has no sequence number" % rec["id"]
                elif rec["id"] in seen:
                    problem = "release %s is listed twice" % rec["id"]
                if problem:
                    break
                seen.add(rec["id"])
        if problem:
            raise SafeshipError("%s is not a releases file this module can use: %s. Restore it from a backup, or "
                                "move it away: the module then adopts the directories in %s."
                                % (path, problem, self.releases_dir))
        data.setdefault("format", STATE_FORMAT)
        data.setdefault("switches", [])
        data["releases"].sort(key=lambda r: r["seq"])
        data["next_seq"] = max([data.get("next_seq") or 1] + [r["seq"] + 1 for r in data["releases"]])
        return data

    def _record(self, state, rid, status, adopted=False):
        rec = {
            "id": rid,
            "seq": state["next_seq"],
            "created": self.now,
            "status": status,
            "version": None,
            "git_sha": None,
            "backups": [],
            "protected": False,
        }
        if adopted:
            rec["adopted"] = self.now
        if status != "building":
            rec["%s_at" % status] = self.now
        state["next_seq"] += 1
        state["releases"].append(rec)
        return rec

    def _load(self, on_disk):
        """(state, current id, dangling target): the file's state, plus what is adopted from disk, in memory."""
        state = copy.deepcopy(on_disk)
        current, dangling = self.read_current()
        self.adopted = []
        if on_disk is None:
            # No state yet: adopt what is on disk (by name: ids made of timestamps sort by time).
            state = self._empty_state()
            for name in self._release_dirs():
                status = "ready"
                if name == current:
                    status = "live"
                elif name == self.release_id and self.state == "present":
                    status = "building"  # the release this run is creating
                self._record(state, name, status, adopted=True)
                self.adopted.append(name)
        elif current is not None and self.find(state, current) is None:
            # `current` was pointed by hand at a directory we do not know: it is live whatever we think.
            self._record(state, current, "live", adopted=True)
            self.adopted.append(current)
        return state, current, dangling

    @staticmethod
    def find(state, rid):
        for rec in state["releases"]:
            if rec["id"] == rid:
                return rec
        return None

    def _set_status(self, rec, status):
        if rec["status"] != status:
            rec["status"] = status
            rec["%s_at" % status] = self.now

    def _apply_metadata(self, rec):
        p = self.params
        for key in ("version", "git_sha"):
            if p.get(key) is not None and rec.get(key) != p[key]:
                rec[key] = p[key]
        if self.backups is not None and rec.get("backups") != self.backups:
            rec["backups"] = self.backups
        if p.get("protected") is not None and bool(rec.get("protected")) != p["protected"]:
            rec["protected"] = p["protected"]

    @staticmethod
    def was_built(rec):
        """Whether the release was ever marked built (or found built): a release that failed while building
        must never become switchable through bad -> good."""
        return rec["status"] in SWITCHABLE or bool(rec.get("ready_at") or rec.get("live_at"))

    @staticmethod
    def newest_good(state, exclude=None, usable=None):
        for rec in reversed(state["releases"]):
            if rec["status"] == "good" and rec["id"] != exclude and (usable is None or usable(rec["id"])):
                return rec["id"]
        return None

    @staticmethod
    def previous_of(state, current):
        for switch in reversed(state["switches"]):
            if switch.get("to") == current:
                return switch.get("from")
        return None

    # ---- filesystem helpers ----------------------------------------------------------------
    def _own(self, path):
        if self.uid != -1 or self.gid != -1:
            os.lchown(path, self.uid, self.gid)

    def _mkdir(self, path):
        os.mkdir(path)
        os.chmod(path, self.mode)
        self._own(path)

    def _makedirs(self, path):
        """Create path and its missing parents with the module's mode and owner."""
        missing = []
        probe = path
        while not os.path.lexists(probe):
            missing.append(probe)
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        for item in reversed(missing):
            self._mkdir(item)

    def _check_parents(self, base, rel, what):
        """Every parent of base/rel must be a real directory (or missing): never follow a link out of base."""
        parts = rel.split("/")[:-1]
        probe = base
        for part in parts:
            probe = os.path.join(probe, part)
            if os.path.islink(probe) or (os.path.lexists(probe) and not os.path.isdir(probe)):
                raise SafeshipError("cannot share %r: %s is %s, not a directory of the %s." % (
                    rel, probe, "a symlink" if os.path.islink(probe) else "a file", what))

    def _switch_link(self, rid):
        """Point `current` at releases/<rid> atomically: a new symlink under a temporary name, then rename."""
        target = os.path.join(RELEASES_DIR, rid)
        for _attempt in range(5):
            tmp = "%s.%s" % (self.current_link, os.urandom(8).hex())
            try:
                os.symlink(target, tmp)
                break
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
        try:
            os.rename(tmp, self.current_link)
        except BaseException:
            remove_path(tmp)
            raise
        fsync_path(self.app_root)

    def _stale_tmp_links(self):
        try:
            names = os.listdir(self.app_root)
        except OSError:
            return []
        return sorted(os.path.join(self.app_root, n) for n in names
                      if _TMP_LINK.match(n) and os.path.islink(os.path.join(self.app_root, n)))

    def _stale_deleting(self):
        try:
            names = os.listdir(self.releases_dir)
        except OSError:
            return []
        return sorted(os.path.join(self.releases_dir, n) for n in names if _DELETING.match(n))

    # ---- shared paths ----------------------------------------------------------------------
    def _link_shared(self, rid, dry):
        """Link each shared path into the release; return [{path, action}], doing nothing when dry.

        First time (shared/ lacks it): the release's copy moves into shared/ (or an empty directory / file
        is created there). Later: the release's own copy is replaced by the link to shared/."""
        rdir = self.release_path(rid)
        rdir_exists = self._is_release_dir(rid)
        report = []
        for rel, kind in self.shared:
            shared_item = os.path.join(self.shared_dir, rel)
            release_item = os.path.join(rdir, rel)
            link_target = os.path.relpath(shared_item, os.path.dirname(release_item))
            self._check_parents(self.shared_dir, rel, "shared directory")
            if rdir_exists:
                self._check_parents(rdir, rel, "release")
            in_release = rdir_exists and os.path.lexists(release_item)
            release_is_link = in_release and os.path.islink(release_item)
            if release_is_link and os.readlink(release_item) == link_target and os.path.lexists(shared_item):
                report.append({"path": rel, "action": "unchanged", "link": release_item, "target": link_target})
                continue
            release_copy = in_release and not release_is_link
            if os.path.lexists(shared_item):
                if kind == "file" and os.path.isdir(shared_item):
                    raise SafeshipError("%s is listed in shared_files but %s is a directory; list it in "
                                        "shared_paths." % (rel, shared_item))
                action = "replaced" if release_copy else "linked"
            elif release_copy:
                if kind == "file" and os.path.isdir(release_item):
                    raise SafeshipError("%s is listed in shared_files but %s is a directory; list it in "
                                        "shared_paths." % (rel, release_item))
                action = "moved"
            else:
                action = "created"
            report.append({"path": rel, "action": action, "link": release_item, "target": link_target})
            if dry:
                continue
            self._makedirs(os.path.dirname(shared_item))
            if action == "moved":
                shutil.move(release_item, shared_item)
            elif action == "created":
                if kind == "file":
                    fd = os.open(shared_item, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
                    os.close(fd)
                    os.chmod(shared_item, 0o640)
                    self._own(shared_item)
                else:
                    self._mkdir(shared_item)
            elif action == "replaced":
                remove_path(release_item)
            if release_is_link:
                os.unlink(release_item)
            self._makedirs(os.path.dirname(release_item))
            os.symlink(link_target, release_item)
        return report

    # ---- writable paths --------------------------------------------------------------------
    def _writable_target(self, rid, rel):
        """Where rel of the release really lives: in shared/ when a shared path covers it (the link may not
        exist yet in a dry run), else in the release itself."""
        for shared_rel, _kind in self.shared:
            if rel == shared_rel or rel.startswith(shared_rel + "/"):
                return self.shared_dir, rel
        return self.release_path(rid), rel

    def _wrong_owner(self, path, st=None):
        st = st or os.lstat(path)
        return ((self.writable_uid != -1 and st.st_uid != self.writable_uid)
                or (self.writable_gid != -1 and st.st_gid != self.writable_gid))

    def _writable_plan(self, rid):
        """[{path, target, created, chowned}] for writable_paths: directories to create, and how many
        entries below each (symlinks not followed) are not yet owned by writable_owner/writable_group."""
        report = []
        for rel in self.writable:
            base, rel = self._writable_target(rid, rel)
            self._check_parents(base, rel, "writable path's directory")
            target = os.path.join(base, rel)
            if os.path.lexists(target) and not os.path.isdir(target):
                raise SafeshipError("writable path %r is %s, not a directory." % (rel, target))
            inside_other = any(rel.startswith(other + "/") for other in self.writable)
            entry = {"path": rel, "target": target, "created": not os.path.lexists(target), "chowned": 0}
            if not entry["created"] and not inside_other:
                entry["chowned"] = sum(1 for path in self._tree(target) if self._wrong_owner(path))
            report.append(entry)
        return report

    @staticmethod
    def _tree(top):
        yield top
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                yield os.path.join(dirpath, name)

    def _make_writable(self, report):
        for entry in report:
            missing, probe = [], entry["target"]
            while not os.path.lexists(probe):
                missing.append(probe)
                probe = os.path.dirname(probe)
            for path in reversed(missing):
                os.mkdir(path)
                os.chmod(path, self.writable_mode)
                os.lchown(path, self.writable_uid, self.writable_gid)
        for entry in report:
            if entry["chowned"]:
                for path in self._tree(entry["target"]):
                    if self._wrong_owner(path):
                        os.lchown(path, self.writable_uid, self.writable_gid)

    # ---- the states ------------------------------------------------------------------------
    def _require(self, state, rid, verb):
        rec = self.find(state, rid)
        if rec is None:
            known = [r["id"] for r in state["releases"]]
            raise SafeshipError("release %s is not known in %s (known: %s); create it with state=present first%s."
                                % (rid, self.app_root, _short(known),
                                   ", then mark it built with state=ready" if verb == "switch to" else ""))
        if not self._is_release_dir(rid) and verb != "mark bad":
            raise SafeshipError("cannot %s release %s: its directory %s is missing." % (verb, rid, self.release_path(rid)))
        return rec

    def _refuse_unswitchable(self, rec, verb):
        if rec["status"] == "building":
            raise SafeshipError("refusing to %s release %s: it is still building (half-built releases are never "
                                "served); mark it built with state=ready first." % (verb, rec["id"]))
        if rec["status"] == "bad":
            raise SafeshipError("refusing to %s release %s: it is marked bad. If it has been fixed, mark it good "
                                "with state=good first." % (verb, rec["id"]))

    def _switch(self, state, current, rid, kind):
        """Plan (and outside check mode do) the switch of `current` to rid; statuses follow."""
        target = self.find(state, rid)
        if current is not None:
            left = self.find(state, current)
            if kind == "rollback":
                if left["status"] != "bad":
                    self._set_status(left, "rolled_back")
            elif left["status"] == "live":
                self._set_status(left, "ready")
        if target["status"] in ("ready", "rolled_back"):
            self._set_status(target, "live")
        target["switched_at"] = self.now
        state["switches"].append({"from": current, "to": rid, "at": self.now, "kind": kind})
        del state["switches"][:-SWITCH_HISTORY]
        self.fs_ops.append(("switch", rid))

    def _do_present(self, state, current):
        rid = self.release_id
        rec = self.find(state, rid)
        path = self.release_path(rid)
        if rec is not None and not self._is_release_dir(rid):
            if rec["status"] != "building":
                raise SafeshipError("release %s is recorded as %s but its directory %s is missing; it will not be "
                                    "recreated empty. Use a new release_id." % (rid, rec["status"], path))
            self.fs_ops.append(("mkdir", rid))
        elif rec is None:
            if os.path.lexists(path) and not self._is_release_dir(rid):
                raise SafeshipError("%s exists but is not a directory; remove it or use another release_id." % path)
            if not os.path.lexists(path):
                self.fs_ops.append(("mkdir", rid))
                rec = self._record(state, rid, "building")
            else:
                rec = self._record(state, rid, "building", adopted=True)
                self.adopted.append(rid)
        self._apply_metadata(rec)
        return rec

    def _do_ready(self, state, current):
        rid = self.release_id
        rec = self.find(state, rid)
        if not self._is_release_dir(rid):
            raise SafeshipError("cannot mark release %s built: %s does not exist. Create it with state=present and "
                                "put the release's files in it first." % (rid, self.release_path(rid)))
        if rec is None:
            rec = self._record(state, rid, "building", adopted=True)
            self.adopted.append(rid)
        if rec["status"] == "bad" and not self.was_built(rec):
            raise SafeshipError("release %s failed while building (it is marked bad and was never built); build a "
                                "new release with a new release_id." % rid)
        if rec["status"] == "building":
            self._set_status(rec, "ready")
        self._apply_metadata(rec)
        return rec

    def _do_switched(self, state, current):
        rid = self.release_id
        rec = self._require(state, rid, "switch to")
        self._refuse_unswitchable(rec, "switch to")
        self._apply_metadata(rec)
        if current != rid:
            self._switch(state, current, rid, "switch")
            self.switched_from = current
        return rec

    def _do_good(self, state, current):
        rec = self._require(state, self.release_id, "mark good")
        if rec["status"] == "building":
            raise SafeshipError("refusing to mark release %s good: it is still building; mark it built with "
                                "state=ready (and switch to it) first." % rec["id"])
        if not self.was_built(rec):
            raise SafeshipError("refusing to mark release %s good: it failed while building (it was never marked "
                                "built with state=ready), so it can never be served. Build a new release."
                                % rec["id"])
        self._set_status(rec, "good")
        self._apply_metadata(rec)
        return rec

    def _do_bad(self, state, current):
        rec = self._require(state, self.release_id, "mark bad")
        if rec["status"] != "bad" and rec["id"] == current:
            warn("release %s is the current release and is now marked bad; it stays current until you roll back "
                 "(state=rolled_back)." % rec["id"])
        self._set_status(rec, "bad")
        self._apply_metadata(rec)
        return rec

    def _do_rolled_back(self, state, current):
        if current is None:
            raise SafeshipError("nothing to roll back: %s does not exist." % self.current_link)
        if self.release_id is not None and self.release_id != current:
            # Rolling back from a release that is no longer current: done already (idempotent).
            self.msg = "release %s is not current (%s is): nothing to roll back." % (self.release_id, current)
            return self.find(state, current)
        if self.to is not None:
            rec = self._require(state, self.to, "roll back to")
        else:
            rid = self.newest_good(state, exclude=current, usable=self._is_release_dir)
            if rid is None:
                good = [r["id"] for r in state["releases"] if r["status"] == "good"]
                raise SafeshipError("no good release to roll back to from %s (good releases: %s; the current one "
                                    "and those whose directory is gone do not count); name one with 'to'."
                                    % (current, _short(good)))
            rec = self.find(state, rid)
        self._refuse_unswitchable(rec, "roll back to")
        if rec["id"] == current:
            self.msg = "release %s is already current: nothing to roll back." % current
            return rec
        self._switch(state, current, rec["id"], "rollback")
        self.rollback = {"from": current, "to": rec["id"]}
        return rec

    def cleanup_plan(self, state, current):
        """(ids to remove, ids to forget because their directory is gone).

        Never removes the current release, the newest good one, the one a rollback would go to, a protected
        one, or release_id. Of the others, keeps the `keep` newest (bad and half-built ones not counted), the
        `keep_bad` newest bad ones, and the newest release if it is still building (it may be being built)."""
        forget = [r["id"] for r in state["releases"] if not os.path.lexists(self.release_path(r["id"]))
                  and not r.get("protected") and r["id"] != current]
        releases = [r for r in state["releases"] if r["id"] not in forget]
        view = {"releases": releases}
        keep = set()
        if current is not None:
            keep.add(current)
        if self.release_id is not None:
            keep.add(self.release_id)
        for rid in (self.newest_good(view), self.newest_good(view, exclude=current, usable=self._is_release_dir)):
            if rid is not None:
                keep.add(rid)
        keep.update(r["id"] for r in releases if r.get("protected"))
        if releases and releases[-1]["status"] == "building":
            keep.add(releases[-1]["id"])
        normal = [r["id"] for r in releases if r["status"] not in ("bad", "building")]
        bad = [r["id"] for r in releases if r["status"] == "bad"]
        keep.update(normal[-self.params["keep"]:])
        if self.params["keep_bad"]:
            keep.update(bad[-self.params["keep_bad"]:])
        # Only real directories are removed; anything else under that name is left alone.
        remove = [r["id"] for r in releases if r["id"] not in keep and self._is_release_dir(r["id"])]
        return remove, forget

    def _do_cleaned(self, state, current):
        remove, forget = self.cleanup_plan(state, current)
        self.removed = [self.find(state, rid) for rid in remove]
        self.forgotten = forget
        self.stale = self._stale_tmp_links() + self._stale_deleting()
        gone = set(remove) | set(forget)
        state["releases"] = [r for r in state["releases"] if r["id"] not in gone]
        if remove:
            self.fs_ops.append(("remove", list(remove)))
        if self.stale:
            self.fs_ops.append(("stale", list(self.stale)))
        return self.find(state, self.release_id) if self.release_id else None

    def _remove_releases(self, state, current, ids):
        """Remove release directories; on failure, the releases not yet removed stay recorded."""
        # Re-read the link right before deleting: never delete what is current now.
        now_current = self.read_current()[0]
        if now_current != current:
            raise SafeshipError("%s changed while cleaning up (now %s); nothing was removed."
                                % (self.current_link, now_current))
        pending = list(ids)
        try:
            while pending:
                rid = pending[0]
                if rid == now_current:
                    raise SafeshipError("refusing to remove the current release %s." % rid)
                # Off the releases/ namespace first (atomic), then deleted: an interrupted run leaves a hidden
                # .<id>.deleting-* directory that the next cleanup removes, never a half-deleted release.
                doomed = os.path.join(self.releases_dir, ".%s.deleting-%s" % (rid, os.urandom(4).hex()))
                os.rename(self.release_path(rid), doomed)
                pending.pop(0)
                remove_path(doomed)
        except BaseException:
            if pending:
                keep = set(pending)
                state["releases"].extend(r for r in self.removed if r["id"] in keep)
                state["releases"].sort(key=lambda r: r["seq"])
                self.removed = [r for r in self.removed if r["id"] not in keep]
            try:
                write_json_atomic(self.state_path, state)
            except (OSError, IOError):
                pass
            raise

    # ---- doing it --------------------------------------------------------------------------
    def _apply(self, state, current):
        done = []
        try:
            for op, arg in self.fs_ops:
                if op == "mkdir":
                    self._makedirs(self.releases_dir)
                    self._mkdir(self.release_path(arg))
                elif op == "switch":
                    for stale in self._stale_tmp_links():
                        remove_path(stale)
                    self._switch_link(arg)
                elif op == "remove":
                    self._remove_releases(state, current, arg)
                elif op == "stale":
                    for path in arg:
                        remove_path(path)
                elif op == "shared":
                    self.shared_report = self._link_shared(arg, dry=False)
                elif op == "writable":
                    # planned again: the shared step just before may have moved the directories
                    self.writable_report = self._writable_plan(arg)
                    self._make_writable(self.writable_report)
                done.append(op)
        except (OSError, IOError) as exc:
            raise SafeshipError("%s failed in %s: %s" % (
                op, self.app_root, getattr(exc, "strerror", None) or exc), changed=bool(done))
        except SafeshipError as exc:
            if done:
                exc.details["changed"] = True
            raise
        try:
            self._makedirs(os.path.dirname(self.state_path))
            write_json_atomic(self.state_path, state)
        except (OSError, IOError) as exc:
            raise SafeshipError("%s; but writing %s failed: %s" % (
                "the release directories were changed" if done else "nothing was changed on disk",
                self.state_path, exc.strerror or exc), changed=bool(done))

    def _plan_and_apply(self, dry):
        self.now = iso(utc_now())
        self.fs_ops = []
        self.msg = None
        self.rollback = None
        self.switched_from = None
        self.removed = self.forgotten = self.stale = None
        self.shared_report = None
        self.writable_report = None
        raw = self._read_state()
        on_disk = raw if raw is not None else self._empty_state()
        state, current, dangling = self._load(raw)
        if dangling is not None and self.state != "switched":
            raise self._dangling_error(dangling, state)
        before_current = current
        rec = getattr(self, "_do_" + self.state)(state, current)
        if self.shared and self.state in ("present", "ready"):
            self.shared_report = self._link_shared(rec["id"], dry=True)
            if any(item["action"] != "unchanged" for item in self.shared_report):
                self.fs_ops.append(("shared", rec["id"]))
        if self.writable and self.state in ("present", "ready"):
            self.writable_report = self._writable_plan(rec["id"])
            if any(item["created"] or item["chowned"] for item in self.writable_report):
                self.fs_ops.append(("writable", rec["id"]))
        new_current = current
        for op, arg in self.fs_ops:
            if op == "switch":
                new_current = arg
        state_changed = on_disk != state
        changed = bool(self.fs_ops) or state_changed
        if changed and not dry:
            self._apply(state, current)
        return self._result(on_disk, before_current, state, new_current, rec, changed)

    def run(self):
        if self.state != "present" and not os.path.isdir(self.app_root):
            raise SafeshipError("app_root %s does not exist." % self.app_root)
        lock_dir = os.path.dirname(self.state_path)
        if self.check_mode:
            if os.path.exists(self.state_path + ".lock"):
                with locked(self.state_path):
                    return self._plan_and_apply(dry=True)
            return self._plan_and_apply(dry=True)
        if not os.path.isdir(lock_dir):
            # First run here: make sure the plan holds before creating anything.
            planned = self._plan_and_apply(dry=True)
            if not planned["changed"]:
                return planned
            try:
                self._makedirs(self.app_root)
            except OSError as exc:
                raise SafeshipError("cannot create %s: %s" % (self.app_root, exc.strerror or exc))
            state_dir(self.app_root, create=True)
        with locked(self.state_path):
            return self._plan_and_apply(dry=False)

    # ---- output ----------------------------------------------------------------------------
    def public(self, rec, current):
        if rec is None:
            return None
        out = copy.deepcopy(rec)
        out["path"] = self.release_path(rec["id"])
        out["current"] = rec["id"] == current
        return out

    @staticmethod
    def _diff_text(state, current):
        lines = ["current: %s" % (current or "(none)"), "releases:"]
        for rec in state["releases"]:
            flags = []
            if rec["id"] == current:
                flags.append("current")
            if rec.get("protected"):
                flags.append("protected")
            lines.append("  %s: %s%s" % (rec["id"], rec["status"], " (%s)" % ", ".join(flags) if flags else ""))
        return "\n".join(lines) + "\n"

    def _result(self, before_state, before_current, state, current, rec, changed):
        result = {
            "changed": changed,
            "app_root": self.app_root,
            "current": current,
            "previous": self.previous_of(state, current) if current else None,
            "last_good": self.newest_good(state),
            "releases": [self.public(r, current) for r in state["releases"]],
            "release": self.public(rec, current),
            "path": self.release_path(rec["id"]) if rec else None,
        }
        if self.adopted:
            result["adopted"] = list(self.adopted)
        recorded = set(r["id"] for r in state["releases"])
        result["unmanaged"] = [n for n in self._release_dirs() if n not in recorded]
        if self.shared_report is not None:
            result["shared"] = self.shared_report
        if self.writable_report is not None:
            result["writable"] = [dict(path=e["path"], target=e["target"], created=e["created"],
                                       chowned=e["chowned"]) for e in self.writable_report]
        if self.state == "switched":
            result["switched_from"] = self.switched_from
        if self.state == "rolled_back":
            result["rollback"] = self.rollback
            if self.rollback:
                result["previous"] = self.rollback["from"]
        if self.state == "cleaned":
            result["removed"] = [r["id"] for r in self.removed]
            result["removed_releases"] = self.removed
            result["forgotten"] = self.forgotten
            result["removed_stale"] = self.stale
        if self.msg:
            result["msg"] = self.msg
        if self.want_diff:
            result["diff"] = {
                "before_header": self.state_path,
                "after_header": self.state_path,
                "before": self._diff_text(before_state, before_current),
                "after": self._diff_text(state, current),
            }
        return result


def manage(params, check_mode=False, diff=False):
    """Run the release module's logic with these parameters; return its result."""
    return Releases(params, check_mode=check_mode, diff=diff).run()


def run(module, runner=None):
    """The release module's action (it runs no program: runner is unused)."""
    return manage(module.params, check_mode=module.check_mode, diff=module._diff)
