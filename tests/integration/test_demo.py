"""README command 1, scripts/demo, for real: v1 of the sample notes app deployed on localhost under pm2,
v2 switched to, failing its health check and rolled back by itself; the note written under v1 is still
there; the report says rolled back. Without Node.js (and no root to install it), the demo says what is
missing and how to install it, and changes nothing."""

import json
import os
import subprocess

from helpers.modules import REPO
from helpers.node_apps import PM2, get_json
from helpers.ports import free_port

DEMO = os.path.join(REPO, "scripts", "demo")
DEMO_DIR = os.path.join(REPO, ".build", "demo")


def test_the_demo_deploys_v1_then_rolls_v2_back():
    port = free_port()
    env = dict(os.environ, DEMO_PORT=str(port), ANSIBLE_NOCOLOR="1")
    try:
        proc = subprocess.run([DEMO], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=900, check=False)
        print(proc.stdout[-6000:])
        assert proc.returncode == 0
        assert "rolled back automatically" in proc.stdout and "PAYMENTS_URL is not set" in proc.stdout
        status, body = get_json("http://127.0.0.1:%d/health" % port)
        assert status == 200 and body["version"] == "1.0.0" and body["notes"] == 1
        reports = os.path.join(DEMO_DIR, "srv", "notes", ".safeship", "reports")
        v2 = sorted(name for name in os.listdir(reports) if name.startswith("deploy-v2-") and name.endswith(".json"))
        with open(os.path.join(reports, v2[-1])) as handle:
            report = json.load(handle)
        assert report["status"] == "rolled_back" and report["previous"] == "v1"
        assert report["backups"] and report["row_counts"][0]["after"] == {"notes": 1}
        assert "# Deploy report: notes v2 - ROLLED_BACK" in proc.stdout
    finally:
        subprocess.run([PM2, "kill"], env=dict(os.environ, PM2_HOME=os.path.join(DEMO_DIR, "pm2")),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def test_without_node_the_demo_says_how_to_install_it(tmp_path):
    # a PATH with what the script needs but no node and npm, and an `id` that says "not root"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "python3", "dirname", "cat", "printf", "sha256sum", "cut", "rm", "mkdir", "ln"):
        for directory in ("/usr/bin", "/bin"):
            if os.path.exists(os.path.join(directory, tool)):
                os.symlink(os.path.join(directory, tool), str(bin_dir / tool))
                break
    fake_id = bin_dir / "id"
    fake_id.write_text("#!/bin/sh\necho 1000\n")
    fake_id.chmod(0o755)
    before = sorted(os.listdir(os.path.join(REPO, ".build"))) if os.path.isdir(os.path.join(REPO, ".build")) else []
    proc = subprocess.run(["/bin/bash", DEMO], cwd=REPO, env=dict(PATH=str(bin_dir), HOME=str(tmp_path)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60,
                          check=False)
    assert proc.returncode == 1, proc.stdout
    assert "Node.js (node)" in proc.stdout and "npm" in proc.stdout
    assert "apt-get install -y python3 python3-venv nodejs npm" in proc.stdout and "nodejs.org" in proc.stdout
    after = sorted(os.listdir(os.path.join(REPO, ".build"))) if os.path.isdir(os.path.join(REPO, ".build")) else []
    assert after == before
