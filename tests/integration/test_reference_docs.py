"""The reference is built from the code by scripts/docs (antsibull-docs + Sphinx, warnings are errors): one HTML
page per module, role and filter, each carrying the short description and every option its documentation gives,
and docs/reference/README.md lists exactly the modules, roles and filters there are."""

import glob
import html
import json
import os
import re
import subprocess

from helpers.modules import REPO
from helpers.paths import venv_tool
from helpers.playbooks import ansible_env

ANSIBLE_DOC = venv_tool("ansible-doc")


def documented(kind):
    env = ansible_env()
    listing = subprocess.run([ANSIBLE_DOC, "--json", "-t", kind, "-l", "safeship.webapp"], env=env,
                             capture_output=True, text=True, check=True).stdout
    names = sorted(json.loads(listing))
    out = subprocess.run([ANSIBLE_DOC, "--json", "-t", kind] + names, env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def page_text(path):
    with open(path, encoding="utf-8") as handle:
        return html.unescape(re.sub(r"<[^>]+>", "", handle.read()))


def test_the_reference_is_generated_with_every_module_role_and_filter(tmp_path):
    out = tmp_path / "docs"
    proc = subprocess.run([os.path.join(REPO, "scripts", "docs")], env=dict(os.environ, DOCS_OUT=str(out)),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    pages = {os.path.basename(p) for p in glob.glob(str(out / "html" / "*.html"))}

    modules = documented("module")
    filters = documented("filter")
    roles = documented("role")
    assert len(modules) == len(glob.glob(os.path.join(REPO, "plugins", "modules", "[a-z]*.py")))
    assert len(roles) == len(glob.glob(os.path.join(REPO, "roles", "*", "meta", "argument_specs.yml")))
    assert filters

    for fqcn, data in modules.items():
        name = fqcn.split(".")[-1]
        assert "%s_module.html" % name in pages, name
        text = page_text(str(out / "html" / ("%s_module.html" % name)))
        assert data["doc"]["short_description"] in text, name
        missing = [option for option in data["doc"]["options"] if option not in text]
        assert missing == [], (name, missing)
    for fqcn, data in filters.items():
        name = fqcn.split(".")[-1]
        assert "%s_filter.html" % name in pages, name
    for fqcn, data in roles.items():
        name = fqcn.split(".")[-1]
        assert "%s_role.html" % name in pages, name
        text = page_text(str(out / "html" / ("%s_role.html" % name)))
        options = [option for entry in data["entry_points"].values() for option in entry.get("options") or {}]
        missing = [option for option in options if option not in text]
        assert missing == [], (name, missing)

    with open(os.path.join(REPO, "docs", "reference", "README.md")) as readme:
        table = readme.read().split("| modules | roles | filters |", 1)[1]
    row = table.splitlines()[2]
    listed = [set(re.findall(r"`([a-z_0-9]+)`", cell)) for cell in row.strip("|").split("|")]
    short = [{fqcn.split(".")[-1] for fqcn in kind} for kind in (modules, roles, filters)]
    assert listed == short
