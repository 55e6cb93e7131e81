"""The load generator (tests/helpers/load.py) counts every failure: a server stopped midway, answers
other than 200, a server that never answers. It runs in its own process; the servers here are tiny
HTTP servers in the test process."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers.load import LoadError, LoadGenerator, Summary
from helpers.ports import free_port, listening


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() waits for the requests in flight


def serve(port, version, status=200):
    """A server answering every GET with `status` and {"version": version, "pid": 4242}."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "version": version, "pid": 4242}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.02))
    thread.daemon = True
    thread.start()
    return server


def halt(server):
    server.shutdown()
    server.server_close()


@pytest.fixture()
def port():
    return free_port()


def test_a_server_stopped_midway_is_counted_and_the_versions_are_in_order(port):
    first = serve(port, "1.0.0")
    with LoadGenerator("http://127.0.0.1:%d/health" % port, rate=100, timeout=0.5) as load:
        time.sleep(0.6)
        halt(first)
        down_since = time.monotonic()
        load.mark("down")
        time.sleep(0.6)
        load.mark("up")
        time.sleep(0.3)  # the child stamps "up" before anything listens again
        down_for = time.monotonic() - down_since
        second = serve(port, "2.0.0")
        time.sleep(0.6)
        summary = load.stop()
    halt(second)
    print(summary.report())

    assert summary.sent == summary.ok + summary.failed
    assert summary.ok > 0
    assert summary.failed > 0
    assert summary.failures["refused"] > 0, summary.failures
    assert set(summary.failures) <= {"refused", "reset", "closed"}, summary.failures
    assert summary.settled() == ["1.0.0", "2.0.0"]
    assert summary.first_version == "1.0.0" and summary.last_version == "2.0.0"
    assert summary.version_changes == 1
    assert summary.pids == {4242}
    # nothing listened for down_for seconds: no answer can have come in between
    assert summary.longest_gap >= down_for

    outage = summary.window("down", "up")
    assert outage.sent > 0
    assert outage.ok == 0 and outage.failed == outage.sent, outage.report()
    assert outage.versions == []
    assert load.summary is summary


def test_answers_other_than_200_are_failures(port):
    server = serve(port, "1.0.0", status=500)
    try:
        with LoadGenerator("http://127.0.0.1:%d/health" % port, rate=50, timeout=0.5) as load:
            time.sleep(0.5)
    finally:
        halt(server)
    summary = load.summary
    assert summary.sent > 0
    assert summary.ok == 0
    assert summary.failures == {"http_500": summary.sent}


def test_a_server_that_never_answers_times_out(port):
    # listens (the kernel accepts the connections) but never reads nor answers
    with listening(port, backlog=512):
        with LoadGenerator("http://127.0.0.1:%d/health" % port, rate=20, workers=4, timeout=0.3) as load:
            time.sleep(1.0)
    summary = load.summary
    assert summary.sent > 0
    assert summary.ok == 0
    assert summary.failures == {"timeout": summary.sent}
    assert all(r["duration"] >= 0.3 for r in summary.records)


def test_never_more_requests_than_the_schedule(port):
    server = serve(port, "1.0.0")
    try:
        with LoadGenerator("http://127.0.0.1:%d/" % port, rate=40) as load:
            time.sleep(0.5)
    finally:
        halt(server)
    summary = load.summary
    # request i is due at i / rate: at most rate * duration + 1 requests can have started
    assert 0 < summary.sent <= 40 * summary.duration + 1
    assert summary.failed == 0


def test_the_child_stops_when_its_parent_goes_away(port):
    load = LoadGenerator("http://127.0.0.1:%d/" % port, rate=10).start()
    load.process.stdin.close()  # what the child sees when the parent dies
    assert load.process.wait(timeout=10) in (0, 1)


def test_summary_from_records():
    def rec(start, version, error=None, duration=0.01):
        return dict(start=start, duration=duration, status=None if error else 200, error=error,
                    version=None if error else version, pid=None if error else int(start * 10))

    records = ([rec(i * 0.1, "1") for i in range(12)] + [rec(1.2, "2"), rec(1.3, "1"), rec(1.4, "2")]
               + [rec(1.5, None, "reset")] + [rec(1.6 + i * 0.1, "2") for i in range(10)])
    summary = Summary(records, 0.0, 2.6, marks={"a": 1.15, "b": 1.55})
    assert summary.sent == 26 and summary.ok == 25 and summary.failed == 1
    assert summary.failures == {"reset": 1}
    assert summary.versions == [["1", 12], ["2", 1], ["1", 1], ["2", 11]]
    assert summary.version_changes == 3
    assert summary.settled() == ["1", "2"]
    assert summary.settled(min_run=1) == ["1", "2", "1", "2"]
    assert summary.longest_gap == pytest.approx(0.2)  # 1.41 -> 1.61, around the reset
    window = summary.window("a", "b")
    assert (window.sent, window.failed) == (4, 1)
    assert window.rate == pytest.approx(4 / 0.4)
    with pytest.raises(LoadError, match="no mark 'c'"):
        summary.window("a", "c")
