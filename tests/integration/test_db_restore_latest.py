"""db_restore latest_in (and label): the newest backup of the engine and label in a directory, restored for
real (SQLite, the same code path for every engine); a corrupt newest backup is refused, never replaced by an
older one; bad input fails with one message and changes nothing."""

import os
import sqlite3

import pytest


def rows(path):
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT title FROM notes ORDER BY id")]


def write(path, *titles):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, title TEXT)")
        conn.executemany("INSERT INTO notes (title) VALUES (?)", [(t,) for t in titles])


@pytest.fixture()
def backups(tmp_path, run_module):
    """Three backups in one directory, oldest first: nightly (a), nightly (a, b), predeploy (a, b, c)."""
    source, dest = str(tmp_path / "app.sqlite"), str(tmp_path / "backups")
    made = {}
    for label, title in (("nightly", "a"), ("nightly", "b"), ("predeploy", "c")):
        write(source, title)
        result = run_module("db_backup", dict(engine="sqlite", database=source, dest=dest, label=label,
                                              tables=["notes"], keep=5))
        assert not result.get("failed"), result
        made.setdefault(label, []).append(result["path"])
    return dest, made


def restore(run_module, target, check_mode=False, **args):
    return run_module("db_restore", dict(engine="sqlite", target_database=target, **args), check_mode=check_mode)


def test_the_newest_of_a_label_then_of_any(run_module, backups, tmp_path):
    dest, made = backups
    target = str(tmp_path / "restored.sqlite")
    check = restore(run_module, target, True, latest_in=dest, label="nightly")
    assert not check.get("failed") and check["changed"] is True and check["src"] == made["nightly"][1]
    assert not os.path.exists(target)

    real = restore(run_module, target, latest_in=dest, label="nightly")
    assert not real.get("failed"), real
    assert real["src"] == made["nightly"][1] and rows(target) == ["a", "b"]

    newest = restore(run_module, target, latest_in=dest, force=True)
    assert not newest.get("failed"), newest
    assert newest["src"] == made["predeploy"][0] and rows(target) == ["a", "b", "c"]


def test_a_corrupt_newest_backup_is_refused_not_replaced_by_an_older_one(run_module, backups, tmp_path):
    dest, made = backups
    with open(made["nightly"][1], "r+b") as handle:
        handle.seek(0, os.SEEK_END)
        handle.write(b"garbage")
    target = str(tmp_path / "restored.sqlite")
    write(target, "live")
    result = restore(run_module, target, latest_in=dest, label="nightly", force=True)
    assert result.get("failed") and "does not match its manifest" in result["msg"]
    assert made["nightly"][1] in result["msg"]
    assert rows(target) == ["live"]


@pytest.mark.parametrize("args, message", [
    (dict(latest_in="{dest}", label="weekly"), "no sqlite backup labelled 'weekly' in {dest}"),
    (dict(latest_in="{tmp}/nowhere"), "latest_in {tmp}/nowhere is not a directory"),
    (dict(latest_in="{dest}", label="../x"), "label '../x' is not valid"),
    (dict(latest_in="{dest}", src="{dest}/x"), "parameters are mutually exclusive: src|latest_in"),
    (dict(src="{dest}/x", label="nightly"), "missing parameter(s) required by 'label': latest_in"),
    (dict(), "one of the following is required: src, latest_in"),
])
def test_bad_input_changes_nothing(run_module, backups, tmp_path, args, message):
    dest, _made = backups
    target = str(tmp_path / "restored.sqlite")
    values = dict(dest=dest, tmp=str(tmp_path))
    result = restore(run_module, target, **dict((k, v.format(**values)) for k, v in args.items()))
    assert result.get("failed") and message.format(**values) in result["msg"], result.get("msg")
    assert not os.path.exists(target)
