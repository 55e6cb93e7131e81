"""Where the tests find the checkout and its tools: the one place that spells out the venv's path.

REPO is the checkout, COLLECTIONS the collections path whose safeship/webapp links to it (made by
helpers.modules.ensure_collection_path), VENV_BIN the bin/ of the venv scripts/test installs, PYTHON its
Python (the interpreter the test inventories give every host: interpreter discovery finds a broken pyenv
shim on these machines); venv_tool(name) is the path of one of the venv's commands. BYTECODE_SITE is the
directory whose sitecustomize.py lets module processes reuse compiled code, BYTECODE_CACHE where it keeps
it (helpers/bytecode_cache/sitecustomize.py says why)."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
VENV_BIN = os.path.join(REPO, ".venv", "bin")
PYTHON = os.path.join(VENV_BIN, "python")
BYTECODE_SITE = os.path.join(REPO, "tests", "helpers", "bytecode_cache")
BYTECODE_CACHE = os.path.join(REPO, ".build", "cache", "module-bytecode")


def venv_tool(name):
    """The venv's command `name` (ansible-playbook, ansible-galaxy, ansible-doc, ...)."""
    return os.path.join(VENV_BIN, name)
