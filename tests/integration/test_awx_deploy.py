"""The deploy, rollback and restore job templates as AWX runs them (ansible-runner from a private data
dir, survey-style answers as strings): a check job prints the plan and changes nothing; a deploy whose
release fails its health check ends 'failed' and rolls back by itself; the workflow's rollback node,
handed the same deploy_release_id, then changes nothing (no second rollback); the rollback job template
goes back further; a restore job without the confirmation in production fails and restores nothing."""

import json
import os

import pytest

from helpers.deploy_site import NodeSite, psql_migration
from helpers.node_apps import get_json
from helpers.releases import current_of, tree_snapshot
from helpers.runner import failed_events, localhost_inventory, run_with_runner

from . import seed


@pytest.fixture()
def job(tmp_path, postgres_server, unique_name):
    seed.seed_postgres(postgres_server, unique_name, users=10, orders=20, invoices=5)
    site = NodeSite(tmp_path / "site", postgres_server, unique_name)
    with open(os.path.join(site.playbook.workdir, "host_vars", "localhost.json")) as handle:
        site.vars.update(json.load(handle))
    site.vars["node_pm2_migrate_command"] = psql_migration("SELECT 1")
    inventory = localhost_inventory("app")

    def run(playbook, cmdline="", **answers):
        return run_with_runner(tmp_path, "playbooks/" + playbook, dict(site.vars, **answers), inventory,
                               cmdline=cmdline)
    run.site = site
    yield run
    site.close()


def test_deploy_rollback_and_restore_job_templates(job):
    site = job.site
    root = site.roots["localhost"]

    # the "Check" job type: the plan, nothing written
    status, rc, stdout, events = job("deploy.yml", "--check", deploy_release_id="r1",
                                     node_pm2_artifact=site.artifact("1.0.0"))
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    assert "Deploy plan (check mode" in stdout and not os.path.exists(root)

    status, rc, stdout, events = job("deploy.yml", deploy_release_id="r1", node_pm2_artifact=site.artifact("1.0.0"),
                                     deploy_backup="true")
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    status, rc, stdout, events = job("deploy.yml", deploy_release_id="r2", node_pm2_artifact=site.artifact("2.0.0"))
    assert (status, rc) == ("successful", 0), stdout[-4000:]

    # a bad release: the job fails, and the release that served before serves again
    status, rc, stdout, events = job("deploy.yml", deploy_release_id="r3", deploy_restore_db_on_failure="false",
                                     node_pm2_artifact=site.artifact("3.0.0", "unhealthy"),
                                     node_pm2_candidate_check=False)
    assert status == "failed" and rc != 0
    assert ("Deploy | Finish | The deploy failed", "localhost") in [failure[:2] for failure in failed_events(events)]
    assert current_of(root) == "r2" and get_json(site.url())[1]["version"] == "2.0.0"

    # the workflow's failure edge: rollback.yml with the deploy's answers changes nothing now
    snapshot = tree_snapshot(os.path.join(root, "releases"))
    records = open(os.path.join(root, ".safeship", "deploys.jsonl")).read()
    status, rc, stdout, events = job("rollback.yml", deploy_release_id="r3", rollback_restore_db="false", confirm="")
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    assert current_of(root) == "r2" and tree_snapshot(os.path.join(root, "releases")) == snapshot
    # nothing rolled back, so no rollback in the deploy record either
    assert open(os.path.join(root, ".safeship", "deploys.jsonl")).read() == records

    # the rollback job template on its own: back to r1
    status, rc, stdout, events = job("rollback.yml", rollback_to="", rollback_restore_db="false", confirm="")
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    assert current_of(root) == "r1" and get_json(site.url())[1]["version"] == "1.0.0"

    # the restore job template in production without the confirmation: failed, nothing restored
    site.server.execute("DELETE FROM billing.invoices", site.database)
    status, rc, stdout, events = job("restore.yml", restore_names=site.database, restore_backup="", confirm="")
    assert status == "failed" and "confirm with -e confirm=%s" % site.database in stdout
    assert site.server.execute("SELECT count(*) FROM billing.invoices", site.database) == [(0,)]
    status, rc, stdout, events = job("restore.yml", restore_names=site.database, restore_backup="",
                                     confirm=site.database)
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    assert site.server.execute("SELECT count(*) FROM billing.invoices", site.database) == [(5,)]
