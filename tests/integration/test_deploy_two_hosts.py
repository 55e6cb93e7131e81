"""playbooks/deploy.yml on two local hosts (each its own app root, pm2 daemon and port), switched one at a
time: with deploy_max_fail_percentage a host failing its health check leaves the healthy one on the new
release; without it, when the second host's release fails, the first, already switched and healthy, is rolled
back too."""

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


def test_max_fail_percentage_keeps_the_healthy_host_then_a_failing_second_host_takes_both_back(two_hosts):
    # one sequence on one pair of hosts (each deploy of two hosts costs a minute): r1 everywhere, r2 failing on
    # app1 within deploy_max_fail_percentage, r3 failing on app2 with no tolerance
    site = two_hosts
    assert site.deploy("r1", "1.0.0").returncode == 0
    assert [site.served(h) for h in site.hosts] == [(200, "1.0.0")] * 2

    per_host_artifacts(site, "2.0.0", {"app1": "unhealthy", "app2": "good"})
    proc = site.run("deploy.yml", deploy_release_id="r2", node_pm2_candidate_check=False,
                    node_pm2_migrate_command=["true"], deploy_max_fail_percentage=50)
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert site.served("app1") == (200, "1.0.0") and site.served("app2") == (200, "2.0.0")
    report = site.last_report()
    assert report["status"] == "partial" and report["hosts"]["app2"]["result"] == "serves r2"
    assert not os.path.exists(site.lock_path())

    per_host_artifacts(site, "3.0.0", {"app1": "good", "app2": "unhealthy"})
    proc = site.run("deploy.yml", deploy_release_id="r3", node_pm2_candidate_check=False,
                    node_pm2_migrate_command=["true"])
    assert proc.returncode != 0, proc.stdout[-4000:]
    # app1 switched first (serial) and was healthy, then app2 failed: each serves what it served before
    app1_r3, app2_r3 = (release(site, host, "r3") for host in site.hosts)
    assert app1_r3["switched_at"] <= app2_r3["switched_at"] and app1_r3["status"] == app2_r3["status"] == "bad"
    assert [site.served(h) for h in site.hosts] == [(200, "1.0.0"), (200, "2.0.0")]
    assert [current_of(site.roots[h]) for h in site.hosts] == ["r1", "r2"]
    report = site.last_report()
    assert report["status"] == "rolled_back"
    assert report["hosts"]["app1"]["result"] == "rolled back to r1"
    assert report["hosts"]["app2"]["result"] == "switched back by its health check"
    assert "500" in report["hosts"]["app2"]["failure"]
    record = site.records()[-1]
    assert record["rolled_back"] is True and sorted(record["extra"]["rolled_back_hosts"]) == ["app1", "app2"]
    assert not os.path.exists(site.lock_path())
