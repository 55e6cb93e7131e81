"""app1 after the rollback from r2 to r1: the pm2 daemon a running, enabled systemd unit, `current`
pointing at r1, the shop-web instance online and really running in r1, the saved process list
resurrecting them from `current`, HTTP answering r1's version, and the release record and the deploy
record saying so."""

import json

ROOT = "/srv/shop"


def shop_web(host):
    return sorted((p for p in json.loads(host.check_output("pm2 jlist")) if p["name"] == "shop-web"),
                  key=lambda p: p["pm_id"])


def test_pm2_is_a_running_enabled_unit(host):
    pm2 = host.service("pm2-root")
    assert pm2.is_running
    assert pm2.is_enabled


def test_the_app_listens_on_3000(host):
    assert host.socket("tcp://127.0.0.1:3000").is_listening


def test_current_points_at_r1(host):
    current = host.file(ROOT + "/current")
    assert current.is_symlink
    assert current.linked_to == ROOT + "/releases/r1"
    assert host.check_output("readlink %s/current", ROOT) == "releases/r1"


def test_the_instance_is_online_running_in_r1(host):
    processes = shop_web(host)
    assert len(processes) == 1
    for p in processes:
        assert p["pm2_env"]["status"] == "online"
        assert p["pm2_env"]["pm_cwd"] == ROOT + "/current"
        assert host.check_output("readlink -e /proc/%s/cwd", str(p["pid"])) == ROOT + "/releases/r1"


def test_pm2_saved_the_apps_it_resurrects(host):
    saved = [p for p in json.loads(host.file("/root/.pm2/dump.pm2").content_string) if p["name"] == "shop-web"]
    assert len(saved) == 1
    assert {p["pm_cwd"] for p in saved} == {ROOT + "/current"}


def test_http_answers_version_1(host):
    health = json.loads(host.check_output("curl -fsS http://127.0.0.1:3000/health"))
    assert (health["status"], health["version"]) == ("ok", "1.0.0")
    assert health["pid"] in [p["pid"] for p in shop_web(host)]
    assert json.loads(host.check_output("curl -fsS http://127.0.0.1:3000/"))["version"] == "1.0.0"


def test_the_release_record_marks_r2_rolled_back(host):
    releases = json.loads(host.file(ROOT + "/.safeship/releases.json").content_string)
    status = {r["id"]: (r["status"], r["version"]) for r in releases["releases"]}
    assert status == {"r1": ("good", "1.0.0"), "r2": ("rolled_back", "2.0.0")}
    assert releases["switches"][-1]["from"] == "r2" and releases["switches"][-1]["to"] == "r1"


def test_the_deploy_record_has_the_rollback(host):
    lines = host.file(ROOT + "/.safeship/deploys.jsonl").content_string.splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    rollbacks = [r for r in records if r.get("extra", {}).get("action") == "rollback" and r["extra"]["to"] == "r1"]
    assert len(rollbacks) == 1
    assert (rollbacks[0]["rolled_back"], rollbacks[0]["version"], rollbacks[0]["extra"]["from"]) == (True, "1.0.0", "r2")
