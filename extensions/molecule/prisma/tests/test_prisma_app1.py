"""app1: release r1 (2.0.0) current, online under pm2 (daemon in pm2-root.service), answering /health through
Prisma Client from db1's database."""

import json

testinfra_hosts = ["ansible://app1"]

ROOT = "/srv/notes"


def test_current_points_at_r1(host):
    current = host.file(ROOT + "/current")
    assert current.is_symlink
    assert current.linked_to == ROOT + "/releases/r1"


def test_prisma_client_generated_in_the_release(host):
    assert host.file(ROOT + "/releases/r1/node_modules/.prisma/client/index.js").exists


def test_env_holds_the_database_url_privately(host):
    env = host.file(ROOT + "/shared/.env")
    assert env.mode & 0o007 == 0
    assert env.contains("^DATABASE_URL=.*@db1:5432/notes")


def test_pm2_unit_and_apps_online(host):
    unit = host.service("pm2-root")
    assert unit.is_running
    assert unit.is_enabled
    apps = json.loads(host.check_output("pm2 jlist"))
    assert sorted((app["name"], app["pm2_env"]["status"]) for app in apps) == [("notes-web", "online")] * 2


def test_port_3000_listening(host):
    assert host.socket("tcp://127.0.0.1:3000").is_listening


def test_health_through_prisma(host):
    body = json.loads(host.check_output("curl -fsS --max-time 5 http://127.0.0.1:3000/health"))
    assert body["status"] == "ok"
    assert body["version"] == "2.0.0"
    assert body["notes"] == 0


def test_db1_takes_the_password_over_the_network_and_refuses_a_wrong_one(host):
    psql = "PGPASSWORD=%s psql -h db1 -U notes -d notes -At -c %s"
    password = host.ansible.get_variables()["notes_db_password"]
    assert host.check_output(psql, password, "SELECT current_user") == "notes"
    assert host.run(psql, "wrong", "SELECT 1").rc != 0
