"""Private nginx, PHP-FPM and supervisord instances for the Laravel web-level tests.

Each one runs as root from its own directory (config, pid file, logs, sockets, temp dirs), on a free
port or a unix socket there: nothing global is read or written (no /etc/init.d service, no
/run/php socket, no /etc/nginx/sites-enabled, no /etc/supervisor), so two pytest workers never
collide. They are context managers: start-up waits until the instance answers, and leaving the
block stops it and kills every process it started, even after a failure.

    with web_tmpdir() as base:                               # www-data can reach it (not tmp_path)
        with PhpFpm(base) as fpm, Nginx(base, port, fpm.socket) as nginx, Supervisord(base) as sup:
            write_site(nginx.sites_dir, "app", app_root + "/current", port, fpm.socket)
            nginx.reload()
            http_get(nginx.url + "/up")

Nginx.test_argv / reload_argv and Supervisord.ctl_argv are the argv a role is given
(laravel_nginx_test_command, laravel_nginx_reload_command, laravel_supervisorctl)."""

import contextlib
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlsplit

PHP_FPM = "/usr/sbin/php-fpm8.2"
NGINX = "/usr/sbin/nginx"
SUPERVISORD = "/usr/bin/supervisord"
SUPERVISORCTL = "/usr/bin/supervisorctl"
# read-only includes a site may name relative to the nginx conf dir (as on Debian)
NGINX_INCLUDES = ("fastcgi_params", "fastcgi.conf", "mime.types", "snippets/fastcgi-php.conf")


class StackError(RuntimeError):
    pass


def require(path):
    if not os.path.exists(path):
        raise StackError("%s is missing: run ./scripts/test, which installs php-fpm, nginx and supervisor" % path)
    return path


def wait_until(check, timeout, what, process=None, log=None):
    """Poll check() until it is true; fail naming `what` (and the log's tail) after timeout or when
    process has exited."""
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            if check():
                return
        except Exception as exc:  # not ready yet
            last = exc
        if process is not None and process.poll() is not None:
            raise StackError("%s: the process exited with %s\n%s" % (what, process.returncode, tail(log)))
        if time.time() > deadline:
            raise StackError("%s: not ready after %ss (%s)\n%s" % (what, timeout, last, tail(log)))
        time.sleep(0.05)


def tail(path, size=3000):
    if not path:
        return ""
    try:
        with open(path, errors="replace") as handle:
            return handle.read()[-size:]
    except OSError:
        return ""


@contextlib.contextmanager
def web_tmpdir(prefix="safeship-web-"):
    """A fresh directory the web user can traverse (pytest's tmp_path sits in a 0700 directory of
    root's), removed afterwards. Everything the stack and the app serve goes in there."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def chown_tree(path, user):
    """Give path (recursively) to user and its primary group."""
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            os.lchown(name, entry.pw_uid, entry.pw_gid)


# ---- processes ----------------------------------------------------------------------------------
def _stat(pid):
    """(ppid, start time) of a live pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])


def children(pid):
    """The live pids whose parent is pid."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat and stat[0] == pid:
                found.append(int(name))
    return sorted(found)


def descendants(pid):
    """{pid: start time} of pid and everything below it."""
    found = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        stat = _stat(current)
        if stat is None or current in found:
            continue
        found[current] = stat[1]
        todo.extend(children(current))
    return found


def _kill_all(processes):
    """SIGKILL every pid of {pid: start time} that is still the same process."""
    for pid, started in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def unix_socket_answers(path):
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
        sock.settimeout(1)
        sock.connect(path)
    return True


def port_answers(port, host="127.0.0.1"):
    with contextlib.closing(socket.create_connection((host, port), timeout=1)):
        return True


class _Daemon(object):
    """One foreground master process started by us; stop() ends it and all it started."""

    name = "daemon"
    stop_signal = signal.SIGTERM
    stop_wait = 15

    def __init__(self, base, subdir):
        self.dir = os.path.join(str(base), subdir)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.log = os.path.join(self.dir, "output.log")
        self.process = None
        self.seen = {}  # every process seen under the master: {pid: start time}

    def _launch(self, argv):
        with open(self.log, "ab") as log:
            # own session: a Ctrl-C in a terminal does not reach it; stop() ends it
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                            start_new_session=True, cwd=self.dir)

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def remember(self):
        if self.process is not None and self.process.poll() is None:
            self.seen.update(descendants(self.process.pid))

    def workers(self):
        """The pids of the master's direct children."""
        return children(self.process.pid)

    def stop(self):
        if self.process is None:
            return
        self.remember()
        if self.process.poll() is None:
            try:
                self.process.send_signal(self.stop_signal)
                self.process.wait(self.stop_wait)
            except subprocess.TimeoutExpired:
                pass
        self.remember()
        _kill_all(self.seen)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        return False


# ---- PHP-FPM ------------------------------------------------------------------------------------
class PhpFpm(_Daemon):
    """php-fpm8.2 -F -y <conf>: one pool on a unix socket, children run as user."""

    name = "php-fpm"
    stop_signal = signal.SIGQUIT  # graceful: running requests finish

    def __init__(self, base, user="www-data", group=None, pm="static", children=4, subdir="php-fpm",
                 settings=None):
        super(PhpFpm, self).__init__(base, subdir)
        self.user = user
        self.group = group or user
        self.pm = pm
        self.children = children
        self.settings = dict(settings or {})  # extra pool lines, e.g. {"php_admin_value[opcache.enable]": "0"}
        self.conf = os.path.join(self.dir, "php-fpm.conf")
        self.socket = os.path.join(self.dir, "php-fpm.sock")
        self.error_log = os.path.join(self.dir, "error.log")
        self.pid_file = os.path.join(self.dir, "php-fpm.pid")

    def config(self):
        pool = [
            "[app]",
            "user = %s" % self.user,
            "group = %s" % self.group,
            "listen = %s" % self.socket,
            "listen.owner = %s" % self.user,
            "listen.group = %s" % self.group,
            "listen.mode = 0660",
            "listen.backlog = 511",
            "pm = %s" % self.pm,
            "pm.max_children = %d" % self.children,
            "catch_workers_output = yes",
            "php_admin_value[error_log] = %s" % os.path.join(self.dir, "php-error.log"),
            "php_admin_flag[log_errors] = on",
        ]
        if self.pm == "dynamic":
            pool += ["pm.start_servers = %d" % max(1, self.children // 2), "pm.min_spare_servers = 1",
                     "pm.max_spare_servers = %d" % self.children]
        pool += ["%s = %s" % item for item in sorted(self.settings.items())]
        return "\n".join([
            "[global]",
            "pid = %s" % self.pid_file,
            "error_log = %s" % self.error_log,
            "daemonize = no",
            "process_control_timeout = 10s",
            "",
        ] + pool) + "\n"

    def start(self):
        require(PHP_FPM)
        with open(self.conf, "w") as handle:
            handle.write(self.config())
        self._launch([PHP_FPM, "-F", "-y", self.conf])
        wait_until(lambda: unix_socket_answers(self.socket) and len(self.workers()) >= 1, 15,
                   "php-fpm (%s)" % self.conf, self.process, self.error_log)
        self.remember()
        return self

    def reload(self, timeout=20):
        """SIGUSR2: the master re-reads its config and replaces every child; wait for new ones."""
        before = set(self.workers())
        self.process.send_signal(signal.SIGUSR2)
        wait_until(lambda: unix_socket_answers(self.socket) and self.workers() and not before & set(self.workers()),
                   timeout, "php-fpm reload", self.process, self.error_log)
        self.remember()


# ---- nginx --------------------------------------------------------------------------------------
class Nginx(_Daemon):
    """nginx -p <dir> -c <dir>/nginx.conf (daemon off, master + workers as user) including
    <sites_dir>/*.conf; listens wherever the sites say (the test gives them `port`)."""

    name = "nginx"
    stop_signal = signal.SIGQUIT  # graceful shutdown

    def __init__(self, base, port, fpm_socket=None, sites_dir=None, user="www-data", workers=2, subdir="nginx"):
        super(Nginx, self).__init__(base, subdir)
        self.port = port
        self.fpm_socket = fpm_socket
        self.user = user
        self.worker_processes = workers
        self.prefix = self.dir + "/"
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.sites_dir = str(sites_dir) if sites_dir else os.path.join(self.dir, "sites")
        self.error_log = os.path.join(self.dir, "error.log")
        self.access_log = os.path.join(self.dir, "access.log")
        self.pid_file = os.path.join(self.dir, "nginx.pid")
        self.url = "http://127.0.0.1:%d" % port

    @property
    def base_argv(self):
        return [NGINX, "-p", self.prefix, "-c", self.conf, "-e", self.error_log]

    @property
    def test_argv(self):
        return self.base_argv + ["-t"]

    @property
    def reload_argv(self):
        return self.base_argv + ["-s", "reload"]

    def config(self):
        temp = os.path.join(self.dir, "temp")
        return "\n".join([
            "user %s;" % self.user,
            "daemon off;",
            "master_process on;",
            "worker_processes %d;" % self.worker_processes,
            "pid %s;" % self.pid_file,
            "error_log %s warn;" % self.error_log,
            "events { worker_connections 1024; }",
            "http {",
            "    include mime.types;",
            "    default_type application/octet-stream;",
            "    access_log %s;" % self.access_log,
            "    sendfile on;",
            "    keepalive_timeout 5;",
        ] + ["    %s_temp_path %s;" % (kind, os.path.join(temp, kind))
             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")] + [
            "    include %s/*.conf;" % self.sites_dir,
            "}",
        ]) + "\n"

    def start(self):
        require(NGINX)
        os.makedirs(self.sites_dir, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "temp"), exist_ok=True)
        for name in NGINX_INCLUDES:
            target = os.path.join(self.dir, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join("/etc/nginx", name), target)
        with open(self.conf, "w") as handle:
            handle.write(self.config())
        self.test()
        self._launch(self.base_argv)
        wait_until(lambda: self._master_pid() == self.process.pid and len(self.workers()) == self.worker_processes,
                   15, "nginx (%s)" % self.conf, self.process, self.error_log)
        self.remember()
        return self

    def _master_pid(self):
        with open(self.pid_file) as handle:
            return int(handle.read().strip())

    def test(self):
        """nginx -t on the config as it is now; raises with nginx's message when it is invalid."""
        done = subprocess.run(self.test_argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
        if done.returncode:
            raise StackError("nginx -t failed for %s:\n%s" % (self.conf, done.stdout))
        return done.stdout

    def reload(self, timeout=20):
        """nginx -s reload; waits until the old workers are gone and new ones run."""
        before = set(self.workers())
        done = subprocess.run(self.reload_argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
        if done.returncode:
            raise StackError("nginx -s reload failed:\n%s" % done.stdout)
        self.wait_reloaded(before, timeout)

    def wait_reloaded(self, before, timeout=20):
        wait_until(lambda: len(set(self.workers()) - before) == self.worker_processes and not before & set(self.workers()),
                   timeout, "nginx reload", self.process, self.error_log)
        self.remember()


def site_conf(name, root, listen, fpm_socket, server_name="_"):
    """A Laravel site as the laravel role's template writes it: root <app_root>/current/public and
    $realpath_root for SCRIPT_FILENAME/DOCUMENT_ROOT, so each request resolves `current` once."""
    return """\
server {
    listen %(listen)s;
    server_name %(server_name)s;
    root %(root)s/public;
    index index.php;
    charset utf-8;

    location / {
        try_files $uri $uri/ /index.php?$query_string;
    }

    location ~ \\.php$ {
        fastcgi_pass unix:%(socket)s;
        fastcgi_index index.php;
        include fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;
        fastcgi_param DOCUMENT_ROOT $realpath_root;
    }

    location ~ /\\.(?!well-known).* {
        deny all;
    }
    # site %(name)s
}
""" % dict(listen=listen, server_name=server_name, root=str(root).rstrip("/"), socket=fpm_socket, name=name)


def write_site(sites_dir, name, root, listen, fpm_socket):
    path = os.path.join(str(sites_dir), name + ".conf")
    with open(path, "w") as handle:
        handle.write(site_conf(name, root, listen, fpm_socket))
    return path


# ---- supervisord --------------------------------------------------------------------------------
class Supervisord(_Daemon):
    """supervisord -n -c <conf> with [include] <conf_dir>/*.conf and a unix socket in its dir."""

    name = "supervisord"
    stop_signal = signal.SIGTERM
    stop_wait = 30

    def __init__(self, base, subdir="supervisor"):
        super(Supervisord, self).__init__(base, subdir)
        self.conf = os.path.join(self.dir, "supervisord.conf")
        self.conf_dir = os.path.join(self.dir, "conf.d")
        self.socket = os.path.join(self.dir, "supervisor.sock")
        self.logfile = os.path.join(self.dir, "supervisord.log")
        self.child_logs = os.path.join(self.dir, "logs")

    @property
    def ctl_argv(self):
        return [SUPERVISORCTL, "-c", self.conf]

    def config(self):
        return "\n".join([
            "[unix_http_server]",
            "file = %s" % self.socket,
            "chmod = 0700",
            "",
            "[supervisord]",
            "user = root",
            "logfile = %s" % self.logfile,
            "pidfile = %s" % os.path.join(self.dir, "supervisord.pid"),
            "childlogdir = %s" % self.child_logs,
            "nodaemon = true",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            "serverurl = unix://%s" % self.socket,
            "",
            "[include]",
            "files = %s/*.conf" % self.conf_dir,
        ]) + "\n"

    def start(self):
        require(SUPERVISORD)
        os.makedirs(self.conf_dir, exist_ok=True)
        os.makedirs(self.child_logs, exist_ok=True)
        with open(self.conf, "w") as handle:
            handle.write(self.config())
        self._launch([SUPERVISORD, "-n", "-c", self.conf])
        wait_until(lambda: self.ctl("pid").stdout.strip() == str(self.process.pid), 20,
                   "supervisord (%s)" % self.conf, self.process, self.logfile)
        return self

    def ctl(self, *args, **kwargs):
        """supervisorctl -c <conf> ARGS -> CompletedProcess (stdout and stderr merged)."""
        done = subprocess.run(self.ctl_argv + [str(arg) for arg in args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True,
                              timeout=kwargs.get("timeout", 60), check=False)
        self.remember()
        return done

    def status(self):
        """{process name: (state, pid or None)} from `supervisorctl status`."""
        states = {}
        for line in self.ctl("status").stdout.splitlines():
            words = line.split()
            if len(words) < 2 or words[1] not in ("RUNNING", "STARTING", "STOPPED", "STOPPING", "BACKOFF",
                                                  "EXITED", "FATAL", "UNKNOWN"):
                continue
            pid = None
            if words[1] == "RUNNING" and len(words) > 3 and words[2] == "pid":
                pid = int(words[3].rstrip(","))
            states[words[0]] = (words[1], pid)
        return states

    def pids(self, program):
        """The pids of the program's running processes (a group `program:program_00`... or one)."""
        return sorted(pid for name, (state, pid) in self.status().items()
                      if pid and (name == program or name.split(":")[0] == program))


# ---- HTTP ---------------------------------------------------------------------------------------
def http_get(url, headers=None, timeout=10):
    """GET without following redirects -> (status, {lower-case header: value}, body text)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request("GET", path, headers=dict(headers or {}, Connection="close"))
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, dict((k.lower(), v) for k, v in response.getheaders()), body
    finally:
        conn.close()
