"""A SQLite restore over a live database keeps the file's owner and mode, so the application
can still open it; a new target is private (0600)."""

import os
import sqlite3
import stat

import pytest


def make_db(path):
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
                       "INSERT INTO users (name) VALUES ('a'), ('b'), ('c');")
    conn.commit()
    conn.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_sqlite_restore_keeps_owner_and_mode_of_the_replaced_file(run_module, tmp_path):
    db = str(tmp_path / "app.sqlite")
    make_db(db)
    backup = run_module("db_backup", dict(engine="sqlite", database=db, dest=str(tmp_path / "b"), tables=["users"]))
    assert not backup.get("failed"), backup.get("msg")
    # as a web app deployed as www-data (or nobody) would have it
    os.chown(db, 65534, 65534)
    os.chmod(db, 0o664)

    result = run_module("db_restore", dict(engine="sqlite", src=backup["path"], target_database=db, force=True))

    assert not result.get("failed"), result.get("msg")
    assert result["replaced"] is True and result["tables"] == {"users": 3}
    st = os.stat(db)
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert stat.S_IMODE(st.st_mode) == 0o664


def test_sqlite_restore_into_a_new_file_is_private(run_module, tmp_path):
    db = str(tmp_path / "app.sqlite")
    make_db(db)
    backup = run_module("db_backup", dict(engine="sqlite", database=db, dest=str(tmp_path / "b"), tables=["users"]))
    assert not backup.get("failed"), backup.get("msg")
    target = str(tmp_path / "restored.sqlite")

    result = run_module("db_restore", dict(engine="sqlite", src=backup["path"], target_database=target))

    assert not result.get("failed"), result.get("msg")
    assert result["created"] is True
    st = os.stat(target)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
