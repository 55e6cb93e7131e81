"""state_dir: created once, and a concurrent creator is not an error."""

import errno
import os

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _common, _state


def test_creates_the_state_dir(tmp_path):
    path = _state.state_dir(str(tmp_path), create=True)
    assert path == str(tmp_path / ".safeship") and os.path.isdir(path)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o755)


def test_another_process_creating_it_first_is_fine(tmp_path, monkeypatch):
    real_makedirs = os.makedirs

    def racing_makedirs(path, *args, **kwargs):
        real_makedirs(path)  # the other process wins the race
        raise OSError(errno.EEXIST, "File exists", path)
    monkeypatch.setattr(_state.os, "makedirs", racing_makedirs)
    assert os.path.isdir(_state.state_dir(str(tmp_path), create=True))


def test_a_real_failure_is_one_clear_error(tmp_path):
    blocker = tmp_path / "app"
    blocker.write_text("a file where the app root should be")
    with pytest.raises(_common.SafeshipError) as err:
        _state.state_dir(str(blocker), create=True)
    assert "cannot create %s/.safeship" % blocker in str(err.value)
