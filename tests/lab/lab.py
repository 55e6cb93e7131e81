"""Test hosts for Molecule and the multi-host tests: Debian 12 machines booted with real systemd.

    python3 tests/lab/lab.py base                          # build the cached base root filesystem when missing
    python3 tests/lab/lab.py up LAB HOST... [--subnet N]   # boot HOST... of lab LAB, print the instance config
    python3 tests/lab/lab.py down LAB                      # power them off, remove the bridge and their disks
    python3 tests/lab/lab.py status LAB
    python3 tests/lab/lab.py podman-image                  # the same base as a podman image (second driver)

Driver `nspawn` (default): each host is `systemd-nspawn --boot` over an overlay of the shared base (its
own upper directory holds only what differs: address, hostname, host keys, whatever the tests change),
on a bridge of its lab (10.<subnet>.0.0/24, the controller is .1), reached over SSH as root with the
lab's key. Hosts of two labs never share a bridge or a subnet. Driver `podman`: `podman-image` imports
the base as localhost/safeship-lab:12 for Molecule's podman driver (rootful, runc; see CONTAINERS_CONF
below).

The base is built once with debootstrap (minbase) and then apt-get inside it, with the packages the
roles need preinstalled and their services disabled (a scenario's prepare starts what its host runs,
as a team's server setup would); pm2 comes from the controller's .build/node (tools/node), so no host
reaches the npm registry. Everything lives under .build/lab/ of the checkout; `base` rebuilds when the
package list below changes (its sha is stamped beside the base).
"""

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB_DIR = os.environ.get("SAFESHIP_LAB_DIR", os.path.join(ROOT, ".build", "lab"))
BASE = os.path.join(LAB_DIR, "base")
KEY = os.path.join(LAB_DIR, "id_ed25519")
SUITE = "bookworm"
IMAGE = "localhost/safeship-lab:12"

# What debootstrap lays down: enough to boot systemd, run Ansible's Python and take SSH.
CORE_PACKAGES = [
    "python3", "python3-apt", "openssh-server", "iproute2", "procps", "sudo", "ca-certificates",
    "systemd", "systemd-sysv", "dbus", "libpam-systemd",
]
# What the roles and scenarios run on the hosts, installed with apt-get into the base.
ROLE_PACKAGES = [
    "acl", "curl", "git", "rsync", "zstd", "gzip", "sqlite3", "less", "cron", "util-linux",
    "postgresql-15", "postgresql-client-15", "mariadb-server", "mariadb-client",
    "php-cli", "php-fpm", "php-laravel-framework", "php-pgsql", "php-mysql", "php-sqlite3", "composer",
    "nginx", "supervisor", "nodejs",
]
# Installed but not started at boot: the scenarios enable what each host serves.
DISABLED_UNITS = ["postgresql", "mariadb", "nginx", "php8.2-fpm", "supervisor", "cron"]
BASE_STAMP = hashlib.sha256(json.dumps([SUITE, CORE_PACKAGES, ROLE_PACKAGES, DISABLED_UNITS, 2]).encode()).hexdigest()


def say(msg):
    print("==> lab: %s" % msg, file=sys.stderr, flush=True)


def run(argv, check=True, **kwargs):
    done = subprocess.run(argv, check=False, **kwargs)
    if check and done.returncode != 0:
        raise SystemExit("lab: %s failed (rc %d)" % (" ".join(argv[:3]), done.returncode))
    return done


def mirror():
    """The Debian mirror the controller's apt uses (deb.debian.org when none is found)."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            with open(path) as f:
                for line in f:
                    words = line.split()
                    if words[:1] == ["URIs:"] and "security" not in words[1]:
                        return words[1]
                    if words[:1] == ["deb"] and "security" not in line:
                        return next(w for w in words[1:] if "://" in w)
        except (OSError, StopIteration):
            continue
    return "http://deb.debian.org/debian"


def need_root():
    if os.geteuid() != 0:
        raise SystemExit("lab: systemd-nspawn hosts need root (run the tests as root)")
    for tool in ("debootstrap", "systemd-nspawn", "ip", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            raise SystemExit("lab: %s is missing (apt-get install debootstrap systemd-container "
                             "iproute2 openssh-client)" % tool)


def nspawn_run(root, *argv):
    """Run a command inside a root filesystem, not booted (package installs, enabling units)."""
    try:
        return run(["systemd-nspawn", "--quiet", "--keep-unit", "--register=no", "-D", root,
                    "--bind=/var/cache/apt/archives"] + list(argv))
    finally:
        # nspawn leaves its propagation directory behind on a disk /run (not tmpfs here)
        shutil.rmtree("/run/systemd/nspawn/propagate/" + os.path.basename(root), ignore_errors=True)


def build_base(force=False):
    """Build .build/lab/base once (debootstrap + apt-get); later calls return at once."""
    need_root()
    stamp = BASE + ".stamp"
    if not force and os.path.isdir(BASE) and os.path.isfile(stamp) and open(stamp).read().strip() == BASE_STAMP:
        return BASE
    started = time.monotonic()
    tmp = BASE + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(LAB_DIR, exist_ok=True)
    url = mirror()
    say("building the Debian 12 base in %s from %s (once; cached)" % (BASE, url))
    # --cache-dir reuses the .debs the controller's own apt already fetched.
    run(["debootstrap", "--variant=minbase", "--cache-dir=/var/cache/apt/archives",
         "--include=" + ",".join(CORE_PACKAGES), SUITE, tmp, url], stdout=subprocess.DEVNULL)
    with open(os.path.join(tmp, "etc/apt/sources.list"), "w") as f:
        f.write("deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n"
                % (url, SUITE, url, SUITE, SUITE))
    # No service starts while packages install (policy-rc.d), and the base keeps no apt lists.
    policy = os.path.join(tmp, "usr/sbin/policy-rc.d")
    with open(policy, "w") as f:
        f.write("#!/bin/sh\nexit 101\n")
    os.chmod(policy, 0o755)
    nspawn_run(tmp, "apt-get", "update", "-q")
    nspawn_run(tmp, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
               "--no-install-recommends", *ROLE_PACKAGES)
    os.unlink(policy)
    nspawn_run(tmp, "systemctl", "disable", "--quiet", *DISABLED_UNITS)
    nspawn_run(tmp, "systemctl", "enable", "--quiet", "systemd-networkd", "ssh")
    # Units that only slow a container's boot or fail in one.
    nspawn_run(tmp, "systemctl", "mask", "--quiet", "systemd-networkd-wait-online", "apt-daily.timer",
               "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "console-getty")
    install_pm2(tmp)
    for name in os.listdir(os.path.join(tmp, "etc/ssh")):
        if name.startswith("ssh_host_"):
            os.unlink(os.path.join(tmp, "etc/ssh", name))
    with open(os.path.join(tmp, "etc/ssh/sshd_config.d/lab.conf"), "w") as f:
        f.write("PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    shutil.rmtree(os.path.join(tmp, "var/lib/apt/lists"), ignore_errors=True)
    os.makedirs(os.path.join(tmp, "var/lib/apt/lists/partial"), exist_ok=True)
    for machine_id in ("etc/machine-id", "var/lib/dbus/machine-id"):
        path = os.path.join(tmp, machine_id)
        if os.path.lexists(path):
            os.unlink(path)
    open(os.path.join(tmp, "etc/machine-id"), "w").close()
    shutil.rmtree(BASE, ignore_errors=True)
    os.rename(tmp, BASE)
    with open(stamp, "w") as f:
        f.write(BASE_STAMP + "\n")
    say("base built in %.0f s" % (time.monotonic() - started))
    return BASE


def install_pm2(rootfs):
    """pm2 (tools/node, installed by scripts/lib/bootstrap.sh into .build/node) as /usr/local/bin/pm2."""
    source = os.path.join(ROOT, ".build", "node", "node_modules")
    if not os.path.isfile(os.path.join(source, "pm2", "bin", "pm2")):
        raise SystemExit("lab: %s has no pm2: run scripts/test (or ensure_node_tools) first" % source)
    dest = os.path.join(rootfs, "usr/local/lib/safeship-node/node_modules")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest, symlinks=True)
    for tool in ("pm2", "pm2-runtime"):
        link = os.path.join(rootfs, "usr/local/bin", tool)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink("/usr/local/lib/safeship-node/node_modules/pm2/bin/" + tool, link)


def ensure_key():
    """The lab's SSH key pair, made once. Scenarios come up side by side (scripts/molecule runs two at a time), so
    the pair is made under a lock, under a temporary name, and renamed into place public half first: nobody ever
    reads the private key of one ssh-keygen with the public key of another (which locks every host out)."""
    if os.path.isfile(KEY):
        return KEY
    os.makedirs(LAB_DIR, exist_ok=True)
    with open(os.path.join(LAB_DIR, ".key.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(KEY):
            fresh = KEY + ".new"
            for path in (fresh, fresh + ".pub"):
                if os.path.lexists(path):
                    os.unlink(path)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "safeship-lab", "-f", fresh],
                stdin=subprocess.DEVNULL)
            os.rename(fresh + ".pub", KEY + ".pub")
            os.rename(fresh, KEY)
    return KEY


def lab_dir(lab):
    if not lab.replace("-", "").isalnum() or len(lab) > 6:
        raise SystemExit("lab: a lab name is 1-6 letters or digits (%r): host interfaces are named vb-LAB-HOST" % lab)
    return os.path.join(LAB_DIR, "labs", lab)


def subnet_of(lab):
    """A subnet number per lab name (10.<n>.0.0/24), so two labs side by side never collide."""
    return 100 + int(hashlib.sha256(lab.encode()).hexdigest(), 16) % 150


def free_subnet(lab):
    """The lab's own subnet, or the next one no other running lab holds (two names can hash alike)."""
    taken = set()
    labs = os.path.join(LAB_DIR, "labs")
    for other in os.listdir(labs) if os.path.isdir(labs) else []:
        try:
            if other != lab:
                taken.add(int(open(os.path.join(labs, other, "subnet")).read()))
        except (OSError, ValueError):
            continue
    subnet = subnet_of(lab)
    while subnet in taken:
        subnet = 100 + (subnet - 99) % 150
    return subnet


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def prepare_upper(upper, host, address, gateway, hosts_lines, pubkey):
    write(os.path.join(upper, "etc/hostname"), host + "\n")
    write(os.path.join(upper, "etc/hosts"), "127.0.0.1 localhost\n127.0.1.1 %s\n%s\n" % (host, hosts_lines))
    write(os.path.join(upper, "etc/systemd/network/10-lab.network"),
          "[Match]\nName=host0\n\n[Network]\nAddress=%s/24\nGateway=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
          % (address, gateway))
    write(os.path.join(upper, "root/.ssh/authorized_keys"), pubkey, mode=0o600)
    os.chmod(os.path.join(upper, "root/.ssh"), 0o700)
    os.chmod(os.path.join(upper, "root"), 0o700)
    keys = os.path.join(upper, "etc/ssh")
    os.makedirs(keys, exist_ok=True)
    for kind in ("ed25519", "rsa"):
        key = os.path.join(keys, "ssh_host_%s_key" % kind)
        if not os.path.exists(key):
            run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", host, "-f", key])
    machine_id = hashlib.sha256(("safeship-lab-" + host + upper).encode()).hexdigest()[:32]
    write(os.path.join(upper, "etc/machine-id"), machine_id + "\n", mode=0o444)


def bridge_up(bridge, gateway):
    if run(["ip", "link", "show", bridge], check=False, stdout=subprocess.DEVNULL,
           stderr=subprocess.DEVNULL).returncode != 0:
        run(["ip", "link", "add", "name", bridge, "type", "bridge"])
        run(["ip", "addr", "add", gateway + "/24", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def ssh_argv(address):
    return ["ssh", "-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=2", "-o", "BatchMode=yes", "root@" + address]


def up(lab, hosts, subnet=None, timeout=90):
    """Boot the hosts of a lab (fresh disks) and wait until each answers SSH with systemd running."""
    need_root()
    build_base()
    ensure_key()
    directory = lab_dir(lab)
    if os.path.isdir(directory):
        down(lab)
    os.makedirs(os.path.join(LAB_DIR, "labs"), exist_ok=True)
    allocation = open(os.path.join(LAB_DIR, "labs", ".lock"), "w")
    fcntl.flock(allocation, fcntl.LOCK_EX)  # two labs coming up together never pick one subnet
    subnet = subnet or free_subnet(lab)
    gateway = "10.%d.0.1" % subnet
    bridge = "sl-%s" % lab
    addresses = {host: "10.%d.0.%d" % (subnet, 10 + i) for i, host in enumerate(hosts)}
    hosts_lines = "".join("%s %s\n" % (addresses[h], h) for h in hosts)
    pubkey = open(KEY + ".pub").read()
    os.makedirs(directory)
    write(os.path.join(directory, "subnet"), "%d\n" % subnet)
    allocation.close()
    bridge_up(bridge, gateway)
    instances = []
    for host in hosts:
        machine = "%s-%s" % (lab, host)
        if len("vb-" + machine) > 15:
            raise SystemExit("lab: host name %r is too long for lab %r (vb-%s must fit 15 characters)"
                             % (host, lab, machine))
        upper = os.path.join(directory, host, "upper")
        os.makedirs(upper)
        prepare_upper(upper, host, addresses[host], gateway, hosts_lines, pubkey)
        log = open(os.path.join(directory, host, "console.log"), "w")
        proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "--keep-unit", "--register=no", "--boot", "--console=passive",
             "-M", machine, "-D", BASE, "--overlay=%s:%s:/" % (BASE, upper), "--network-bridge=" + bridge,
             "--capability=CAP_NET_ADMIN"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        write(os.path.join(directory, host, "pid"), "%d\n" % proc.pid)
        instances.append({"instance": host, "address": addresses[host], "user": "root", "port": 22,
                          "identity_file": KEY, "machine": machine, "pid": proc.pid})
    deadline = time.monotonic() + timeout
    for instance in instances:
        while True:
            done = run(ssh_argv(instance["address"]) + ["systemctl is-active ssh systemd-networkd >/dev/null"],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit("lab: %s (%s) did not answer SSH within %d s; console log in %s"
                                 % (instance["instance"], instance["address"], timeout, directory))
            time.sleep(0.3)
    write(os.path.join(directory, "instances.json"), json.dumps(instances, indent=2) + "\n")
    write(os.path.join(directory, "bridge"), bridge + "\n")
    return instances


def down(lab, timeout=30):
    """Power the lab's hosts off (SIGTERM to nspawn: a clean systemd shutdown), then remove it all."""
    directory = lab_dir(lab)
    if not os.path.isdir(directory):
        return
    pids = []
    for host in sorted(os.listdir(directory)):
        pidfile = os.path.join(directory, host, "pid")
        if os.path.isfile(pidfile):
            pid = int(open(pidfile).read())
            try:
                os.kill(pid, signal.SIGTERM)
                pids.append((host, pid))
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for host, pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
        shutil.rmtree("/run/systemd/nspawn/propagate/%s-%s" % (lab, host), ignore_errors=True)
    run(["ip", "link", "delete", "sl-%s" % lab], check=False, stderr=subprocess.DEVNULL)
    shutil.rmtree(directory, ignore_errors=True)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie left by an exited parent counts as gone
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def status(lab):
    path = os.path.join(lab_dir(lab), "instances.json")
    if not os.path.isfile(path):
        return []
    return [dict(i, running=alive(i["pid"])) for i in json.load(open(path))]


def podman_image():
    """Import the base into podman as localhost/safeship-lab:12 (for Molecule's podman driver)."""
    build_base()
    if not shutil.which("podman"):
        raise SystemExit("lab: podman is missing (apt-get install podman runc)")
    env = podman_env()
    if run(["podman", "image", "exists", IMAGE], check=False, env=env).returncode == 0:
        labels = subprocess.run(["podman", "image", "inspect", "--format", "{{index .Labels \"safeship.base\"}}",
                                 IMAGE], env=env, stdout=subprocess.PIPE, text=True, check=False).stdout.strip()
        if labels == BASE_STAMP:
            return IMAGE
    say("importing the base into podman as %s" % IMAGE)
    tar = subprocess.Popen(["tar", "-C", BASE, "-c", "."], stdout=subprocess.PIPE)
    run(["podman", "import", "--change", "LABEL safeship.base=" + BASE_STAMP, "--change", "CMD /sbin/init",
         "-", IMAGE], stdin=tar.stdout, env=env, stdout=subprocess.DEVNULL)
    tar.wait()
    return IMAGE


def podman_env():
    """CONTAINERS_CONF for this kind of sandbox: runc (crun fails on hybrid cgroups), ulimits it can set."""
    conf = os.path.join(LAB_DIR, "containers.conf")
    if not os.path.isfile(conf):
        write(conf, '[containers]\ndefault_ulimits = ["nofile=1024:20000", "nproc=32768:32768"]\n\n'
                    '[engine]\nruntime = "runc"\n')
    return dict(os.environ, CONTAINERS_CONF=os.environ.get("CONTAINERS_CONF", conf))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base", help="build the base root filesystem when missing")
    base.add_argument("--force", action="store_true", help="rebuild it even when cached")
    start = sub.add_parser("up", help="boot hosts (fresh disks) and print their instance config as JSON")
    start.add_argument("lab")
    start.add_argument("hosts", nargs="+")
    start.add_argument("--subnet", type=int, help="10.N.0.0/24 (default: derived from the lab name)")
    stop = sub.add_parser("down", help="power off and remove a lab")
    stop.add_argument("lab")
    show = sub.add_parser("status", help="the lab's hosts as JSON")
    show.add_argument("lab")
    sub.add_parser("podman-image", help="import the base into podman")
    args = parser.parse_args(argv)
    if args.command == "base":
        print(build_base(force=args.force))
    elif args.command == "up":
        print(json.dumps(up(args.lab, args.hosts, args.subnet), indent=2))
    elif args.command == "down":
        down(args.lab)
    elif args.command == "status":
        print(json.dumps(status(args.lab), indent=2))
    elif args.command == "podman-image":
        print(podman_image())
    return 0


if __name__ == "__main__":
    sys.exit(main())
