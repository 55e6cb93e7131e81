# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: one timed HTTP request through ansible.module_utils.urls, and every way it can fail said in one sentence.

Only the standard library and ansible.module_utils: the probe runs on any managed host without extra packages.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import socket
import ssl
import time
import urllib.error
import urllib.parse

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request

try:
    from ansible.module_utils.urls import make_context
except ImportError:  # older ansible-core: each request builds its own TLS context
    make_context = None

HTTP_AGENT = "safeship.webapp.health_probe"
# A health or smoke endpoint answers with a small document; more than this is read no further.
MAX_BODY = 4 * 1024 * 1024


def http_argument_spec():
    """The options the HTTP modules (health_probe, notify) share: doc fragment safeship.webapp.http, and what
    module_defaults group/safeship.webapp.http sets once."""
    return dict(
        timeout=dict(type="float", default=10.0),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
    )


class Reply(object):
    """What one request got back: a status and a body, or an error sentence. Latency in milliseconds."""

    def __init__(self, method, url, status=None, reason=None, headers=None, body=b"", error=None, latency_ms=None,
                 final_url=None):
        self.method = method
        self.url = url
        self.status = status
        self.reason = reason
        self.headers = headers or {}
        self.body = body
        self.error = error
        self.latency_ms = latency_ms
        self.final_url = final_url or url

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def content_type(self):
        return self.headers.get("content-type", "")


def where(url):
    """host:port of a URL, with the scheme's default port when none is given."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    try:
        port = parsed.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parsed.scheme == "https" else 80
    return "%s:%d" % (host, port)


def describe_error(exc, url, timeout):
    """One sentence for a request that got no HTTP response (or lost it half-way)."""
    target = where(url)
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return ("TLS certificate of %s not accepted: %s; set ca_path to the CA certificate that signed it, "
                "or validate_certs: false" % (target, getattr(reason, "verify_message", None) or reason))
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "no response from %s within %s s (timeout)" % (target, _seconds(timeout))
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused by %s (nothing listening?)" % target
    if isinstance(reason, http.client.RemoteDisconnected):
        return "%s closed the connection without sending a response" % target
    if isinstance(reason, ConnectionResetError):
        return "connection reset by %s" % target
    if isinstance(reason, http.client.IncompleteRead):
        return "%s closed the connection before the whole body arrived" % target
    if isinstance(reason, ssl.SSLError):
        return "TLS error with %s: %s" % (target, getattr(reason, "reason", None) or reason)
    if isinstance(reason, socket.gaierror):
        return "cannot resolve host of %s: %s" % (target, reason.strerror or reason)
    if isinstance(reason, http.client.HTTPException):
        return "invalid HTTP response from %s: %s" % (target, reason.__class__.__name__)
    if isinstance(reason, OSError):
        return "cannot connect to %s: %s" % (target, reason.strerror or reason)
    return "request to %s failed: %s" % (target, reason)


def _seconds(value):
    return ("%g" % value) if value is not None else "?"


def tls_context(validate_certs=True, ca_path=None):
    """The TLS context for every request of a run, built once.

    Left to itself, each request would build a context and load the system CA bundle again (~100 ms here),
    inside the time measured as latency. None when this ansible-core cannot take a context."""
    if make_context is None:
        return None
    try:
        return make_context(cafile=ca_path, validate_certs=validate_certs)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError("cannot load the CA certificates%s: %s"
                         % (" from %s" % ca_path if ca_path else "", getattr(exc, "reason", None) or exc))


def new_session(timeout, validate_certs=True, ca_path=None, follow_redirects="safe", use_proxy=True, context=None):
    """A Request with its own cookie jar: steps of one flow share it (a login cookie reaches later steps)."""
    kwargs = dict(timeout=timeout, validate_certs=validate_certs, ca_path=ca_path, follow_redirects=follow_redirects,
                  use_proxy=use_proxy, http_agent=HTTP_AGENT, use_netrc=False)
    if context is not None:
        kwargs["context"] = context
    return Request(**kwargs)


def send(session, method, url, headers=None, data=None, timeout=None, url_username=None, url_password=None,
         force_basic_auth=False, max_body=MAX_BODY, clock=time.monotonic):
    """Send one request; time it from before connecting to the last byte of the body read.

    Never raises for what the network or the server does: a non-2xx status is a reply like any other,
    a refused connection, a timeout or a dropped connection is a reply with an error sentence."""
    start = clock()
    response = None
    try:
        try:
            response = session.open(method, url, data=data, headers=headers or {}, timeout=timeout,
                                    url_username=url_username, url_password=url_password,
                                    force_basic_auth=force_basic_auth)
        except urllib.error.HTTPError as exc:
            response = exc
        body = response.read(max_body) if response is not None else b""
        latency = (clock() - start) * 1000.0
        status = response.getcode()
        headers_in = dict((key.lower(), value) for key, value in (response.headers or {}).items())
        final_url = response.geturl() if hasattr(response, "geturl") else url
        return Reply(method, url, status=status, reason=getattr(response, "reason", None), headers=headers_in,
                     body=body or b"", latency_ms=latency, final_url=final_url)
    except (OSError, http.client.HTTPException, UrlsConnectionError) as exc:
        return Reply(method, url, error=describe_error(exc, url, timeout), latency_ms=(clock() - start) * 1000.0)
    finally:
        if response is not None:
            try:
                response.close()
            except Exception:  # pylint: disable=broad-except
                pass
