"""The test-only bytecode cache of module processes (tests/helpers/bytecode_cache/sitecustomize.py): code
imported from a zip runs as compiled from the source in that zip, a cached entry is reused only for the
very same source, and a damaged entry is compiled again. Real Python processes, real zips."""

import os
import subprocess
import zipfile

from helpers.paths import BYTECODE_SITE, PYTHON

PROGRAM = """\
import sys
sys.path.insert(0, sys.argv[1])
import cachedmod
print(cachedmod.VALUE, cachedmod.where.__code__.co_filename)
"""


def zipped(tmp_path, name, source):
    path = str(tmp_path / name)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cachedmod.py", source)
    return path


def imported(archive, cache):
    env = dict(os.environ, PYTHONPATH=BYTECODE_SITE, SAFESHIP_TEST_BYTECODE_CACHE=cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([PYTHON, "-c", PROGRAM, archive], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
    value, filename = proc.stdout.split()
    return value, filename


def entries(cache):
    return sorted(name for _top, _dirs, names in os.walk(cache) for name in names)


def test_the_same_source_is_compiled_once_and_a_changed_one_again(tmp_path):
    cache = str(tmp_path / "cache")
    first = zipped(tmp_path, "first.zip", "VALUE = 1\ndef where():\n    pass\n")
    assert imported(first, cache) == ("1", os.path.join(first, "cachedmod.py"))
    assert len(entries(cache)) == 1

    # the same source from another zip (every Ansible task's has its own path): reused, named after the new zip
    second = zipped(tmp_path, "second.zip", "VALUE = 1\ndef where():\n    pass\n")
    assert imported(second, cache) == ("1", os.path.join(second, "cachedmod.py"))
    assert len(entries(cache)) == 1

    # one byte changed: compiled again, never the stale code
    changed = zipped(tmp_path, "changed.zip", "VALUE = 2\ndef where():\n    pass\n")
    assert imported(changed, cache)[0] == "2"
    assert len(entries(cache)) == 2


def test_a_damaged_entry_is_compiled_again(tmp_path):
    cache = str(tmp_path / "cache")
    archive = zipped(tmp_path, "module.zip", "VALUE = 3\ndef where():\n    pass\n")
    imported(archive, cache)
    (entry,) = [os.path.join(top, name) for top, _dirs, names in os.walk(cache) for name in names]
    with open(entry, "r+b") as handle:
        handle.truncate(7)
    assert imported(archive, cache)[0] == "3"
    assert os.path.getsize(entry) > 7, "the damaged entry was not written again"


def test_without_the_variable_nothing_is_cached(tmp_path):
    archive = zipped(tmp_path, "module.zip", "VALUE = 4\ndef where():\n    pass\n")
    assert imported(archive, "")[0] == "4"
    assert not os.path.exists(str(tmp_path / "cache"))
