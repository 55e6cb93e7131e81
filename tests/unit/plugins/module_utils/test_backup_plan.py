import datetime
import os

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils._backup import BackupPlan
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError


class FakeEngine(object):
    def __init__(self, name, database="app"):
        self.name = name
        self.database = database


def plan(engine="postgresql", database="app", **params):
    base = dict(dest="/backups", format=None, compression=None, compression_level=None, jobs=1, tables=[],
                label=None, keep=None)
    base.update(params)
    return BackupPlan(FakeEngine(engine, database), base)


@pytest.mark.parametrize("engine, database, fmt, compression, extension", [
    ("postgresql", "app", "custom", "zstd", ".dump.zst"),
    ("mysql", "shop", "plain", "zstd", ".sql.zst"),
    ("sqlite", "/srv/app/db.sqlite", "file", "zstd", ".sqlite3.zst"),
])
def test_engine_defaults(engine, database, fmt, compression, extension):
    p = plan(engine, database)
    assert (p.format, p.compression, p.extension) == (fmt, compression, extension)


@pytest.mark.parametrize("params, extension, level", [
    (dict(format="custom", compression="gzip"), ".dump", 6),
    (dict(format="custom", compression="none"), ".dump", None),
    (dict(format="directory"), ".dir", 6),
    (dict(format="plain", compression="gzip", compression_level=9), ".sql.gz", 9),
    (dict(format="plain", compression="none"), ".sql", None),
    (dict(format="plain", compression="zstd", compression_level=19), ".sql.zst", 19),
])
def test_postgresql_formats(params, extension, level):
    p = plan(**params)
    assert p.extension == extension
    assert p.level == level


def test_label_defaults_to_database_or_sqlite_file_stem():
    assert plan().label == "app"
    assert plan("sqlite", "/srv/app/shared/database.sqlite").label == "database"


def test_final_name_is_label_and_utc_timestamp(tmp_path):
    p = plan(dest=str(tmp_path), label="pre")
    now = datetime.datetime(2026, 11, 22, 15, 30, 0, tzinfo=datetime.timezone.utc)
    first = p.final_path(now)
    assert first == str(tmp_path / "pre_20261122T153000Z.dump.zst")
    open(first, "w").close()
    assert p.final_path(now) == str(tmp_path / "pre_20261122T153000Z-2.dump.zst")


@pytest.mark.parametrize("engine, params, message", [
    ("postgresql", dict(format="file"), "format file is not available for engine postgresql"),
    ("mysql", dict(format="custom"), "format custom is not available for engine mysql"),
    ("postgresql", dict(format="directory", compression="zstd"), "compression zstd is not available for format directory"),
    ("postgresql", dict(jobs=2), "jobs > 1 needs format directory"),
    ("postgresql", dict(jobs=0), "jobs must be 1 or more"),
    ("postgresql", dict(compression="gzip", compression_level=10), "compression_level 10 is out of range for gzip (1 to 9)"),
    ("postgresql", dict(compression="zstd", compression_level=0), "compression_level 0 is out of range for zstd"),
    ("postgresql", dict(compression="none", compression_level=3), "compression_level needs compression gzip or zstd"),
    ("postgresql", dict(keep=0), "keep must be 1 or more"),
    ("postgresql", dict(label="../../etc"), "label '../../etc' is not valid"),
    ("postgresql", dict(tables=["users; drop table users"]), "is not a valid name"),
    ("postgresql", dict(dest="backups"), "must be an absolute path"),
])
def test_bad_input_is_refused_before_anything_runs(engine, params, message):
    with pytest.raises(SafeshipError) as err:
        plan(engine, "app" if engine != "sqlite" else "/x.sqlite", **params)
    assert message in err.value.msg


@pytest.mark.parametrize("jobs", [1, 2])
def test_check_gzip_files_finds_a_truncated_file(tmp_path, jobs):
    import gzip as gzip_module
    from ansible_collections.safeship.webapp.plugins.module_utils._backup import check_gzip_files
    names = []
    for number in range(4):
        name = "%d.dat.gz" % number
        with gzip_module.open(str(tmp_path / name), "wb") as handle:
            handle.write(os.urandom(200000))
        names.append(name)
    check_gzip_files(str(tmp_path), names, jobs)
    broken = tmp_path / names[2]
    broken.write_bytes(broken.read_bytes()[:-5000])
    with pytest.raises(SafeshipError) as err:
        check_gzip_files(str(tmp_path), names, jobs)
    assert err.value.msg.startswith("2.dat.gz in the dump does not decompress")
