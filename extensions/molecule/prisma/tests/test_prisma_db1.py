"""db1: PostgreSQL a running, enabled unit listening on the lab network; prisma migrate deploy applied both
migrations of release 2 once (one finished row each, nothing rolled back)."""

testinfra_hosts = ["ansible://db1"]

MIGRATIONS = ["20250101000000_create_note", "20250201000000_note_pinned"]


def psql(host, sql):
    return host.check_output("runuser -u postgres -- psql -d notes -At -F '|' -c %s", sql)


def test_postgresql_running_and_enabled(host):
    service = host.service("postgresql@15-main")
    assert service.is_running
    assert host.service("postgresql").is_enabled


def test_listens_on_the_lab_network(host):
    assert host.socket("tcp://0.0.0.0:5432").is_listening


def test_migrations_applied_once(host):
    rows = psql(host, "SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NULL, applied_steps_count "
                      "FROM _prisma_migrations ORDER BY migration_name").splitlines()
    assert rows == ["%s|t|t|1" % name for name in MIGRATIONS]


def test_schema_of_release_2(host):
    columns = psql(host, "SELECT column_name FROM information_schema.columns WHERE table_name = 'Note' "
                         "ORDER BY column_name").splitlines()
    assert "pinned" in columns
    assert psql(host, "SELECT tableowner FROM pg_tables WHERE tablename = 'Note'") == "notes"
