"""playbooks/deploy.yml on two local hosts (each its own app root, pm2 daemon and port), switched one at a
time: a new host failing after its switch keeps the new release, marked bad, while the other goes back; with
deploy_max_fail_percentage a host failing its health check leaves the healthy one on the new release; without
it, when the second host's release fails, the first, already switched and healthy, is rolled back too. The
outcome line names what each host serves afterwards; two new hosts failing on the second both keep the
new release, marked bad."""

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


def deploy_per_host(site, release_id, version, variants, **more):
    """deploy.yml of release_id with each host's own artifact (a host_vars entry: variants maps host -> fixture
    variant), no candidate check (a bad variant fails after its switch) and a migration that does nothing."""
    for host, variant in variants.items():
        path = os.path.join(site.playbook.workdir, "host_vars", host + ".json")
        with open(path) as handle:
            host_vars = json.load(handle)
        host_vars["node_pm2_artifact"] = site.artifact(version, variant)
        with open(path, "w") as handle:
            json.dump(host_vars, handle)
    return site.run("deploy.yml", deploy_release_id=release_id, node_pm2_candidate_check=False,
                    node_pm2_migrate_command=["true"], **more)


def release(site, host, release_id):
    with open(os.path.join(site.roots[host], ".safeship", "releases.json")) as handle:
        return [r for r in json.load(handle)["releases"] if r["id"] == release_id][0]


def test_a_new_host_a_tolerated_failure_then_a_failing_second_host_take_every_host_back(two_hosts):
    # one sequence on one pair of hosts (each deploy of two hosts costs a minute): r1 on app1 alone; r2 on both,
    # failing on app2, which is new (nothing to go back to); r3 failing on app1 within
    # deploy_max_fail_percentage; r4 failing on app2 with no tolerance, when each host serves its own release
    site = two_hosts
    assert site.deploy("r1", "1.0.0", "good", "SELECT 1", "--limit", "app1").returncode == 0
    assert site.served("app1") == (200, "1.0.0")

    proc = deploy_per_host(site, "r2", "2.0.0", {"app1": "good", "app2": "unhealthy"})
    assert proc.returncode != 0, proc.stdout[-4000:]
    # app1 went back to r1; app2 had nothing to go back to: r2 stays current there, marked bad, and says so
    assert site.served("app1") == (200, "1.0.0") and site.served("app2")[0] == 500
    assert [current_of(site.roots[h]) for h in site.hosts] == ["r1", "r2"]
    assert release(site, "app2", "r2")["status"] == "bad"
    report = site.last_report()
    assert report["status"] == "rolled_back" and report["stranded"] == ["app2"]
    assert report["hosts"]["app1"]["result"] == "rolled back to r1"
    assert report["hosts"]["app2"]["result"] == "failed after the switch, no earlier release to go back to"
    outcome = "Rolled back: app1 serves r1 again; app2 had no earlier release: r2 is current and marked bad there."
    assert report["outcome"] == outcome and outcome in proc.stdout, proc.stdout[-3000:]

    proc = deploy_per_host(site, "r3", "3.0.0", {"app1": "unhealthy", "app2": "good"}, deploy_max_fail_percentage=50)
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert site.served("app1") == (200, "1.0.0") and site.served("app2") == (200, "3.0.0")
    report = site.last_report()
    assert report["status"] == "partial" and report["hosts"]["app2"]["result"] == "serves r3"
    assert report["hosts"]["app1"]["result"] == "switched back by its health check"
    assert not os.path.exists(site.lock_path())

    proc = deploy_per_host(site, "r4", "4.0.0", {"app1": "good", "app2": "unhealthy"})
    assert proc.returncode != 0, proc.stdout[-4000:]
    # app1 switched first (serial) and was healthy, then app2 failed: each serves what it served before
    app1_r4, app2_r4 = (release(site, host, "r4") for host in site.hosts)
    assert app1_r4["switched_at"] <= app2_r4["switched_at"] and app1_r4["status"] == app2_r4["status"] == "bad"
    assert [site.served(h) for h in site.hosts] == [(200, "1.0.0"), (200, "3.0.0")]
    assert [current_of(site.roots[h]) for h in site.hosts] == ["r1", "r3"]
    report = site.last_report()
    assert report["status"] == "rolled_back" and report["stranded"] == []
    assert report["hosts"]["app1"]["result"] == "rolled back to r1"
    assert report["hosts"]["app2"]["result"] == "switched back by its health check"
    assert "500" in report["hosts"]["app2"]["failure"]
    # not "every host serves r1": each host went back to its own release
    outcome = "Rolled back: every host serves the release each served before (app1: r1, app2: r3) again."
    assert report["outcome"] == outcome and outcome in proc.stdout, proc.stdout[-3000:]
    record = site.records()[-1]
    assert record["rolled_back"] is True and sorted(record["extra"]["rolled_back_hosts"]) == ["app1", "app2"]
    assert not os.path.exists(site.lock_path())


def test_two_new_hosts_failing_on_the_second_keep_the_new_release_marked_bad_and_say_so(two_hosts):
    # the first deploy ever: app1 switches and is healthy, then app2 fails; neither has a release to go back to
    site = two_hosts
    proc = deploy_per_host(site, "r1", "1.0.0", {"app1": "good", "app2": "unhealthy"})
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert site.served("app1") == (200, "1.0.0") and site.served("app2")[0] == 500
    assert [current_of(site.roots[h]) for h in site.hosts] == ["r1", "r1"]
    assert [release(site, h, "r1")["status"] for h in site.hosts] == ["bad", "bad"]
    report = site.last_report()
    assert report["status"] == "failed" and report["stranded"] == ["app1", "app2"]
    # app1 serves r1 and is healthy, but r1 is bad: the report does not call it a plain "serves r1"
    assert report["hosts"]["app1"]["result"] == "serves r1, marked bad: no earlier release to go back to"
    assert report["hosts"]["app2"]["result"] == "failed after the switch, no earlier release to go back to"
    outcome = ("Failed after the switch with no earlier release to go back to: r1 is current and marked bad on "
               "app1, app2; deploy the fixed code under a new release id.")
    assert report["outcome"] == outcome and outcome in proc.stdout, proc.stdout[-3000:]
    assert "Rolled back" not in proc.stdout
    assert not os.path.exists(site.lock_path())
