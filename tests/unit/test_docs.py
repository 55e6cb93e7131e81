"""The user documentation cannot drift from the code: every relative link (and #anchor) in README.md,
docs/ and the roles' READMEs points at a file or heading that exists; every variable the pages name in
backticks (`laravel_tenants_query`, `-e deploy_hosts=shop_app`) is a real name of a role argument spec, a
playbook or an example inventory; the Spanish pages cover the same stacks as the English ones; CHANGELOG.md is
exactly what antsibull-changelog generates from changelogs/changelog.yaml, and the fragments lint. Each check
also runs on a broken page, so it is proven to fail."""

import functools
import glob
import os
import re
import shutil
import subprocess

import pytest

from helpers.modules import REPO
from helpers.paths import venv_tool
from helpers.playbooks import ansible_env

PAGES = sorted(
    [os.path.join(REPO, "README.md")]
    + glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True)
    + glob.glob(os.path.join(REPO, "roles", "**", "README.md"), recursive=True)
)
ROLE_PREFIXES = ("deploy_", "laravel_", "node_pm2_", "prisma_", "backup_", "restore_", "rollback_", "preflight_",
                 "healthcheck_", "notify_", "release_", "report_", "staging_refresh_", "restore_drill_")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
# a role-prefixed word that is not part of a path, a file name or a dotted FQCN
VARIABLE = re.compile(r"(?<![\w./-])(%s)[a-z0-9_]*(?![\w./(*-])" % "|".join(ROLE_PREFIXES))


def relative(path):
    return os.path.relpath(path, REPO)


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def slug(heading):
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text, flags=re.U)
    return text.replace(" ", "-")


def anchors(text):
    text = FENCE.sub("", text)
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        base = slug(heading)
        name, count = base, 1
        while name in found:
            name, count = "%s-%d" % (base, count), count + 1
        found.add(name)
    found.update(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    return found


def link_problems(path, text):
    problems = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, anchor = target.partition("#")[::2]
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not file_part:
            if anchor not in anchors(text):
                problems.append("%s: link %s: no such heading in this page" % (relative(path), target))
        elif not os.path.exists(dest):
            problems.append("%s: link %s: %s does not exist" % (relative(path), target, relative(dest)))
        elif anchor and dest.endswith(".md") and anchor not in anchors(read(dest)):
            problems.append("%s: link %s: no heading #%s in %s" % (relative(path), target, anchor, relative(dest)))
    return problems


@functools.lru_cache(maxsize=None)
def known_words():
    """Every word of the roles (argument specs, and the facts their tasks leave), the playbooks and the example
    inventories."""
    sources = (glob.glob(os.path.join(REPO, "roles", "**", "*.yml"), recursive=True)
               + glob.glob(os.path.join(REPO, "playbooks", "**", "*.yml"), recursive=True)
               + glob.glob(os.path.join(REPO, "inventories", "**", "*"), recursive=True))
    words = set()
    for source in sources:
        if os.path.isfile(source):
            words.update(re.findall(r"[a-z][a-z0-9_]*", read(source)))
    return words


def variable_problems(path, text):
    problems = []
    for span in CODE_SPAN.findall(FENCE.sub("", text)):
        for match in VARIABLE.finditer(span):
            name = match.group(0)
            if name not in known_words():
                problems.append("%s: `%s` names %s, which no argument spec, playbook or inventory has"
                                % (relative(path), span, name))
    return problems


def test_the_pages_exist():
    names = {relative(page) for page in PAGES}
    for page in ("docs/getting-started.md", "docs/backup-restore.md", "docs/troubleshooting.md", "docs/awx.md",
                 "docs/benchmarks.md", "docs/reference/README.md", "docs/es/README.md", "docs/es/runbooks.md",
                 "docs/stacks/laravel-multitenant.md", "docs/stacks/laravel-mysql.md", "docs/stacks/node-prisma.md",
                 "docs/stacks/node-two-apps-nginx.md", "docs/stacks/feature-flags-restore-drills.md"):
        assert page in names


@pytest.mark.parametrize("page", [relative(page) for page in PAGES])
def test_links_resolve(page):
    path = os.path.join(REPO, page)
    assert link_problems(path, read(path)) == []


@pytest.mark.parametrize("page", [relative(page) for page in PAGES])
def test_named_variables_exist(page):
    path = os.path.join(REPO, page)
    assert variable_problems(path, read(path)) == []


def test_troubleshooting_covers_the_runbooks_failures():
    found = anchors(read(os.path.join(REPO, "docs", "troubleshooting.md")))
    for anchor in ("port-already-in-use", "missing-environment-variable", "database-refused-the-connection",
                   "migration-syntax-error", "table-already-exists", "foreign-key-failure",
                   "high-error-rate-after-the-deploy"):
        assert anchor in found


def test_the_spanish_pages_cover_every_stack():
    spanish = read(os.path.join(REPO, "docs", "es", "runbooks.md"))
    for stack in glob.glob(os.path.join(REPO, "docs", "stacks", "*.md")):
        assert "../stacks/%s" % os.path.basename(stack) in spanish, stack


def test_broken_pages_are_caught(tmp_path):
    page = os.path.join(REPO, "docs", "broken.md")
    text = ("# Title\n\nSee [the guide](getting-started.md#no-such-heading), [gone](stacks/gone.md), "
            "[here](#title), [nowhere](#no-title) and [there](getting-started.md).\n\n"
            "Set `laravel_tennants_query` and `-e deploy_hostz=shop_app`; `deploy_hosts` and "
            "`roles/deploy_nothing/x.yml` are fine.\n")
    links = link_problems(page, text)
    assert len(links) == 3, links
    assert "no heading #no-such-heading" in links[0] and "docs/stacks/gone.md does not exist" in links[1]
    assert "link #no-title: no such heading in this page" in links[2]
    variables = variable_problems(page, text)
    assert [problem.rsplit(" names ", 1)[1].split(",")[0] for problem in variables] == \
        ["laravel_tennants_query", "deploy_hostz"]
    assert slug("Port already in use") == "port-already-in-use"
    assert slug('Table "already exists"') == "table-already-exists"


def test_the_changelog_is_generated_from_the_fragments(tmp_path):
    tool = venv_tool("antsibull-changelog")
    lint = subprocess.run([tool, "lint"], cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
    # generate in a copy: the tool refreshes its plugin cache in place
    copy = tmp_path / "collection"
    shutil.copytree(os.path.join(REPO, "changelogs"), str(copy / "changelogs"))
    shutil.copy(os.path.join(REPO, "galaxy.yml"), str(copy / "galaxy.yml"))
    out = tmp_path / "CHANGELOG.md"
    proc = subprocess.run([tool, "generate", "--output", str(out)], cwd=str(copy), env=ansible_env(),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    committed = read(os.path.join(REPO, "CHANGELOG.md"))
    assert committed == read(str(out)), "CHANGELOG.md is not what antsibull-changelog generates: run " \
        "antsibull-changelog generate"
    assert "## v0\\.1\\.0" in committed and "### New Modules" in committed
