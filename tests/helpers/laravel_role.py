"""Helpers for the laravel role's tests: an HTTP server that follows the `current` symlink on every
request as nginx + PHP-FPM with $realpath_root do (apps live in helpers.web_stack.web_tmpdir(): pytest's
tmp_path is private to root, so www-data could not reach an application there).

CurrentServer(app_root) answers
on a free port; each request resolves <app_root>/current and is forwarded to a `php -S` of that
release's public/, started on first use as the web user (so no root-owned file lands in storage)."""

import http.server
import os
import socketserver
import subprocess
import threading
import time
import urllib.error
import urllib.request

from helpers.ports import free_port


class _Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class CurrentServer(object):
    """An HTTP front on 127.0.0.1:port serving whatever release <app_root>/current points to."""

    def __init__(self, app_root, logdir, user="www-data"):
        self.app_root = str(app_root)
        self.logdir = str(logdir)
        self.user = user
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self._backends = {}
        self._lock = threading.Lock()
        os.makedirs(self.logdir, exist_ok=True)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                try:
                    status, headers, body = server.forward(self.path)
                except Exception as exc:  # noqa: BLE001 - reported as a 502, as a proxy would
                    status, headers, body = 502, {}, ("no backend: %s" % exc).encode()
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() in ("content-type", "retry-after"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = _Threaded(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _backend(self, release):
        with self._lock:
            if release in self._backends:
                return self._backends[release][1]
            port = free_port()
            log = open(os.path.join(self.logdir, "php-%s.log" % os.path.basename(release)), "ab")
            argv = ["php", "-S", "127.0.0.1:%d" % port, "-t", "public", "public/index.php"]
            if os.geteuid() == 0 and self.user:
                argv = ["runuser", "-u", self.user, "--"] + argv
            process = subprocess.Popen(argv, cwd=release, stdout=log, stderr=log, start_new_session=True)
            log.close()
            url = "http://127.0.0.1:%d" % port
            deadline = time.time() + 10
            while True:
                try:
                    urllib.request.urlopen(url + "/favicon.ico", timeout=1).close()
                    break
                except urllib.error.HTTPError:
                    break
                except OSError:
                    if process.poll() is not None or time.time() > deadline:
                        raise RuntimeError("php -S for %s did not start" % release)
                    time.sleep(0.05)
            self._backends[release] = (process, url)
            return url

    def forward(self, path):
        release = os.path.realpath(os.path.join(self.app_root, "current"))
        url = self._backend(release) + path
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def get(self, path="/up"):
        """(status, body text) of a request through the front."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        for process, _url in self._backends.values():
            if process.poll() is None:
                os.killpg(process.pid, 15)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
