# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: deploy notifications to Slack, Mattermost, Microsoft Teams or a generic webhook
(the logic behind the notify module).

A webhook URL is a secret (Slack's and Mattermost's carry the token in the path, a Teams Workflows
URL in the query string): it is never put in a message, a warning or a result. Only the redacted
form from redact_url() (scheme://host[:port]/…) is shown.

Delivery problems (refused, timeout, closed connection, HTTP 4xx/5xx, a URL that is not http(s))
are not errors of the deploy: the module warns and returns sent=false unless fail_on_error is set.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket
import ssl
import time

from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl, urlsplit

from ansible.module_utils.urls import SSLValidationError, open_url

from ansible_collections.safeship.webapp.plugins.module_utils._common import (
    SafeshipError,
    deprecated_aliases,
    iso,
    utc_now,
)
from ansible_collections.safeship.webapp.plugins.module_utils._http import http_argument_spec

SERVICES = ("slack", "mattermost", "teams", "webhook")
EVENTS = ("start", "success", "failure", "rollback", "custom")

USER_AGENT = "safeship.webapp-notify"
# Longest backoff between two attempts, whatever delay and Retry-After say.
MAX_DELAY = 30.0
# Bytes of a response body kept for the result and the warning.
BODY_EXCERPT = 300

# Limits of the chat services (Slack: 3000 characters per section text, 2000 per field, 10 fields per
# section, 50 blocks per message), kept with a margin and used for every chat service so a message
# looks the same everywhere. The generic webhook gets the values as given.
TEXT_LIMIT = 2900
FIELD_LIMIT = 1900
FIELDS_PER_SECTION = 10
MAX_FIELDS = 40

HEADLINES = {
    "start": "Deploy started",
    "success": "Deploy succeeded",
    "failure": "Deploy failed",
    "rollback": "Deploy rolled back",
}
# Slack and Mattermost attachment colours.
COLORS = {
    "start": "#439FE0",
    "success": "#2EB886",
    "failure": "#E01E5A",
    "rollback": "#ECB22E",
    "custom": "#808080",
}
# Adaptive Card TextBlock colours.
CARD_COLORS = {
    "start": "Accent",
    "success": "Good",
    "failure": "Attention",
    "rollback": "Warning",
    "custom": "Default",
}
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_CARD_VERSION = "1.2"


def argument_spec():
    spec = http_argument_spec()
    spec.update(
        service=dict(type="str", required=True, choices=list(SERVICES)),
        url=dict(type="str", required=True, no_log=True),
        event=dict(type="str", default="custom", choices=list(EVENTS)),
        app=dict(type="str"),
        environment=dict(type="str"),
        version=dict(type="str"),
        deploy_id=dict(type="str"),
        user=dict(type="str"),
        msg=dict(type="str"),
        link=dict(type="str"),
        duration=dict(type="float"),
        rolled_back=dict(type="bool"),
        reason=dict(type="str"),
        details=dict(type="dict", default={}),
        channel=dict(type="str"),
        username=dict(type="str"),
        icon_url=dict(type="str"),
        icon_emoji=dict(type="str"),
        headers=dict(type="dict", default={}, no_log=True),
        retries=dict(type="int", default=2),
        delay=dict(type="float", default=1.0, aliases=["retry_delay"],
                   deprecated_aliases=deprecated_aliases("retry_delay")),
        fail_on_error=dict(type="bool", default=False),
    )
    return spec


REQUIRED_IF = [("event", "custom", ("msg",))]


# ---------------------------------------------------------------------------------------------
# Secrets: what may be shown of a webhook URL


def redact_url(url):
    """scheme://host[:port]/… : the parts of a webhook URL that are safe to show.

    The user info, path, query and fragment may all hold the secret and are dropped. Anything that
    does not parse as a URL with a host is shown as '<invalid url>'."""
    try:
        parts = urlsplit(url or "")
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    if ":" in host:
        host = "[%s]" % host
    netloc = host if port is None else "%s:%d" % (host, port)
    return "%s://%s/…" % (parts.scheme.lower(), netloc)


def secret_parts(url):
    """Pieces of url that must never be shown: the URL itself, its user info, path, query, and
    every path segment or query value long enough to be a token. Longest first."""
    if not url:
        return []
    pieces = set([url])
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    for piece in (parts.path, parts.query, parts.fragment):
        if piece and piece != "/":
            pieces.add(piece)
    if "@" in parts.netloc:
        pieces.add(parts.netloc.rsplit("@", 1)[0])
        if parts.password and len(parts.password) >= 4:
            pieces.add(parts.password)
    for segment in parts.path.split("/"):
        if len(segment) >= 6:
            pieces.add(segment)
    for dummy, value in parse_qsl(parts.query, keep_blank_values=False):
        if len(value) >= 6:
            pieces.add(value)
    return sorted(pieces, key=len, reverse=True)


def scrub(text, secrets):
    """text with every secret piece replaced by '…'."""
    if not text:
        return text
    for piece in secrets:
        text = text.replace(piece, "…")
    return text


# ---------------------------------------------------------------------------------------------
# The message, independent of the service


def format_duration(seconds):
    if seconds is None:
        return None
    total = int(round(max(seconds, 0)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "%dh %02dm %02ds" % (hours, minutes, secs)
    if minutes:
        return "%dm %02ds" % (minutes, secs)
    return "%ds" % secs


def truncate(text, limit):
    if text is None or len(text) <= limit:
        return text
    return text[:limit - 14].rstrip() + " … (truncated)"


def detail_value(value):
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def headline(event, app, version, environment):
    """'Deploy failed: shop 1.4.2 (production)'; for a custom event just the target."""
    target = " ".join(part for part in (app, version) if part)
    if environment:
        target = "%s (%s)" % (target, environment) if target else environment
    label = HEADLINES.get(event)
    if label is None:
        return target or "Deploy notification"
    return "%s: %s" % (label, target) if target else label


def build_message(params, now=None):
    """The notification as plain data: what every service's payload is made from."""
    event = params["event"]
    rolled_back = params.get("rolled_back")
    if rolled_back is None:
        rolled_back = event == "rollback"
    details = params.get("details") or {}
    return dict(
        event=event,
        title=headline(event, params.get("app"), params.get("version"), params.get("environment")),
        app=params.get("app"),
        environment=params.get("environment"),
        version=params.get("version"),
        deploy_id=params.get("deploy_id"),
        user=params.get("user"),
        message=params.get("msg"),
        url=params.get("link"),
        duration=params.get("duration"),
        rolled_back=bool(rolled_back),
        error=params.get("reason"),
        extra=dict(details),
        timestamp=iso(now or utc_now()),
    )


def chat_fields(msg):
    """(title, value) pairs shown by the chat services, values truncated; at most MAX_FIELDS."""
    fields = []
    for title, key in (("Environment", "environment"), ("Version", "version"), ("Deploy", "deploy_id"),
                       ("By", "user")):
        if msg.get(key):
            fields.append((title, msg[key]))
    if msg.get("duration") is not None:
        fields.append(("Duration", format_duration(msg["duration"])))
    if msg.get("rolled_back"):
        fields.append(("Rolled back", "yes"))
    for key in sorted(msg.get("extra") or {}, key=str):
        fields.append((str(key), detail_value(msg["extra"][key])))
    if len(fields) > MAX_FIELDS:
        hidden = len(fields) - (MAX_FIELDS - 1)
        fields = fields[:MAX_FIELDS - 1] + [("…", "%d more details not shown" % hidden)]
    return [(truncate(title, 200), truncate(value, FIELD_LIMIT)) for title, value in fields]


def plain_text(msg):
    text = msg["title"]
    if msg.get("message"):
        text += "\n" + msg["message"]
    return text


# ---------------------------------------------------------------------------------------------
# Payloads per service


def slack_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url, label):
    return "<%s|%s>" % (url.replace("|", "%7C").replace(">", "%3E"), slack_escape(label))


def slack_payload(msg, params):
    """Incoming webhook message: `text` (the headline: notification and fallback) and one attachment
    with the event's colour holding Block Kit blocks (message, fields, error, context)."""
    blocks = []
    if msg.get("message"):
        blocks.append(dict(type="section", text=dict(type="mrkdwn",
                                                     text=slack_escape(truncate(msg["message"], TEXT_LIMIT)))))
    fields = [dict(type="mrkdwn", text="*%s*\n%s" % (slack_escape(title), slack_escape(value)))
              for title, value in chat_fields(msg)]
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append(dict(type="section", fields=fields[start:start + FIELDS_PER_SECTION]))
    if msg.get("error"):
        blocks.append(dict(type="section", text=dict(
            type="mrkdwn", text="*Error*\n%s" % slack_escape(truncate(msg["error"], TEXT_LIMIT)))))
    context = ["safeship.webapp · %s" % msg["event"]]
    if msg.get("url"):
        context.append(slack_link(msg["url"], "details"))
    blocks.append(dict(type="context", elements=[dict(type="mrkdwn", text=" · ".join(context))]))
    payload = dict(
        text=slack_escape(msg["title"]),
        attachments=[dict(color=COLORS[msg["event"]], fallback=slack_escape(truncate(plain_text(msg), TEXT_LIMIT)),
                          blocks=blocks)],
    )
    _add_identity(payload, params)
    return payload


def mattermost_payload(msg, params):
    """Incoming webhook message: `text` (the headline, Markdown) and one attachment with the
    event's colour, the message, fields and the error; optional channel, username and icon."""
    attachment = dict(
        fallback=truncate(plain_text(msg), TEXT_LIMIT),
        color=COLORS[msg["event"]],
        fields=[dict(title=title, value=value, short=len(value) <= 40) for title, value in chat_fields(msg)],
        footer="safeship.webapp · %s" % msg["event"],
    )
    if msg.get("message"):
        attachment["text"] = truncate(msg["message"], TEXT_LIMIT)
    if msg.get("error"):
        attachment["fields"].append(dict(title="Error", value=truncate(msg["error"], TEXT_LIMIT), short=False))
    if msg.get("url"):
        attachment["title"] = "Details"
        attachment["title_link"] = msg["url"]
    payload = dict(text="**%s**" % msg["title"], attachments=[attachment])
    _add_identity(payload, params)
    return payload


def _add_identity(payload, params):
    for key in ("channel", "username", "icon_url", "icon_emoji"):
        if params.get(key):
            payload[key] = params[key]


def teams_payload(msg, params):
    """The message Teams Workflows ("Post to a channel when a webhook request is received") and the
    older incoming webhooks accept: type message with one Adaptive Card attachment."""
    body = [dict(type="TextBlock", text=msg["title"], size="Medium", weight="Bolder", wrap=True,
                 color=CARD_COLORS[msg["event"]])]
    if msg.get("message"):
        body.append(dict(type="TextBlock", text=truncate(msg["message"], TEXT_LIMIT), wrap=True))
    facts = [dict(title=title, value=value) for title, value in chat_fields(msg)]
    if facts:
        body.append(dict(type="FactSet", facts=facts))
    if msg.get("error"):
        body.append(dict(type="TextBlock", text="Error: %s" % truncate(msg["error"], TEXT_LIMIT), wrap=True,
                         color="Attention"))
    body.append(dict(type="TextBlock", text="safeship.webapp · %s · %s" % (msg["event"], msg["timestamp"]),
                     size="Small", isSubtle=True, wrap=True))
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if msg.get("url"):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Details", "url": msg["url"]}]
    return dict(type="message", attachments=[dict(contentType=ADAPTIVE_CARD, contentUrl=None, content=card)])


def webhook_payload(msg, params):
    """Every field, as given (null when not set), for receivers that do their own formatting."""
    payload = dict(msg)
    payload["source"] = "safeship.webapp"
    return payload


BUILDERS = dict(slack=slack_payload, mattermost=mattermost_payload, teams=teams_payload, webhook=webhook_payload)


def build_payload(service, params, now=None):
    return BUILDERS[service](build_message(params, now), params)


# ---------------------------------------------------------------------------------------------
# Delivery


class Outcome(object):
    def __init__(self):
        self.sent = False
        self.status = None
        self.response = None
        self.error = None
        self.attempts = 0


def _body_excerpt(handle):
    try:
        data = handle.read(BODY_EXCERPT + 1)
    except Exception:  # pylint: disable=broad-except
        return None
    if data is None:
        return None
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    data = " ".join(data.split())
    if len(data) > BODY_EXCERPT:
        data = data[:BODY_EXCERPT] + "…"
    return data


def _is_timeout(exc):
    return isinstance(exc, (socket.timeout, TimeoutError)) or "timed out" in str(exc).lower()


def describe_exception(exc, timeout):
    """(what went wrong, worth retrying) for an exception raised by open_url (not HTTPError)."""
    reason = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused", True
    if _is_timeout(reason):
        return "no answer within %g s (timeout)" % timeout, True
    if isinstance(reason, socket.gaierror):
        return "host name not found (%s)" % (reason.strerror or reason), True
    if isinstance(exc, SSLValidationError) or isinstance(reason, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed (%s); set ca_path, or validate_certs: false" % (
            getattr(reason, "verify_message", None) or "invalid certificate"), False
    if isinstance(reason, ssl.SSLError):
        return "TLS handshake failed (%s)" % (reason.reason or reason), False
    if isinstance(reason, (HTTPException, ConnectionError)):
        return "connection closed without a complete response (%s)" % (type(reason).__name__), True
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:], True
    return "%s: %s" % (type(reason).__name__, reason), False


def _retry_after(exc):
    try:
        value = exc.headers.get("Retry-After")
        return float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def post_json(url, payload, params, opener=open_url, sleep=time.sleep):
    """POST payload as JSON, with params' timeout, retries (doubling delay) and TLS options.

    Retries connection errors, timeouts, closed connections, HTTP 5xx, 408 and 429 (honouring
    Retry-After up to MAX_DELAY); other 4xx are final. Redirects are not followed (a POST turned
    into a GET would be reported as delivered). Returns an Outcome; never raises for delivery."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    for name, value in (params.get("headers") or {}).items():
        headers[str(name)] = str(value)
    data = json.dumps(payload, sort_keys=True).encode("utf-8")
    retries = max(int(params.get("retries") or 0), 0)
    delay = max(float(params.get("delay") or 0), 0.0)
    timeout = params.get("timeout") or 10
    outcome = Outcome()
    for attempt in range(1, retries + 2):
        outcome.attempts = attempt
        retry_after = None
        try:
            response = opener(url, data=data, headers=headers, method="POST", timeout=timeout,
                              validate_certs=params.get("validate_certs", True), ca_path=params.get("ca_path"),
                              http_agent=USER_AGENT, follow_redirects="none", force_basic_auth=True)
            try:
                outcome.status = response.getcode()
                outcome.response = _body_excerpt(response)
            finally:
                response.close()
            if 200 <= outcome.status < 300:
                outcome.sent = True
                outcome.error = None
                return outcome
            outcome.error = "unexpected HTTP %s" % outcome.status
            retryable = False
        except HTTPError as exc:
            outcome.status = exc.code
            outcome.response = _body_excerpt(exc)
            outcome.error = "HTTP %s %s" % (exc.code, exc.reason or "")
            outcome.error = outcome.error.strip()
            if outcome.response:
                outcome.error += ": %s" % outcome.response
            if 300 <= exc.code < 400:
                outcome.error += " (redirects are not followed: use the final URL)"
            retryable = exc.code >= 500 or exc.code in (408, 429)
            if exc.code == 429:
                retry_after = _retry_after(exc)
        except Exception as exc:  # pylint: disable=broad-except
            outcome.status = None
            outcome.response = None
            outcome.error, retryable = describe_exception(exc, timeout)
        if not retryable or attempt > retries:
            break
        wait = retry_after if retry_after is not None else delay * (2 ** (attempt - 1))
        sleep(min(max(wait, 0.0), MAX_DELAY))
    return outcome


def url_problem(url):
    """Why url cannot be posted to (without showing it), or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # pylint: disable=pointless-statement
    except ValueError:
        return "url is not a valid URL"
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https"):
        return "url must start with https:// or http:// (scheme %r)" % (scheme[:10] if scheme else "")
    if not host:
        return "url has no host name"
    return None


def _attempts(count):
    return "%d attempt%s" % (count, "" if count == 1 else "s")


def run(module, runner=None, opener=open_url, sleep=time.sleep, now=None):
    """The notify module's action (it runs no program: runner is unused)."""
    params = module.params
    url = params["url"]
    service = params["service"]
    event = params["event"]
    if params.get("timeout") is not None and params["timeout"] <= 0:
        raise SafeshipError("timeout must be more than 0 seconds, not %s." % params["timeout"])
    if params.get("retries") is not None and params["retries"] < 0:
        raise SafeshipError("retries must be 0 or more, not %s." % params["retries"])
    if params.get("delay") is not None and params["delay"] < 0:
        raise SafeshipError("delay must be 0 or more seconds, not %s." % params["delay"])
    endpoint = redact_url(url)
    # AnsibleModule masks header values (no_log) in the whole result; scrub the long ones from our
    # own texts too so the error reads the same everywhere.
    header_values = [str(v) for v in (params.get("headers") or {}).values() if v is not None and len(str(v)) >= 6]
    secrets = sorted(secret_parts(url) + header_values, key=len, reverse=True)
    payload = build_payload(service, params, now)
    result = dict(service=service, event=event, endpoint=endpoint, payload=payload, sent=False, tries=0)

    problem = url_problem(url)
    if problem is None and module.check_mode:
        # Nothing is sent in check mode; a real run would post a message: that is the change.
        result["changed"] = True
        return result

    if problem is None:
        outcome = post_json(url, payload, params, opener=opener, sleep=sleep)
        result["tries"] = outcome.attempts
        if outcome.status is not None:
            result["status"] = outcome.status
        if outcome.response is not None:
            result["response"] = scrub(outcome.response, secrets)
        if outcome.sent:
            result["sent"] = True
            result["changed"] = True
            return result
        problem = "%s (after %s)" % (scrub(outcome.error, secrets), _attempts(outcome.attempts))

    result["error"] = problem
    result["changed"] = False
    what = "the %s notification for event %r was not sent to %s: %s" % (service, event, endpoint, problem)
    if params.get("fail_on_error"):
        raise SafeshipError(what + ".", **result)
    module.warn(what + ". The deploy goes on (set fail_on_error: true to fail the task instead).")
    return result
