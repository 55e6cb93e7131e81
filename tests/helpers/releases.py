"""Helpers for the release module's tests: a snapshot of an application tree, a release with files in it."""

import hashlib
import json
import os


def tree_snapshot(root):
    """{relative path: description} of everything below root, symlinks not followed: equal snapshots mean
    nothing was written (file contents, link targets, modes)."""
    snap = {}
    if not os.path.lexists(root):
        return snap
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                snap[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                snap[rel] = ("dir", st.st_mode)
            else:
                with open(path, "rb") as handle:
                    snap[rel] = ("file", st.st_mode, hashlib.sha256(handle.read()).hexdigest())
    return snap


def state_of(app_root):
    """{id: status} from releases.json."""
    with open(os.path.join(app_root, ".safeship", "releases.json")) as handle:
        data = json.load(handle)
    return dict((r["id"], r["status"]) for r in data["releases"])


def current_of(app_root):
    link = os.path.join(app_root, "current")
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def write_files(release_dir, files):
    """files: {relative path: content}; directories created as needed."""
    for rel, content in files.items():
        path = os.path.join(release_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(content)
