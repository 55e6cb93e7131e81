"""The site after converge: r1 current (rolled back from r5, the git release), r0 cleaned up, r3 kept as bad, shared
paths linked, nginx serving current/public."""

import json

import pytest

ROOT = "/srv/site"


def test_current_is_a_relative_link_to_r1(host):
    current = host.file(ROOT + "/current")
    assert current.is_symlink
    assert current.linked_to == ROOT + "/releases/r1"
    assert host.check_output("readlink %s/current" % ROOT) == "releases/r1"


def test_releases_kept_and_removed(host):
    assert host.file(ROOT + "/releases/r1").is_directory
    assert host.file(ROOT + "/releases/r2").is_directory
    assert host.file(ROOT + "/releases/r3").is_directory
    assert host.file(ROOT + "/releases/r5/.git").is_directory
    assert not host.file(ROOT + "/releases/r0").exists
    assert not host.file(ROOT + "/releases/r4").exists
    assert not host.check_output("find %s -maxdepth 1 -name 'current.*'" % ROOT)


def test_statuses_are_recorded(host):
    record = json.loads(host.file(ROOT + "/.safeship/releases.json").content_string)
    statuses = {r["id"]: r["status"] for r in record["releases"]}
    assert statuses == {"r1": "good", "r2": "good", "r3": "bad", "r5": "rolled_back"}
    r5 = [r for r in record["releases"] if r["id"] == "r5"][0]
    assert r5["git_sha"] == host.check_output("git -C /root/site-src rev-parse HEAD")


@pytest.mark.parametrize("release", ["r1", "r2", "r5"])
def test_shared_paths_are_linked(host, release):
    uploads = host.file("%s/releases/%s/public/uploads" % (ROOT, release))
    assert uploads.is_symlink
    assert host.check_output("readlink %s/releases/%s/public/uploads" % (ROOT, release)) == "../../../shared/public/uploads"
    assert host.file(ROOT + "/shared/public/uploads").is_directory
    env = host.file("%s/releases/%s/.env" % (ROOT, release))
    assert env.is_symlink
    assert env.linked_to == ROOT + "/shared/.env"


def test_owners_and_modes(host):
    release = host.file(ROOT + "/releases/r1")
    assert (release.user, release.group, release.mode) == ("deploy", "www-data", 0o755)
    page = host.file(ROOT + "/releases/r1/public/index.html")
    assert (page.user, page.group, page.mode) == ("deploy", "www-data", 0o644)
    for release in ("r2", "r5"):
        other = host.file(ROOT + "/releases/%s/public/index.html" % release)
        assert (other.user, other.group) == ("deploy", "www-data")
    shared_env = host.file(ROOT + "/shared/.env")
    assert shared_env.is_file
    assert shared_env.mode == 0o640
    assert not shared_env.is_symlink


def test_nginx_is_a_running_enabled_unit(host):
    nginx = host.service("nginx")
    assert nginx.is_running
    assert nginx.is_enabled
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_http_serves_r1(host):
    assert host.check_output("curl -fsS http://127.0.0.1/") == "<p>release r1</p>"


def test_no_release_left_building(host):
    record = json.loads(host.file(ROOT + "/.safeship/releases.json").content_string)
    assert all(r["status"] != "building" for r in record["releases"])
