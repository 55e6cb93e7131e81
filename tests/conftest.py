"""Fixtures shared by the unit and integration tests.

The servers are session-scoped (one PostgreSQL 15 and one MariaDB per pytest worker, started on
first use and removed at the end); every test gets its own database names through unique_name."""

import os
import sys
import uuid

import pytest

from helpers.modules import ModuleRunner, ensure_collection_path
from helpers.servers import MariadbServer, PostgresServer
from helpers.system import PsSampler, small_tmpfs as _small_tmpfs

# unit tests import the collection as ansible_collections.safeship.webapp, as Ansible does
sys.path.insert(0, ensure_collection_path())


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mariadb_server():
    server = MariadbServer()
    yield server
    server.close()


@pytest.fixture()
def unique_name():
    return "t_" + uuid.uuid4().hex[:8]


@pytest.fixture()
def prisma_db(postgres_server, unique_name):
    """(name, DATABASE_URL) of an empty PostgreSQL database for the Prisma fixture app, dropped after the test."""
    from helpers import prisma_app
    postgres_server.create_database(unique_name)
    yield unique_name, prisma_app.database_url(postgres_server, unique_name)
    postgres_server.drop_database(unique_name)


@pytest.fixture(scope="session")
def module_workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("modules"))


@pytest.fixture()
def run_module(module_workdir):
    """run_module(name, args, check_mode=False) -> the module's result; run_module.start(...) runs it
    in the background."""
    return ModuleRunner(module_workdir)


@pytest.fixture()
def ps_sampler():
    return PsSampler


@pytest.fixture()
def small_tmpfs():
    return _small_tmpfs


# The test files that take minutes, longest first (--durations of a full run). They are collected first, so
# `pytest -n 2 --dist loadfile --no-loadscope-reorder` (scripts/test), which hands files to the workers in
# collection order, starts them first and the short files fill in around them: the two workers end together
# instead of one waiting for the other's long file at the end. (xdist's default order, most tests first,
# starts the one-test files - the longest - last.)
LONGEST_FILES = (
    "test_node_pm2_zero_downtime.py", "test_deploy_playbook.py", "test_node_pm2_role.py", "test_prisma_role.py",
    "test_laravel_role.py", "test_deploy_two_hosts.py", "test_awx_deploy.py", "test_deploy_laravel.py",
    "test_pm2_app.py", "test_deploy_hooks.py", "test_demo.py", "test_laravel_web.py", "test_deploy_prisma.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))


_SKIPPED = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """A skipped test is a failed run: CI must not go green because a dependency was missing."""
    if _SKIPPED and exitstatus == 0:
        session.exitstatus = 1
        print("\nskipped tests fail the run:\n  " + "\n  ".join(_SKIPPED))


@pytest.fixture()
def pm2_home(tmp_path):
    """A private PM2_HOME with its own daemon, killed (with its apps) after the test."""
    from helpers.node_apps import Pm2Home
    home = Pm2Home(str(tmp_path / "pm2"))
    yield home
    home.close()


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Built releases of the Node fixture app, shared by a test module's tests."""
    from helpers.pm2_checks import Releases
    return Releases(str(tmp_path_factory.mktemp("releases")))


@pytest.fixture()
def task(run_module, pm2_home):
    """Runs pm2_app against the test's pm2_home."""
    from helpers.pm2_checks import Pm2Task
    return Pm2Task(run_module, pm2_home)
