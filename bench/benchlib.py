"""What the benchmark scripts share: errors, logging, machine facts, the JSON report, a main() that turns
Ctrl-C and SIGTERM into a clean stop (each Bench cleans up in its own finally), the stopping of processes
left behind, small report helpers (median, table, PASS/MISS), and playbook runs of a given checkout with the
task times callback (bench/callback_plugins/bench_task_times.py) and the profile made from it."""

from __future__ import print_function

import collections
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
CALLBACKS = os.path.join(ROOT, "bench", "callback_plugins")
CALLBACK = "bench_task_times"


class BenchError(Exception):
    pass


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def utc_stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def first_line(argv):
    """The first line a command prints (a version), or '?'."""
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False).stdout
        return out.decode("utf-8", "replace").strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def machine():
    """CPU count and model, memory, kernel and Python of this machine."""
    model = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kb = int(handle.readline().split()[1])
    return dict(cpus=os.cpu_count(), cpu_model=model, mem_gib=round(mem_kb / 1024.0 / 1024, 1),
                kernel=platform.release(), python=platform.python_version())


def write_json(path, data):
    """The report as JSON to path, or to stdout for '-'; nothing without a path."""
    if not path:
        return
    text = json.dumps(data, indent=2)
    if path == "-":
        print(text)
        return
    with open(path, "w") as handle:
        handle.write(text + "\n")
    log("JSON written to %s" % path)


def clean_up(workdir, closers, stopped):
    """Close what is still running, then remove workdir. closers: (name, callable) pairs; a failing one is
    logged and the rest still run. A second Ctrl-C meanwhile is ignored so nothing is left behind."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for name, close in closers:
            try:
                close()
            except Exception as exc:  # keep cleaning up
                log("stopping %s failed: %s" % (name, exc))
        if workdir:
            # a module process of a killed ansible-playbook may still be writing in it: stop it, try again
            for attempt in range(3):
                shutil.rmtree(workdir, ignore_errors=True)
                if not os.path.exists(workdir):
                    break
                time.sleep(1 + attempt)
                stop_leftovers()
            log("%s, %s %s" % (stopped, workdir, "still exists" if os.path.exists(workdir) else "removed"))
    finally:
        signal.signal(signal.SIGINT, previous)


def run(bench_main):
    """Run bench_main(); exit status 130 after Ctrl-C or SIGTERM, 1 after a BenchError."""
    def terminate(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        bench_main()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as exc:
        log("error: %s" % exc)
        return 1
    return 0


# ---- report helpers ----------------------------------------------------------------------------
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec="%.2f", none="-"):
    return none if value is None else spec % value


def ratio(value, reference):
    return value / reference if value is not None and reference else None


def verdict(value, target):
    return "-" if value is None else ("PASS" if value <= target else "MISS")


def table(header, rows):
    """Lines of a plain text table, columns as wide as their widest cell."""
    rows = [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return lines


def pm2_version(pm2):
    """From pm2's package.json: running `pm2 --version` would start a daemon in ~/.pm2."""
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(pm2))), "package.json")) as handle:
            return json.load(handle)["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def flip(app_root, release_id):
    """Point app_root/current at releases/<id> atomically (a new relative link renamed over it), as a runbook
    should (`ln -sfn` is not atomic)."""
    tmp = os.path.join(app_root, ".current.bench-tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", release_id), tmp)
    os.rename(tmp, os.path.join(app_root, "current"))


# ---- processes left behind ------------------------------------------------------------------
# A Ctrl-C kills ansible-playbook (subprocess.run), but its workers run in sessions of their own and would
# finish their task (a pm2 reload...) with nobody waiting. As a child subreaper this process inherits them,
# and every other orphan below it (the pm2 and postgres daemons too), so the cleanup can stop them by pid.
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    try:
        import ctypes  # pylint: disable=import-outside-toplevel
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def own_children():
    """[(pid, pgid)] of this process's live children (from /proc)."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.append((int(name), int(fields[2])))
    return found


def reap():
    while True:
        try:
            pid, dummy = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_leftovers():
    """Stop whatever still runs below this process (a child leading its own group: the whole group), then reap.
    Rounds go on while there are children: a killed worker's own children (a module) become ours then."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL, signal.SIGKILL, signal.SIGKILL):
        children = own_children()
        if not children:
            break
        log("stopping %d process(es) left behind: %s" % (len(children), " ".join(str(pid) for pid, dummy in children)))
        for pid, pgid in children:
            try:
                if pgid == pid:
                    os.killpg(pgid, sig)
                else:
                    os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + 5
        while own_children() and time.time() < deadline:
            reap()
            time.sleep(0.1)
    reap()


# ---- the code measured ---------------------------------------------------------------------------
def git_state(root):
    """The commit of a checkout and its files under roles/, playbooks/ and plugins/ that differ from it."""
    def git(*args):
        proc = subprocess.run(["git", "-C", root] + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True, check=False)
        return proc.stdout.strip()
    return dict(path=root, commit=git("rev-parse", "--short", "HEAD") or "?",
                modified=[line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
                          if line[3:].startswith(("roles/", "playbooks/", "plugins/"))])


class Checkout(object):
    """A checkout of the collection whose playbooks and roles a bench runs (this one, or --baseline's). Ansible
    finds it through a collection path made in the bench's work directory: nothing is written into it."""

    def __init__(self, root, label, workdir):
        self.root = os.path.realpath(root)
        self.label = label
        if not os.path.isfile(os.path.join(self.root, "playbooks", "deploy.yml")):
            raise BenchError("%s is not a checkout of safeship.webapp (no playbooks/deploy.yml)" % root)
        self.collections = os.path.join(workdir, "collections-" + label)
        link = os.path.join(self.collections, "ansible_collections", "safeship", "webapp")
        os.makedirs(os.path.dirname(link))
        os.symlink(self.root, link)
        self.state = git_state(self.root)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def describe(self):
        changed = (", modified: " + " ".join(self.state["modified"])) if self.state["modified"] else ""
        return "%s (%s at %s%s)" % (self.label, self.root, self.state["commit"], changed)


def checkout_options(parser, baseline_help):
    parser.add_argument("--code", default=ROOT, metavar="PATH",
                        help="the checkout whose playbooks, roles and inventories are measured (default: this one)")
    parser.add_argument("--baseline", metavar="PATH", help=baseline_help)


def begin(prefix):
    """Become the subreaper of what the bench starts, make its work directory: (workdir, UTC start, load average)."""
    become_subreaper()
    workdir = tempfile.mkdtemp(prefix=prefix)
    log("work directory %s" % workdir)
    return workdir, utc_stamp(), os.getloadavg()[0]


def checkouts(args, workdir):
    """The Checkout of --code and, with --baseline, the baseline's (None without)."""
    code = Checkout(args.code, "code", workdir)
    baseline = Checkout(args.baseline, "baseline", workdir) if args.baseline else None
    log("code measured: %s" % describe_code(code, baseline))
    return code, baseline


def describe_code(code, baseline):
    return code.describe() + (("; baseline: " + baseline.describe()) if baseline else "")


def ansible_version():
    """'ansible-playbook [core 2.19.x]' (the warnings it may print first go to stderr, left out)."""
    try:
        out = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, check=False).stdout
    except OSError:
        return "?"
    return next((line.strip() for line in out.splitlines() if line.startswith("ansible-playbook")), "?")


def versions(pm2):
    """Tool versions for the report."""
    return dict(node=first_line(["node", "--version"]), pm2=pm2_version(pm2), ansible=ansible_version())


def write_inventory(path, hosts, group="app"):
    """An inventory of local hosts run by this checkout's venv Python."""
    lines = ["[%s]" % group] + ["%s ansible_connection=local ansible_python_interpreter=%s"
                                % (host, os.path.join(VENV_BIN, "python")) for host in hosts]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


PlaybookRun = collections.namedtuple("PlaybookRun", "proc seconds times cpu log")


class Playbooks(object):
    """Runs ansible-playbook (this checkout's .venv, so only the collection's code differs between checkouts)
    with the task times callback on. Each run's output goes to workdir/NNN-label.log; path_prepend: directories
    put first on PATH (the bench's command shims)."""

    def __init__(self, workdir, path_prepend=()):
        self.workdir = workdir
        self.path_prepend = list(path_prepend)
        self.count = 0
        os.makedirs(workdir, exist_ok=True)

    def env(self, checkout, times_path):
        env = dict(os.environ)
        env.pop("ANSIBLE_CONFIG", None)
        enabled = [c for c in env.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c.strip() and c != CALLBACK]
        env.update(ANSIBLE_COLLECTIONS_PATH=checkout.collections, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCAL_TEMP=os.path.join(self.workdir, "tmp"),
                   ANSIBLE_HOME=os.path.join(self.workdir, "ansible-home"),
                   ANSIBLE_CALLBACK_PLUGINS=os.pathsep.join(
                       [CALLBACKS] + [p for p in env.get("ANSIBLE_CALLBACK_PLUGINS", "").split(os.pathsep) if p]),
                   ANSIBLE_CALLBACKS_ENABLED=",".join(enabled + [CALLBACK]), BENCH_TASK_TIMES=times_path,
                   PATH=os.pathsep.join(self.path_prepend + [VENV_BIN, env.get("PATH", "")]))
        return env

    def run(self, checkout, playbook, inventory, extra_vars, label="run", options=()):
        """Run playbook (a path, or a name under the checkout's playbooks/) with extra_vars (a 0600 JSON file);
        a PlaybookRun: the finished process, wall seconds, TaskTimes and CPU seconds of the whole process tree."""
        self.count += 1
        stem = os.path.join(self.workdir, "%03d-%s" % (self.count, label.replace(" ", "_").replace("/", "_")))
        if not os.path.isabs(playbook):
            playbook = checkout.path("playbooks", playbook)
        fd = os.open(stem + ".vars.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(extra_vars, handle)
        argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, playbook, "-e", "@" + stem + ".vars.json"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        proc = subprocess.run(argv + list(options), cwd=self.workdir, env=self.env(checkout, stem + ".times.jsonl"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=900,
                              check=False)
        seconds = time.time() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(stem + ".log", "w") as handle:
            handle.write(proc.stdout)
        if proc.returncode == 99:  # ansible-playbook's "User interrupted execution": a Ctrl-C reached it first
            raise KeyboardInterrupt("ansible-playbook was interrupted")
        times = TaskTimes(stem + ".times.jsonl", started)
        # CPU of ansible-playbook, its workers and the modules they ran (all waited for); not the pm2 daemons
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return PlaybookRun(proc, seconds, times, cpu, stem + ".log")


def must(done, what):
    """done (a PlaybookRun or a CompletedProcess), or a BenchError with its output's tail."""
    proc = getattr(done, "proc", done)
    if proc.returncode != 0:
        raise BenchError("%s failed (rc %d):\n%s" % (what, proc.returncode, proc.stdout[-4000:]))
    return done


# ---- the task times callback ------------------------------------------------------------------
# Actions that run on the controller only (no module process on the host).
CONTROLLER_ACTIONS = {"set_fact", "include_tasks", "include_role", "import_tasks", "import_role", "assert", "meta",
                      "debug", "fail", "set_stats", "validate_argument_spec", "include_vars", "add_host", "group_by",
                      "pause"}


class TaskTimes(object):
    """The JSON lines of bench_task_times for one playbook run (started: when the bench started it)."""

    def __init__(self, path, started=None):
        self.events = []
        if os.path.exists(path):
            with open(path) as handle:
                self.events = [json.loads(line) for line in handle if line.strip()]
        marks = [e for e in self.events if e["ev"] in ("task", "play", "end")]
        hosts = collections.defaultdict(list)
        for event in self.events:
            if event["ev"] == "host":
                hosts[event["uuid"]].append(event)
        self.tasks = []
        self.plays = []
        for index, event in enumerate(marks):
            following = marks[index + 1]["t"] if index + 1 < len(marks) else event["t"]
            if event["ev"] == "task":
                self.tasks.append(dict(event, wall=following - event["t"], hosts=hosts.get(event["uuid"], [])))
            elif event["ev"] == "play":
                following = next((m["t"] for m in marks[index + 1:] if m["ev"] in ("play", "end")), event["t"])
                self.plays.append(dict(name=event["name"], wall=following - event["t"]))
        self.first = self.events[0]["t"] if self.events else None
        self.last = self.events[-1]["t"] if self.events else None
        self.start_at = started

    def steps(self, names, after=None):
        """[(label, end time of the task's first host result, status)] for names in order, each after the previous."""
        found = []
        since = after or 0
        for label, needle in names:
            hit = next((h for t in self.tasks if needle in t["name"] for h in t["hosts"]
                        if h["end"] >= since and h["status"] != "skipped"), None)
            if hit is None:
                continue
            found.append((label, hit["end"], hit["status"]))
            since = hit["end"]
        return found

    def changed(self):
        return sorted({t["name"] for t in self.tasks for h in t["hosts"] if h["status"] == "changed"})

    def statuses(self):
        return dict(collections.Counter(h["status"] for t in self.tasks for h in t["hosts"]))


def short_action(action):
    return action.rsplit(".", 1)[-1]


def task_file(path):
    """'.../ansible_collections/safeship/webapp/roles/deploy/tasks/hook.yml:5' -> 'roles/deploy/tasks/hook.yml', the same
    for any checkout; a playbook's own tasks: 'playbooks/deploy.yml'."""
    path = (path or "?").rsplit(":", 1)[0]
    marker = os.sep.join(("ansible_collections", "safeship", "webapp", ""))
    if marker in path:
        return path.split(marker, 1)[1]
    parts = path.split(os.sep)
    return os.sep.join(parts[-2:]) if len(parts) > 1 and parts[-2] == "playbooks" else path


def task_key(task):
    """A task by its file and line, whichever checkout ran it (a task in a file included twice is one key)."""
    line = task["path"].rsplit(":", 1)[1] if task.get("path") and ":" in task["path"] else task["name"]
    return "%s:%s" % (task_file(task.get("path")), line)


def play_label(name):
    """'Deploy | Switch - a few hosts at a time' -> 'switch'."""
    return name.split("|", 1)[-1].split(" - ", 1)[0].strip().lower()


def profile(runs):
    """Medians over several TaskTimes of the same setup: per play, per kind of task (controller-only or module), per
    task (file:line; a task in a file included several times sums its runs), and the time no host was running
    anything."""
    per_task = collections.defaultdict(list)
    seen = collections.defaultdict(list)
    names = {}
    kinds = collections.defaultdict(list)
    executions = collections.defaultdict(list)
    plays = collections.defaultdict(list)
    idle = []
    host_results = []
    startup = []
    counts = []
    for times in runs:
        if not times.tasks:
            continue
        if times.start_at is not None:
            startup.append(times.first - times.start_at)
        counts.append(len(times.tasks))
        by_kind = collections.Counter()
        runs_of_kind = collections.Counter()
        by_task = collections.Counter()
        times_seen = collections.Counter()
        quiet = 0.0
        for task in times.tasks:
            key = task_key(task)
            action = short_action(task["action"])
            names[key] = (task["name"], action)
            by_task[key] += task["wall"]
            times_seen[key] += 1
            kind = "controller" if action in CONTROLLER_ACTIONS else "module"
            by_kind[kind] += task["wall"]
            runs_of_kind[kind] += 1
            busy = max([h["end"] - h["t"] for h in task["hosts"]] or [0.0])
            quiet += max(task["wall"] - busy, 0.0)
        for key, wall in by_task.items():
            per_task[key].append(wall)
            seen[key].append(times_seen[key])
        for kind in ("controller", "module"):
            kinds[kind].append(by_kind[kind])
            executions[kind].append(runs_of_kind[kind])
        per_play = collections.Counter()
        for play in times.plays:  # with serial, one line per batch: summed
            per_play[play["name"]] += play["wall"]
        for name, wall in per_play.items():
            plays[name].append(wall)
        host_results.append(sum(len(task["hosts"]) for task in times.tasks))
        idle.append(quiet)
    return dict(startup=median(startup), tasks=median(counts), no_host_busy=median(idle), host_tasks=median(host_results),
                plays={k: median(v) for k, v in plays.items()},
                kinds={k: dict(wall=median(v), tasks=median(executions[k]),
                               per_task=median(v) / median(executions[k]) if median(executions[k]) else 0.0)
                       for k, v in kinds.items()},
                per_task={k: dict(name=names[k][0], action=names[k][1], wall=median(v), times=median(seen[k]))
                          for k, v in per_task.items()})


def kind_cell(kind):
    """'7.5 s = 150 x 0.050 s' for a kind of task in the profile."""
    if not kind:
        return "-"
    return "%.1f s = %d x %.3f s" % (kind["wall"], kind["tasks"], kind["per_task"])


def profile_summary(prof):
    """One line: task count, start-up, controller-only and module tasks, the plays."""
    if not prof or not prof.get("tasks"):
        return "no task times"
    return "%d tasks; start-up %.2f s; controller-only tasks %s; module tasks %s; no host busy %.1f s; plays: %s" % (
        prof["tasks"], prof["startup"] or 0.0, kind_cell(prof["kinds"].get("controller")),
        kind_cell(prof["kinds"].get("module")), prof["no_host_busy"] or 0.0,
        ", ".join("%s %.1f" % (play_label(k), v) for k, v in prof["plays"].items() if v >= 0.05))


def where_time_goes(entries, top):
    """Lines of three tables for [(label, profile)]: wall seconds by task file, by action and for the costliest tasks
    (medians of the runs; a task included several times sums its runs), a column per profile, sorted by the first;
    runs: how many times the first profile's runs started them."""
    entries = [(label, prof) for label, prof in entries if prof and prof.get("per_task")]
    if not entries:
        return []
    tasks = {}
    for dummy, prof in reversed(entries):
        tasks.update(prof["per_task"])
    lines = []
    for title, column, key_of in (("by task file", "file", lambda k, v: task_file(k)),
                                  ("by action", "action", lambda k, v: v["action"]),
                                  ("costliest tasks", "task", lambda k, v: k)):
        walls = collections.OrderedDict()
        runs = collections.Counter()
        for index, (dummy, prof) in enumerate(entries):
            for k, v in prof["per_task"].items():
                group = key_of(k, v)
                walls.setdefault(group, [0.0] * len(entries))[index] += v["wall"]
                if index == 0:
                    runs[group] += v["times"] or 0
        header = ("task", "file:line", "action") if column == "task" else (column,)
        rows = sorted(walls.items(), key=lambda kv: -kv[1][0])[:top]
        lines += ["", "%s (wall s, median of the runs; top %d):" % (title, top), ""]
        lines += table(header + tuple(label for label, dummy in entries) + ("runs",),
                       [((tasks[k]["name"].replace("safeship.webapp.", "")[:72], k, tasks[k]["action"]) if column == "task"
                         else (k,)) + tuple("%.2f" % w for w in ws) + (runs[k] or "-",) for k, ws in rows])
    return lines
