"""preflight changed nothing: PostgreSQL still serves the shop database as it was, and the directory whose free
space was measured was not created."""


def test_postgresql_is_a_running_enabled_unit(host):
    unit = host.service("postgresql@15-main")
    assert unit.is_running
    assert unit.is_enabled
    assert host.socket("tcp://127.0.0.1:5432").is_listening


def test_postgres_processes_run_as_postgres(host):
    assert host.process.filter(user="postgres", comm="postgres")


def test_the_database_is_as_prepare_left_it(host):
    tables = host.check_output(
        "runuser -u postgres -- psql -X -At -d shop -c "
        "\"SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'\"")
    assert tables == "users"


def test_measured_directory_not_created(host):
    assert not host.file("/srv/shop").exists


def test_no_password_in_the_process_list_or_tmp(host):
    assert "preflight-not-a-secret" not in host.check_output("ps -eo args")
    assert host.run("grep -rl preflight-not-a-secret /tmp /root 2>/dev/null").stdout == ""
