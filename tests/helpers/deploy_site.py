"""A Node app (tests/fixtures/node_app) on PostgreSQL, deployed with playbooks/deploy.yml on one or more
local hosts: each host its own app root, pm2 daemon and port (host_vars), one shared database whose
migrations are psql commands. Used by the end-to-end deploy tests and bench/rollback.py."""

import json
import os

from helpers.modules import REPO
from helpers.node_apps import PM2, Pm2Home, get_json, make_release
from helpers.playbooks import Playbook
from helpers.ports import free_port
from helpers.servers import PG_BIN

PLAYBOOKS = os.path.join(REPO, "playbooks")
TABLES = ["users", "orders", "billing.invoices"]


def psql_migration(sql):
    """A migration command: psql runs sql in the app's database (PG* variables in node_pm2_migrate_env)."""
    return [os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]


class NodeSite(object):
    def __init__(self, base, server, database, hosts=("localhost",)):
        self.base = str(base)
        self.server = server
        self.database = database
        self.hosts = list(hosts)
        self.playbook = Playbook(os.path.join(self.base, "play"), hosts=self.hosts)
        self.pm2 = {}
        self.ports = {}
        self.roots = {}
        host_vars = os.path.join(self.playbook.workdir, "host_vars")
        os.makedirs(host_vars, exist_ok=True)
        for host in self.hosts:
            self.roots[host] = os.path.join(self.base, "srv", host, "shop")
            self.ports[host] = free_port()
            self.pm2[host] = Pm2Home(os.path.join(self.base, "pm2", host))
            with open(os.path.join(host_vars, host + ".json"), "w") as handle:
                json.dump(dict(node_pm2_app_root=self.roots[host], node_pm2_pm2_home=self.pm2[host].path,
                               node_pm2_apps=[dict(name="shop-web", script="dist/server.js", instances=2,
                                                   port=self.ports[host])]), handle)
        connection = server.conn_params(database)
        self.backup_dest = os.path.join(self.base, "backups")
        pg_env = dict(PGHOST=connection["login_host"], PGPORT=str(connection["login_port"]),
                      PGUSER=connection["login_user"], PGPASSWORD=connection["login_password"], PGDATABASE=database)
        self.vars = dict(
            deploy_stack="node",
            node_pm2_pm2_binary=PM2,
            node_pm2_env=dict(GREETING="hola"),
            node_pm2_migrate_env=pg_env,
            node_pm2_health_delay=0.5,
            node_pm2_health_retries=4,
            backup_connection=connection,
            backup_databases=[dict(database=database)],
            backup_dest=self.backup_dest,
            deploy_critical_tables=TABLES,
        )

    def artifact(self, version, variant="good"):
        path = os.path.join(self.base, "artifacts", "%s-%s" % (version, variant))
        if not os.path.exists(path):
            make_release(path, version, variant)
        return path

    def deploy(self, release_id, version, variant="good", migration="SELECT 1", *options, **more):
        extra = dict(self.vars, deploy_release_id=release_id, node_pm2_artifact=self.artifact(version, variant),
                     node_pm2_migrate_command=psql_migration(migration))
        extra.update(more)
        return self.playbook.run_file(os.path.join(PLAYBOOKS, "deploy.yml"), extra, *options)

    def run(self, name, *options, **more):
        extra = dict(self.vars)
        extra.update(more)
        return self.playbook.run_file(os.path.join(PLAYBOOKS, name), extra, *options)

    def url(self, host="localhost", path="/health"):
        return "http://127.0.0.1:%d%s" % (self.ports[host], path)

    def served(self, host="localhost"):
        status, body = get_json(self.url(host))
        return status, body and body.get("version")

    def records(self, host=None):
        path = os.path.join(self.roots[host or self.hosts[0]], ".safeship", "deploys.jsonl")
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def reports(self, host=None):
        directory = os.path.join(self.roots[host or self.hosts[0]], ".safeship", "reports")
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        return [os.path.join(directory, name) for name in names]

    def last_report(self):
        paths = [p for p in self.reports() if p.endswith(".json")]
        with open(max(paths, key=os.path.getmtime)) as handle:
            return json.load(handle)

    def lock_path(self):
        return os.path.join(self.roots[self.hosts[0]], ".safeship", "deploy.lock")

    def close(self):
        for home in self.pm2.values():
            home.close()
