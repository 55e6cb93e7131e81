"""playbooks/deploy.yml on two local hosts (each its own app root, pm2 daemon and port), switched one at a
time: when the second host's release fails its health check, the first, already switched and healthy, is
rolled back too; with deploy_max_fail_percentage the healthy host keeps the new release."""

import json
import os

import pytest

from helpers.deploy_site import NodeSite
from helpers.releases import current_of

from . import seed


@pytest.fixture()
def two_hosts(tmp_path, postgres_server, unique_name):
    seed.seed_postgres(postgres_server, unique_name, users=10, orders=20, invoices=5)
    site = NodeSite(tmp_path, postgres_server, unique_name, hosts=("app1", "app2"))
    yield site
    site.close()


def per_host_artifacts(site, version, variants):
    """Give each host its own artifact (a host_vars entry): variants maps host -> fixture variant."""
    for host, variant in variants.items():
        path = os.path.join(site.playbook.workdir, "host_vars", host + ".json")
        with open(path) as handle:
            host_vars = json.load(handle)
        host_vars["node_pm2_artifact"] = site.artifact(version, variant)
        with open(path, "w") as handle:
            json.dump(host_vars, handle)


def release(site, host, release_id):
    with open(os.path.join(site.roots[host], ".safeship", "releases.json")) as handle:
        return [r for r in json.load(handle)["releases"] if r["id"] == release_id][0]


def test_the_second_host_fails_and_both_go_back(two_hosts):
    site = two_hosts
    assert site.deploy("r1", "1.0.0").returncode == 0
    assert [site.served(h) for h in site.hosts] == [(200, "1.0.0")] * 2

    per_host_artifacts(site, "2.0.0", {"app1": "good", "app2": "unhealthy"})
    proc = site.run("deploy.yml", deploy_release_id="r2", node_pm2_candidate_check=False,
                    node_pm2_migrate_command=["true"])
    assert proc.returncode != 0, proc.stdout[-4000:]
    # app1 switched first (serial) and was healthy, then app2 failed: both serve r1 again
    app1_r2, app2_r2 = (release(site, host, "r2") for host in site.hosts)
    assert app1_r2["switched_at"] <= app2_r2["switched_at"] and app1_r2["status"] == app2_r2["status"] == "bad"
    assert [site.served(h) for h in site.hosts] == [(200, "1.0.0")] * 2
    assert [current_of(site.roots[h]) for h in site.hosts] == ["r1", "r1"]
    report = site.last_report()
    assert report["status"] == "rolled_back"
    assert report["hosts"]["app1"]["result"] == "rolled back to r1"
    assert report["hosts"]["app2"]["result"] == "switched back by its health check"
    assert "500" in report["hosts"]["app2"]["failure"]
    record = site.records()[-1]
    assert record["rolled_back"] is True and sorted(record["extra"]["rolled_back_hosts"]) == ["app1", "app2"]
    assert not os.path.exists(site.lock_path())


def test_within_max_fail_percentage_the_healthy_host_keeps_the_release(two_hosts):
    site = two_hosts
    assert site.deploy("r1", "1.0.0").returncode == 0
    per_host_artifacts(site, "2.0.0", {"app1": "unhealthy", "app2": "good"})
    proc = site.run("deploy.yml", deploy_release_id="r2", node_pm2_candidate_check=False,
                    node_pm2_migrate_command=["true"], deploy_max_fail_percentage=50)
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert site.served("app1") == (200, "1.0.0") and site.served("app2") == (200, "2.0.0")
    report = site.last_report()
    assert report["status"] == "partial" and report["hosts"]["app2"]["result"] == "serves r2"
    assert not os.path.exists(site.lock_path())
