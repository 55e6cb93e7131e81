import json
import os

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils import _common as common


@pytest.mark.parametrize("name", ["app", "app_prod", "tenant-42", "a$b", "DB1", "x" * 63])
def test_valid_database_names(name):
    assert common.check_database_name(name) == name


@pytest.mark.parametrize("name", ["x; rm -rf /", "../../etc", "", "-app", "$app", "a b", "a/b",
                                  "host=evil", "x" * 64, "db'name", 'db"name', None])
def test_invalid_database_names_name_the_value(name):
    with pytest.raises(common.SafeshipError) as err:
        common.check_database_name(name)
    assert "is not a valid name" in err.value.msg
    assert repr(name) in err.value.msg


@pytest.mark.parametrize("name, expected", [
    ("users", (None, "users")),
    ("public.users", ("public", "users")),
    ("_t$1", (None, "_t$1")),
])
def test_split_table_name(name, expected):
    assert common.split_table_name(name) == expected


@pytest.mark.parametrize("name", ["users; drop table users", "a.b.c", "1abc", "", "us ers", "a.", '"q"'])
def test_split_table_name_refuses(name):
    with pytest.raises(common.SafeshipError, match="is not a valid name"):
        common.split_table_name(name)


@pytest.mark.parametrize("label", ["app", "app-predeploy", "v1.2.3", "a_b"])
def test_valid_labels(label):
    assert common.check_label(label) == label


@pytest.mark.parametrize("label", ["../../etc", "a/b", "..", ".hidden", "a..b", "", "x" * 101])
def test_invalid_labels(label):
    with pytest.raises(common.SafeshipError, match="is not valid"):
        common.check_label(label)


def test_sha256_tree_depends_on_names_and_contents(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.dat").write_bytes(b"one")
    (tmp_path / "toc.dat").write_bytes(b"toc")
    digest, files = common.sha256_tree(str(tmp_path))
    assert sorted(files) == ["a/1.dat", "toc.dat"]
    (tmp_path / "toc.dat").write_bytes(b"toc!")
    assert common.sha256_tree(str(tmp_path))[0] != digest


def test_write_json_atomic_leaves_only_the_final_file(tmp_path):
    target = tmp_path / "m.json"
    common.write_json_atomic(str(target), {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(str(tmp_path)) == ["m.json"]
    assert common.is_private(str(target))


def test_write_json_atomic_cleans_up_on_error(tmp_path):
    with pytest.raises(TypeError):
        common.write_json_atomic(str(tmp_path / "m.json"), {"a": object()})
    assert os.listdir(str(tmp_path)) == []


def test_chmod_private_recurses(tmp_path):
    sub = tmp_path / "d"
    sub.mkdir(mode=0o755)
    (sub / "f").write_text("x")
    os.chmod(str(sub / "f"), 0o644)
    common.chmod_private(str(sub))
    assert oct(os.stat(str(sub)).st_mode & 0o777) == oct(0o700)
    assert oct(os.stat(str(sub / "f")).st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize("num, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024 ** 3, "5.0 GiB")])
def test_human_size(num, text):
    assert common.human_size(num) == text
