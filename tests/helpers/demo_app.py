"""Releases of the demo's sample app (demo/sample_app, see demo/README.md).

assemble_release(dest, "1") copies demo/sample_app to dest; "2" then copies demo/sample_app_v2 over
it (the files 2.0.0 changes or adds). install_release(path) runs what a deploy runs: npm ci (the
app has no build step). The demo's own playbook lays out its releases the same way."""

import os
import shutil
import subprocess

from helpers.modules import REPO

DEMO = os.path.join(REPO, "demo")
BASE = os.path.join(DEMO, "sample_app")
OVERLAYS = {"1": [], "2": [os.path.join(DEMO, "sample_app_v2")]}
VERSIONS = {"1": "1.0.0", "2": "2.0.0"}
# node_modules: a developer may have run npm in demo/; a release installs its own.
_IGNORE = shutil.ignore_patterns("node_modules")


def assemble_release(dest, version):
    """Copy the sample app into dest (which must not exist) as version "1" or "2"; returns dest."""
    version = str(version)
    if version not in OVERLAYS:
        raise ValueError("version must be one of %s, not %r" % (sorted(OVERLAYS), version))
    shutil.copytree(BASE, dest, ignore=_IGNORE)
    for overlay in OVERLAYS[version]:
        shutil.copytree(overlay, dest, ignore=_IGNORE, dirs_exist_ok=True)
    return dest


def install_release(path):
    """npm ci from the release's lock file (fails if package.json and the lock disagree)."""
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=path, check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return path


def migrate(path, database_path, **env):
    """`npm run migrate` of a release; the CompletedProcess (stdout and stderr together, text)."""
    environ = dict(os.environ, **env)
    environ.pop("DATABASE_PATH", None)
    if database_path is not None:
        environ["DATABASE_PATH"] = database_path
    return subprocess.run(["npm", "run", "--silent", "migrate"], cwd=path, env=environ, check=False,
                          universal_newlines=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
