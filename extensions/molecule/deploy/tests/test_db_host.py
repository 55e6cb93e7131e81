"""db1 after converge: PostgreSQL a running, enabled unit listening on the lab network; the deploy's
backups written there, readable by their owner only."""

testinfra_hosts = ["db1"]

BACKUPS = "/var/backups/shop"


def test_postgresql_runs_as_an_enabled_unit(host):
    assert host.service("postgresql@15-main").is_running
    assert host.service("postgresql").is_enabled


def test_postgresql_listens_on_5432(host):
    assert host.socket("tcp://0.0.0.0:5432").is_listening


def test_the_backups_are_0600_files(host):
    """v2 and v3 each took one verified backup before migrating (v1 had nothing to back up, the re-run of
    v1 migrated nothing): two dumps, each with its manifest, readable by their owner only."""
    names = sorted(host.check_output("find %s -type f -printf '%%P\\n'" % BACKUPS).split())
    dumps = [name for name in names if name.endswith(".dump.zst")]
    assert len(dumps) == 2 and sorted(names) == sorted(dumps + [d + ".manifest.json" for d in dumps]), names
    for name in names:
        backup = host.file("%s/%s" % (BACKUPS, name))
        assert backup.is_file and backup.mode == 0o600, (name, oct(backup.mode))
