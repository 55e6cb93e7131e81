"""A small web application for the health_probe tests: a real HTTP server on 127.0.0.1 (a free port) in a
background thread, answering well or badly depending on the path.

  /health              200 {"status": "ok", "version": app.version, "checks": {"db": "ok"}, "items": [{"id": 7}]}
  /down                503 {"status": "down"}
  /html                200 an HTML page (not JSON)
  /slow?seconds=S      waits S seconds, then answers like /health
  /flap                good, bad, good, bad... (counted per path; the first answer is good)
  /ready-after/N       503 for the first N requests, then like /health
  /close               reads the request and closes the connection without answering
  /redirect            302 to /health
  /api/login           POST {"email", "password"}: 200 {"access_token": <token>, "user": {"id": 7}} or 401
  /api/me              needs Authorization: Bearer <token>: 200 {"user": "smoke", "id": 7}, else 401
  /api/users/<id>      needs the bearer token: 200 {"id": <id as a number>}
  /api/leak            needs the bearer token: 500 with the token in the body (redaction must hide it)
  /api/tenant          needs the bearer token; answers for the tenant named by the Host header:
                       acme.example.test -> {"tenant": "acme"}, any other host -> 404

Every request is counted per path (app.hits) and kept (app.requests: method, path, headers, body).
"""

import json
import secrets
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PASSWORD = "correct-horse-battery"
TENANTS = {"acme.example.test": "acme"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass  # a client that gave up (timeout tests) makes the handler's write fail: expected


class App(object):
    def __init__(self, version="1.2.3", certfile=None, keyfile=None):
        self.version = version
        self.token = "tok_" + secrets.token_urlsafe(24)
        self.hits = {}
        self.requests = []
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _handler_for(self))
        self.scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs=dict(poll_interval=0.05))
        self._thread.daemon = True
        self._thread.start()

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def count(self, path):
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            return self.hits[path]

    def total(self):
        with self._lock:
            return sum(self.hits.values())

    def health(self):
        return {"status": "ok", "version": self.version, "checks": {"db": "ok"}, "items": [{"id": 7}]}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _handler_for(app):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            BaseHTTPRequestHandler.setup(self)
            # headers and body leave in two writes: without this, Nagle's algorithm and delayed ACKs add ~40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):  # quiet
            pass

        def _reply(self, status, payload=None, text=None, content_type="application/json", headers=None):
            body = (json.dumps(payload) if text is None else text).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _authorized(self):
            return self.headers.get("Authorization") == "Bearer " + app.token

        def _handle(self):
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with app._lock:
                app.requests.append(dict(method=self.command, path=path, headers=dict(self.headers.items()),
                                         body=body))
            key = "/ready-after" if path.startswith("/ready-after/") else path
            number = app.count(key)

            if path == "/health":
                return self._reply(200, app.health())
            if path == "/down":
                return self._reply(503, {"status": "down"})
            if path == "/html":
                return self._reply(200, text="<html><title>Maintenance</title>back soon</html>",
                                   content_type="text/html")
            if path == "/slow":
                time.sleep(float(query.get("seconds", ["2"])[0]))
                return self._reply(200, app.health())
            if path == "/flap":
                if number % 2 == 1:
                    return self._reply(200, app.health())
                return self._reply(503, {"status": "starting"})
            if path.startswith("/ready-after/"):
                if number <= int(path.rsplit("/", 1)[1]):
                    return self._reply(503, {"status": "starting"})
                return self._reply(200, app.health())
            if path == "/close":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return None
            if path == "/redirect":
                return self._reply(302, {"moved": True}, headers={"Location": "/health"})
            if path == "/api/login":
                try:
                    form = json.loads(body.decode("utf-8"))
                except ValueError:
                    form = {}
                if self.command == "POST" and form.get("password") == PASSWORD:
                    return self._reply(200, {"access_token": app.token, "token_type": "Bearer", "user": {"id": 7}})
                return self._reply(401, {"error": "bad credentials"})
            if path.startswith("/api/"):
                if not self._authorized():
                    return self._reply(401, {"error": "missing or wrong bearer token"})
                if path == "/api/me":
                    return self._reply(200, {"user": "smoke", "id": 7})
                if path.startswith("/api/users/"):
                    return self._reply(200, {"id": int(path.rsplit("/", 1)[1])})
                if path == "/api/leak":
                    return self._reply(500, text="Internal error while handling token %s for user smoke" % app.token,
                                       content_type="text/plain")
                if path == "/api/tenant":
                    host = (self.headers.get("Host") or "").split(":")[0]
                    if host in TENANTS:
                        return self._reply(200, {"tenant": TENANTS[host]})
                    return self._reply(404, {"error": "no tenant for host %s" % host})
            return self._reply(404, {"error": "not found"})

        do_GET = do_POST = do_HEAD = do_PUT = _handle

    return Handler


def self_signed_cert(directory):
    """(certfile, keyfile) for CN=127.0.0.1 with IP:127.0.0.1 as subjectAltName, made with the openssl CLI."""
    cert = str(directory / "cert.pem")
    key = str(directory / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return cert, key
