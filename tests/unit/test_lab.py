"""tests/lab/lab.py: lab names, subnets that never collide, the mirror read from apt's sources."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def lab(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("lab", os.path.join(REPO, "tests", "lab", "lab.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "LAB_DIR", str(tmp_path))
    return module


def hold(lab, name, subnet):
    """A running lab as lab.py leaves it on disk."""
    directory = os.path.join(lab.LAB_DIR, "labs", name)
    os.makedirs(directory)
    with open(os.path.join(directory, "subnet"), "w") as f:
        f.write("%d\n" % subnet)


@pytest.mark.parametrize("name", ["", "toolong", "a_b", "a b", "../x"])
def test_a_lab_name_that_cannot_name_an_interface_is_refused(lab, name):
    with pytest.raises(SystemExit, match="lab name"):
        lab.lab_dir(name)


def test_a_lab_keeps_its_subnet_from_run_to_run(lab):
    assert lab.free_subnet("mdeplo") == lab.subnet_of("mdeplo")
    assert 100 <= lab.subnet_of("mdeplo") < 250


def test_two_labs_whose_names_hash_alike_get_different_subnets(lab):
    # mrelea and mlarav (the release and laravel scenarios) hash to the same subnet
    assert lab.subnet_of("mrelea") == lab.subnet_of("mlarav")
    hold(lab, "mrelea", lab.subnet_of("mrelea"))
    assert lab.free_subnet("mlarav") != lab.subnet_of("mrelea")


def test_the_next_free_subnet_wraps_inside_the_range(lab):
    for subnet in range(100, 250):
        if subnet != 101:
            hold(lab, "l%d" % subnet, subnet)
    assert lab.free_subnet("mdeplo") == 101


def test_the_mirror_is_the_one_apt_uses(lab, tmp_path, monkeypatch):
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
                       "Types: deb\nURIs: http://mirror.example/debian-security\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
        sources if path == "/etc/apt/sources.list.d/debian.sources" else path, *a, **k))
    assert lab.mirror() == "http://mirror.example/debian"


def test_scenarios_starting_together_share_one_matching_key_pair(tmp_path):
    """Molecule starts two scenarios at once on a fresh checkout: each `lab.py up` makes sure the lab's SSH key
    exists. Eight at once must leave one pair whose public half is the private key's (a private key of one
    ssh-keygen with the public key of another locks every host out)."""
    env = dict(os.environ, SAFESHIP_LAB_DIR=str(tmp_path))
    code = "import sys; sys.path.insert(0, %r); import lab; lab.ensure_key()" % os.path.join(REPO, "tests", "lab")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for attempt in range(8)]
    assert [proc.wait(timeout=60) for proc in procs] == [0] * 8
    key = tmp_path / "id_ed25519"
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == (tmp_path / "id_ed25519.pub").read_text().split()[:2]
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("id_")) == ["id_ed25519", "id_ed25519.pub"]
