"""laravel on app1: nginx + PHP-FPM serve current/public (r1, 1.0.0) on port 80, the central migrations are in
PostgreSQL, supervisor runs the queue workers from current as www-data (and they run a job), cron runs the
scheduler."""

import json
import time

import pytest

ROOT = "/srv/shop"
MIGRATIONS = [
    "2014_10_12_000000_create_users_table",
    "2019_08_19_000000_create_failed_jobs_table",
    "2020_01_01_000000_create_tenants_table",
    "2020_01_01_000001_create_jobs_table",
]


def psql(host, sql):
    return host.check_output("runuser -u postgres -- psql -d shop -At -c %s" % json.dumps(sql))


@pytest.mark.parametrize("unit", ["nginx", "php8.2-fpm", "postgresql", "supervisor", "cron"])
def test_unit_running_and_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


def test_current_points_at_r1(host):
    current = host.file(ROOT + "/current")
    assert current.is_symlink
    assert current.linked_to == ROOT + "/releases/r1"
    assert host.file(ROOT + "/shared/storage").is_directory
    assert host.file(ROOT + "/releases/r1/storage").linked_to == ROOT + "/shared/storage"


def test_env_is_shared_and_private(host):
    env = host.file(ROOT + "/shared/.env")
    assert env.is_file
    assert env.mode & 0o007 == 0
    assert env.contains("^DB_DATABASE=")


def test_nginx_site_of_the_role_is_enabled(host):
    site = host.file("/etc/nginx/sites-enabled/laravel.conf")
    assert site.exists
    assert site.contains("root %s/current/public;" % ROOT)
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    host.run_expect([0], "nginx -t")


def test_listening(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening
    assert host.socket("unix:///run/php/php8.2-fpm.sock").is_listening
    assert host.socket("tcp://127.0.0.1:5432").is_listening


def test_up_answers_through_nginx_and_php_fpm(host):
    body = json.loads(host.check_output("curl -fsS --max-time 5 http://127.0.0.1/up"))
    assert body["status"] == "ok"
    assert body["app"] == "shop"
    assert body["version"] == "1.0.0"
    fpm_pids = host.check_output("pgrep -d, -u www-data php-fpm").split(",")
    assert str(body["pid"]) in fpm_pids


def test_migrations_applied(host):
    assert psql(host, "SELECT migration FROM migrations ORDER BY migration").splitlines() == MIGRATIONS
    tables = psql(host, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").splitlines()
    assert {"users", "failed_jobs", "tenants", "jobs"} <= set(tables)
    assert psql(host, "SELECT tableowner FROM pg_tables WHERE tablename = 'jobs'") == "shop"


def test_queue_workers_running_under_supervisor(host):
    status = host.check_output("supervisorctl status")
    lines = [line for line in status.splitlines() if line.startswith("shop-worker:")]
    assert len(lines) == 2, status
    assert all(" RUNNING " in line for line in lines), status
    workers = [p for p in host.process.filter(user="www-data") if "queue:work" in p.args]
    assert len(workers) == 2
    for worker in workers:
        assert host.file("/proc/%d/cwd" % worker.pid).linked_to == ROOT + "/releases/r1"


def test_a_queued_job_is_run_by_a_worker(host):
    pings = ROOT + "/shared/storage/app/pings.log"
    host.run_expect([0], "cd %s/current && runuser -u www-data -- php artisan app:ping molecule-ping" % ROOT)
    for _attempt in range(40):
        if host.file(pings).exists and "molecule-ping 1.0.0" in host.file(pings).content_string:
            break
        time.sleep(0.25)
    else:
        pytest.fail("no worker ran the queued job: %s" % host.run("cat %s" % pings).stdout)


def test_scheduler_cron_entry(host):
    crontab = host.check_output("crontab -l -u www-data")
    assert "cd %s/current && php artisan schedule:run" % ROOT in crontab
