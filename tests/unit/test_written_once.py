"""What the tests share is written once in tests/helpers: the venv's path (helpers.paths), the free-port helper
(helpers.ports) and the ansible-playbook runner (helpers.playbooks). These checks read every Python file of
tests/ and fail on a second copy; they run on broken copies too, so each is proven able to fail."""

import ast
import glob
import os

import pytest

from helpers.paths import REPO

TESTS = os.path.join(REPO, "tests")
# the one place each is allowed
OWNERS = {"venv path": "tests/helpers/paths.py", "free port": "tests/helpers/ports.py",
          "ansible-playbook run": "tests/helpers/playbooks.py"}


def _path_strings(tree):
    """(string, line) of the string constants a call is given or a list holds: path parts and argv items."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            items = list(node.args)
        elif isinstance(node, ast.List):
            items = node.elts
        else:
            continue
        for item in items:
            if isinstance(item, ast.Constant) and isinstance(item.value, str):
                yield item.value, item.lineno


def copies(source):
    """[(what, line)] of what Python source writes again: the venv's path built (os.path.join(REPO, ".venv", ...),
    ".venv/bin/..."), the ansible-playbook command named (os.path.join(..., "ansible-playbook"), an argv
    starting with it), a free port taken with a socket bound to port 0 or a free_port defined."""
    tree = ast.parse(source)
    found = []
    for value, line in _path_strings(tree):
        if value == ".venv" or ".venv/bin" in value:
            found.append(("venv path", line))
        if value == "ansible-playbook" or value.endswith("/ansible-playbook"):
            found.append(("ansible-playbook run", line))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "free_port":
            found.append(("free port", node.lineno))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "bind":
            address = node.args[0] if node.args else None
            if isinstance(address, ast.Tuple) and len(address.elts) == 2 \
                    and isinstance(address.elts[1], ast.Constant) and address.elts[1].value == 0:
                found.append(("free port", node.lineno))
    return sorted(found, key=lambda item: item[1])


def test_the_venv_path_the_free_port_and_the_playbook_runner_are_written_once():
    problems = []
    for path in sorted(glob.glob(os.path.join(TESTS, "**", "*.py"), recursive=True)):
        relative = os.path.relpath(path, REPO)
        if relative.startswith(("tests/output/", "tests/lab/")) or relative == "tests/unit/test_written_once.py":
            continue
        with open(path, encoding="utf-8") as handle:
            for what, line in copies(handle.read()):
                if OWNERS[what] != relative:
                    problems.append("%s:%d: %s written again (use %s)" % (relative, line, what, OWNERS[what]))
    assert problems == []


@pytest.mark.parametrize("source, expected", [
    ('VENV_BIN = os.path.join(REPO, ".venv", "bin")\n', ["venv path"]),
    ('tool = os.path.join(REPO, ".venv/bin/ansible-doc")\n', ["venv path"]),
    ('argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory]\n', ["ansible-playbook run"]),
    ('subprocess.run(["ansible-playbook", "-i", "hosts", "site.yml"])\n', ["ansible-playbook run"]),
    ('def free_port():\n    with socket.socket() as sock:\n        sock.bind(("127.0.0.1", 0))\n'
     '        return sock.getsockname()[1]\n', ["free port", "free port"]),
    ('holder = socket.socket()\nholder.bind(("127.0.0.1", 0))\n', ["free port"]),
    # what is not a copy: a docstring's usage line, the venv among a tarball's forbidden entries, a message naming
    # it, a socket bound to a given port, a fake program named ansible-playbook in a test of the lock
    ('"""Run it: .venv/bin/python tests/helpers/load.py URL"""\n', []),
    ('assert not top & {".venv", ".build", "tests"}, top\n', []),
    ('assert not [n for n in names if n.startswith(("tests/", ".venv/"))]\n', []),
    ('assert os.path.exists(builder), "ansible-builder is not in .venv: pip install"\n', []),
    ('sock.bind(("127.0.0.1", port))\n', []),
    ('fake = tmp_path / "ansible-playbook"\n', []),
])
def test_a_copy_is_found(source, expected):
    assert [what for what, line in copies(source)] == expected
