"""The Laravel and Prisma fixture apps deployed with playbooks/deploy.yml on localhost, the way
helpers/deploy_site.NodeSite deploys the Node one (whose record, report, lock and run() helpers they
inherit: those only need .roots, .hosts, .vars and .playbook).

LaravelSite: tests/fixtures/laravel_app on a PostgreSQL central database, its app root in a directory
the web user can reach (helpers.web_stack.web_tmpdir), laravel_nginx_site false and the health URL an
HTTP front that follows `current` per request (helpers.laravel_role.CurrentServer), artisan as www-data.
Releases are test_laravel_role's artifacts (2.0.0 and 3.0.0 bring one central migration each).

PrismaSite: tests/fixtures/prisma_app (Prisma 6.19) under a real pm2 on a PostgreSQL database, releases
from helpers.prisma_app with their node_modules copied in (no npm ci per deploy); the prisma role runs the
release's own CLI (generate, the gate, migrate deploy)."""

import json
import os

from helpers import prisma_app
from helpers.deploy_site import PLAYBOOKS, NodeSite
from helpers.laravel_app import db_env
from helpers.laravel_role import CurrentServer
from helpers.node_apps import Pm2Home, get_json
from helpers.playbooks import Playbook
from helpers.ports import free_port


class LaravelSite(NodeSite):
    """One local host; `base` must be reachable by www-data (web_tmpdir()), `tmp` is pytest's tmp_path.

    artifact(version) -> a release directory (the laravel role's tests make them); deploy(release_id,
    version, **more) runs playbooks/deploy.yml with deploy_stack=laravel."""

    def __init__(self, tmp, base, server, central, artifact, hosts=("localhost",)):
        self.base = str(base)
        self.server = server
        self.central = self.database = central
        self.hosts = list(hosts)
        self.playbook = Playbook(os.path.join(str(tmp), "play"), hosts=self.hosts)
        self.roots = {host: os.path.join(self.base, "srv", host, "shop") for host in self.hosts}
        self.front = CurrentServer(self.roots[self.hosts[0]], os.path.join(str(tmp), "front"))
        self._artifact = artifact
        self.backup_dest = os.path.join(str(tmp), "backups")
        self.vars = dict(
            deploy_stack="laravel",
            laravel_app_root=self.roots[self.hosts[0]],
            laravel_env=db_env(server, central, APP_NAME="shop"),
            laravel_nginx_site=False,
            laravel_scheduler=False,
            laravel_health_url=self.front.url + "/up",
            laravel_health_delay=0.3,
            laravel_health_retries=4,
            backup_connection=server.conn_params(central),
            backup_databases=[dict(database=central)],
            backup_dest=self.backup_dest,
        )

    @property
    def root(self):
        return self.roots[self.hosts[0]]

    def release(self, release_id):
        return os.path.join(self.root, "releases", release_id)

    def artifact(self, version, variant="good"):
        return self._artifact(self.base, version)

    def deploy(self, release_id, version, *options, **more):
        extra = dict(self.vars, deploy_release_id=release_id, laravel_artifact=self.artifact(version))
        extra.update(more)
        return self.playbook.run_file(os.path.join(PLAYBOOKS, "deploy.yml"), extra, *options)

    def served(self, host=None):
        status, body = self.front.get("/up")
        return status, json.loads(body).get("version") if status == 200 else None

    def down_file(self, host=None):
        """Laravel's maintenance flag (storage is shared, so one file for every release)."""
        return os.path.join(self.roots[host or self.hosts[0]], "shared", "storage", "framework", "down")

    def close(self):
        self.front.close()


class PrismaSite(NodeSite):
    """The Prisma notes API on one local host: its own pm2 daemon and port, one PostgreSQL database.

    deploy(release_id, version, variant="good", **more) runs playbooks/deploy.yml with deploy_stack=prisma;
    version N.x.y is the fixture's release N (its first N migrations)."""

    def __init__(self, tmp, server, database, hosts=("localhost",)):
        self.base = str(tmp)
        self.server = server
        self.database = database
        self.hosts = list(hosts)
        self.url = prisma_app.database_url(server, database)
        self.playbook = Playbook(os.path.join(self.base, "play"), hosts=self.hosts)
        host = self.hosts[0]
        self.roots = {host: os.path.join(self.base, "srv", host, "notes")}
        self.ports = {host: free_port()}
        self.pm2 = {host: Pm2Home(os.path.join(self.base, "pm2", host))}
        self.backup_dest = os.path.join(self.base, "backups")
        self.vars = dict(
            deploy_stack="prisma",
            node_pm2_app_root=self.roots[host],
            node_pm2_pm2_home=self.pm2[host].path,
            node_pm2_pm2_binary=self.pm2[host].binary,
            node_pm2_apps=[dict(name="notes-web", script="src/server.js", instances=2, port=self.ports[host],
                                health_json={"status": "ok"})],
            node_pm2_env=dict(prisma_app.QUIET_ENV, DATABASE_URL=self.url),
            # the release comes with its node_modules (copied on the host): no npm ci per deploy
            node_pm2_artifact_remote=True,
            node_pm2_npm_ci=False,
            node_pm2_health_delay=0.5,
            node_pm2_health_retries=4,
            backup_connection=server.conn_params(database),
            backup_databases=[dict(database=database)],
            backup_dest=self.backup_dest,
        )

    @property
    def secrets(self):
        return (self.server.password, self.url)

    def artifact(self, version, variant="good"):
        path = os.path.join(self.base, "artifacts", "%s-%s" % (version, variant))
        if not os.path.exists(path):
            prisma_app.make_prisma_release(path, version, variant)
        return path

    def deploy(self, release_id, version, variant="good", *options, **more):
        extra = dict(self.vars, deploy_release_id=release_id, node_pm2_artifact=self.artifact(version, variant))
        extra.update(more)
        return self.playbook.run_file(os.path.join(PLAYBOOKS, "deploy.yml"), extra, *options)

    def served(self, host=None):
        """(status, version, number of notes) of /health."""
        status, body = get_json("http://127.0.0.1:%d/health" % self.ports[host or self.hosts[0]])
        return status, body and body.get("version"), body and body.get("notes")

    def migrations(self):
        return prisma_app.migration_rows(self.server, self.database)
