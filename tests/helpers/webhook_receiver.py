"""A real HTTP endpoint for notification tests: records every request it receives and answers
according to a mode, per path or for all paths.

Modes:
  accept       200 "ok" (what Slack and Mattermost answer)
  accepted     202 "" (what Teams Workflows answer)
  error        500 with a short body
  status:NNN   that status with a short body (e.g. status:404)
  slow         waits slow_seconds before answering 200 (longer than the client's timeout)
  close        reads the request, then closes the connection without answering
  flaky:N      the first N requests to the path get 500, the next ones 200

    with WebhookReceiver() as receiver:
        url = receiver.url("/hooks/T000/B000/s3cr3t-xyz")            # default mode (accept)
        bad = receiver.url("/hooks/down", mode="error")
        ...
        receiver.requests        # list of Request (method, path, headers, body, json)
"""

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers.ports import free_port


class Request(object):
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "Request(%s %s, %d bytes)" % (self.method, self.path, len(self.body))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "webhook-receiver"

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass  # keep pytest output clean

    def do_POST(self):
        self._handle()

    def do_GET(self):
        self._handle()

    def _handle(self):
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        mode = receiver.record(request)
        try:
            self._answer(mode, receiver)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass  # the client gave up (timeout): nothing to answer

    def _reply(self, status, body):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _answer(self, mode, receiver):
        if mode == "accept":
            self._reply(200, "ok")
        elif mode == "accepted":
            self._reply(202, "")
        elif mode == "error":
            self._reply(500, "upstream exploded")
        elif mode.startswith("status:"):
            self._reply(int(mode.split(":", 1)[1]), "no_service")
        elif mode == "slow":
            receiver.slow_release.wait(receiver.slow_seconds)
            self._reply(200, "ok")
        elif mode == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif mode.startswith("flaky:"):
            self._reply(200, "ok")
        elif mode == "flaky-fail":
            self._reply(500, "try again")
        else:
            raise AssertionError("unknown receiver mode %r" % mode)


class WebhookReceiver(object):
    """tls=(certfile, keyfile) serves HTTPS with that certificate."""

    def __init__(self, mode="accept", slow_seconds=5.0, tls=None):
        self.mode = mode
        self.slow_seconds = slow_seconds
        self.slow_release = threading.Event()
        self.modes = {}
        self.requests = []
        self._counts = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.server.receiver = self
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs=dict(poll_interval=0.05))
        self._thread.daemon = True
        self._thread.start()

    def url(self, path, mode=None):
        if mode is not None:
            self.modes[path.split("?", 1)[0]] = mode  # modes are per path, whatever the query
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def record(self, request):
        """Store the request; return the mode to answer it with."""
        path = request.path.split("?", 1)[0]
        with self._lock:
            self.requests.append(request)
            count = self._counts[path] = self._counts.get(path, 0) + 1
        mode = self.modes.get(path, self.mode)
        if mode.startswith("flaky:") and count <= int(mode.split(":", 1)[1]):
            return "flaky-fail"
        return mode

    def received(self, path=None):
        with self._lock:
            return [r for r in self.requests if path is None or r.path.split("?", 1)[0] == path]

    def wait_for(self, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.received()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received()

    def close(self):
        self.slow_release.set()  # let slow handlers finish
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def refused_url(path="/hooks/T000/B000/s3cr3t-xyz"):
    """A URL on a loopback port nobody listens on (bound then closed)."""
    return "http://127.0.0.1:%d%s" % (free_port(), path)
