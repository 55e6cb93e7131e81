# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the logic behind the health_probe module.

A readiness check (the top-level url, or the first step when there is none) retried until it passes
consecutive_successes times in a row, optional latency samples against a budget, then smoke steps run once
each in order, capturing values (tokens) from JSON replies for later steps. Everything that leaves the
module goes through a Redactor: captured secrets, credentials and secret-looking fields are masked.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import os
import re
import time
from urllib.parse import urljoin, urlsplit

from ansible_collections.safeship.webapp.plugins.module_utils import _http
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError
from ansible_collections.safeship.webapp.plugins.module_utils._redact import MASK, Redactor
from ansible_collections.safeship.webapp.plugins.module_utils._text import compile_regex

EXCERPT_CHARS = 200
DEFAULT_SAMPLES = 10
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# ${name} is replaced by a captured value; $${ stands for a literal ${.
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_METHOD = re.compile(r"^[A-Z]+$")
_NOT_JSON = object()


def _request_options():
    """What one HTTP request and its expectations take, at the top level and in each step."""
    return dict(
        method=dict(type="str", default="GET"),
        headers=dict(type="dict", default={}),
        body=dict(type="str"),
        json_body=dict(type="raw"),
        status_code=dict(type="list", elements="int", default=[200]),
        json_expect=dict(type="dict", default={}),
        body_regex=dict(type="str"),
    )


def _step_options():
    options = _request_options()
    options.update(
        name=dict(type="str"),
        url=dict(type="str", required=True),
        capture=dict(type="dict", default={}),
        capture_public=dict(type="list", elements="str", default=[]),
        bearer=dict(type="str"),
        retries=dict(type="int"),
        delay=dict(type="float"),
    )
    return options


def argument_spec():
    spec = _http.http_argument_spec()
    spec.update(_request_options())
    spec.update(
        url=dict(type="str"),
        retries=dict(type="int", default=10),
        delay=dict(type="float", default=2.0),
        consecutive_successes=dict(type="int", default=1),
        fail_fast_statuses=dict(type="list", elements="int", default=[]),
        max_latency_ms=dict(type="float"),
        samples=dict(type="int"),
        follow_redirects=dict(type="str", default="safe", choices=["none", "safe", "all"]),
        use_proxy=dict(type="bool", default=True),
        url_username=dict(type="str"),
        url_password=dict(type="str", no_log=True),
        force_basic_auth=dict(type="bool", default=False),
        redact=dict(type="list", elements="str", default=[], no_log=True),
        steps=dict(type="list", elements="dict", options=_step_options(),
                   mutually_exclusive=MUTUALLY_EXCLUSIVE),
        run_in_check_mode=dict(type="bool", default=True),
    )
    return spec


MUTUALLY_EXCLUSIVE = [["body", "json_body"]]
REQUIRED_ONE_OF = [["url", "steps"]]


# ---------------------------------------------------------------------------------------------- JSON paths

class PathError(Exception):
    pass


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def check_path(path, what):
    if not isinstance(path, str) or not path or any(part == "" for part in path.split(".")):
        raise SafeshipError("%s: JSON path %r is not valid: use keys separated by dots, list indexes as numbers "
                            "(for example 'checks.db' or 'items.0.id')." % (what, path))
    return path


def lookup(doc, path):
    """The value at a dotted path ('checks.db', 'items.0.id'); PathError says where the path stops."""
    current = doc
    walked = []
    for part in path.split("."):
        here = "'%s'" % ".".join(walked) if walked else "the top level"
        if isinstance(current, dict):
            if part not in current:
                keys = sorted(str(key) for key in current)
                shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
                raise PathError("no key '%s' in the object at %s (keys: %s)" % (part, here, shown or "none"))
            current = current[part]
        elif isinstance(current, list):
            try:
                index = int(part)
            except ValueError:
                raise PathError("%s is an array and '%s' is not an index" % (here, part))
            if not -len(current) <= index < len(current):
                raise PathError("%s has %d item%s, no index %d"
                                % (here, len(current), "" if len(current) == 1 else "s", index))
            current = current[index]
        else:
            raise PathError("%s is %s, not an object or array" % (here, _a(_kind(current))))
        walked.append(part)
    return current


def _a(kind):
    return ("an %s" if kind[0] in "aeiou" else "a %s") % kind


def json_equal(expected, actual):
    """Equality of JSON values that keeps types apart: "200" != 200, true != 1; 1 == 1.0."""
    kind = _kind(expected)
    if kind != _kind(actual):
        return False
    if kind == "array":
        return len(expected) == len(actual) and all(json_equal(e, a) for e, a in zip(expected, actual))
    if kind == "object":
        return set(expected) == set(actual) and all(json_equal(expected[k], actual[k]) for k in expected)
    return expected == actual


def show(value, limit=80):
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def expectation_problem(path, expected, doc):
    """None when doc has expected at path, else one sentence saying what came back."""
    try:
        actual = lookup(doc, path)
    except PathError as exc:
        return "JSON path '%s' missing: %s" % (path, exc)
    if json_equal(expected, actual):
        return None
    problem = "JSON path '%s' is %s, expected %s" % (path, show(actual), show(expected))
    have, want = _kind(actual), _kind(expected)
    if have != want:
        problem += " (%s, expected %s" % (_a(have), _a(want))
        if want == "number" and have == "string":
            problem += ": write the expected value in quotes to compare as a string"
        elif want == "string" and have in ("number", "boolean", "null"):
            problem += ": json_expect compares JSON types, so expect it without quotes"
        problem += ")"
    return problem


# ---------------------------------------------------------------------------------------------- placeholders

def placeholders(value):
    """Names used as ${name} anywhere in a string, list or dict."""
    found = set()
    if isinstance(value, str):
        for match in _PLACEHOLDER.finditer(value):
            if match.group(1):
                found.add(match.group(1))
    elif isinstance(value, dict):
        for key, item in value.items():
            found |= placeholders(key)
            found |= placeholders(item)
    elif isinstance(value, list):
        for item in value:
            found |= placeholders(item)
    return found


def has_placeholder(value):
    """Whether a value holds a ${name} (then it is not a secret of its own, the captured value is)."""
    return bool(_PLACEHOLDER.search(str(value)))


def _as_text(value):
    return value if isinstance(value, str) else json.dumps(value)


def substitute(value, captures, native=False):
    """Replace ${name} by captured values. With native, a string that is one placeholder becomes the value itself
    (a captured number stays a number in a JSON body or expectation)."""
    if isinstance(value, str):
        if native:
            match = _PLACEHOLDER.match(value)
            if match and match.group(1) and match.end() == len(value):
                return captures[match.group(1)]

        def replace(match):
            if not match.group(1):
                return "${"
            return _as_text(captures[match.group(1)])
        return _PLACEHOLDER.sub(replace, value)
    if isinstance(value, dict):
        return dict((substitute(key, captures), substitute(item, captures, native)) for key, item in value.items())
    if isinstance(value, list):
        return [substitute(item, captures, native) for item in value]
    return value


# ---------------------------------------------------------------------------------------------- latency

def percentile(values, q):
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, int(math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


def latency_stats(values):
    if not values:
        return {}
    return dict(count=len(values), min=round(min(values), 1), p50=round(percentile(values, 50), 1),
                p95=round(percentile(values, 95), 1), max=round(max(values), 1))


# ---------------------------------------------------------------------------------------------- one check

def _check_url(url, what):
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SafeshipError("%s: url %r is not an http:// or https:// URL." % (what, url))
    return url


def _headers(headers):
    return dict((str(key), _as_text(value) if value is not None else "") for key, value in (headers or {}).items())


class Check(object):
    """One request and what its reply must satisfy: the top-level probe or one step."""

    def __init__(self, spec, label, index=None, inherited_headers=None):
        self.label = label
        self.index = index
        self.name = spec.get("name")
        self.url = spec.get("url")
        self.method = (spec.get("method") or "GET").upper()
        if not _METHOD.match(self.method):
            raise SafeshipError("%s: method %r is not an HTTP method." % (label, spec.get("method")))
        self.headers = _headers(inherited_headers)
        own = _headers(spec.get("headers"))
        # the step's own headers replace inherited ones whatever their case
        self.headers = dict((key, value) for key, value in self.headers.items()
                            if key.lower() not in set(name.lower() for name in own))
        self.headers.update(own)
        self.body = spec.get("body")
        self.json_body = spec.get("json_body")
        if isinstance(self.json_body, str):
            try:
                json.loads(_PLACEHOLDER.sub("0", self.json_body))
            except ValueError:
                raise SafeshipError("%s: json_body is a string that is not JSON; send other text with body."
                                    % label)
        self.status_code = check_statuses(list(spec.get("status_code") or [200]), "%s: status_code" % label)
        self.json_expect = dict(spec.get("json_expect") or {})
        for path in self.json_expect:
            check_path(path, "%s json_expect" % label)
        self.body_regex = None
        if spec.get("body_regex"):
            self.body_regex = compile_regex(spec["body_regex"], "%s: body_regex" % label)
        self.capture = dict(spec.get("capture") or {})
        for name, path in self.capture.items():
            if not _NAME.match(name):
                raise SafeshipError("%s: capture name %r is not valid: use letters, digits and '_', not starting "
                                    "with a digit." % (label, name))
            check_path(path, "%s capture %s" % (label, name))
        self.capture_public = list(spec.get("capture_public") or [])
        unknown = sorted(set(self.capture_public) - set(self.capture))
        if unknown:
            raise SafeshipError("%s: capture_public names %s, which capture does not define." % (label, ", ".join(unknown)))
        self.bearer = spec.get("bearer")
        self.retries = spec.get("retries")
        self.delay = spec.get("delay")
        for option in ("retries", "delay"):
            if getattr(self, option) is not None and getattr(self, option) < 0:
                raise SafeshipError("%s: %s cannot be negative." % (label, option))

    def uses(self):
        names = placeholders([self.url, self.headers, self.body, self.json_body, list(self.json_expect.values())])
        if self.bearer:
            names.add(self.bearer)
        return names

    def describe(self):
        """'GET http://...' for the top-level url, "step 1 'login' (POST /api/login)" for a step."""
        if self.index is None:
            return "%s %s" % (self.method, self.url)
        return "%s (%s %s)" % (self.label, self.method, self.url)

    def prepare(self, captures, base_url):
        """(url, headers, data) with captured values filled in."""
        url = substitute(self.url, captures)
        if base_url and not urlsplit(url).scheme:
            url = urljoin(base_url, url)
        _check_url(url, self.label)
        headers = dict((key, substitute(value, captures)) for key, value in self.headers.items())
        if self.bearer:
            headers = dict((k, v) for k, v in headers.items() if k.lower() != "authorization")
            headers["Authorization"] = "Bearer " + _as_text(captures[self.bearer])
        data = None
        if self.body is not None:
            data = substitute(self.body, captures).encode("utf-8")
        elif self.json_body is not None:
            if isinstance(self.json_body, str):
                data = substitute(self.json_body, captures).encode("utf-8")
            else:
                data = json.dumps(substitute(self.json_body, captures, native=True)).encode("utf-8")
            if not any(key.lower() == "content-type" for key in headers):
                headers["Content-Type"] = "application/json"
        return url, headers, data


class Outcome(object):
    def __init__(self, reply, problems, doc, captured=None):
        self.reply = reply
        self.problems = problems
        self.doc = doc
        self.captured = captured or {}

    @property
    def ok(self):
        return not self.problems

    @property
    def json(self):
        return None if self.doc is _NOT_JSON else self.doc


def _parse(reply):
    if reply.error is not None or not reply.body:
        return _NOT_JSON
    try:
        return json.loads(reply.text)
    except ValueError:
        return _NOT_JSON


def _expected_statuses(codes):
    if len(codes) == 1:
        return "expected %d" % codes[0]
    return "expected one of %s" % ", ".join(str(code) for code in codes)


def evaluate(check, reply, captures):
    """What is wrong with a reply (an empty list when nothing is), and the values it captures."""
    doc = _parse(reply)
    if reply.error is not None:
        return Outcome(reply, [reply.error], doc)
    problems = []
    if reply.status not in check.status_code:
        problem = "status %d, %s" % (reply.status, _expected_statuses(check.status_code))
        if 300 <= reply.status < 400 and reply.headers.get("location"):
            problem += " (redirect to %s; see follow_redirects)" % reply.headers["location"]
        return Outcome(reply, [problem], doc)
    if (check.json_expect or check.capture) and doc is _NOT_JSON:
        problems.append("body is not JSON (Content-Type: %s)" % (reply.content_type or "none"))
    else:
        for path, expected in check.json_expect.items():
            problem = expectation_problem(path, substitute(expected, captures, native=True), doc)
            if problem:
                problems.append(problem)
    if check.body_regex is not None and not check.body_regex.search(reply.text):
        problems.append("body does not match body_regex %r" % check.body_regex.pattern)
    captured = {}
    if not problems:
        for name, path in check.capture.items():
            try:
                captured[name] = lookup(doc, path)
            except PathError as exc:
                problems.append("capture %s: JSON path '%s' missing: %s" % (name, path, exc))
    return Outcome(reply, problems, doc, captured)


def explain(outcome, redactor):
    """The problems of one attempt, with an excerpt of the body (secrets masked before cutting)."""
    text = "; ".join(outcome.problems)
    reply = outcome.reply
    if reply.error is None and reply.body:
        if outcome.doc is not _NOT_JSON:
            # from the parsed document: a token written with JSON escapes ("a\/b") is still recognised
            excerpt = json.dumps(redactor.data(outcome.doc), ensure_ascii=False)
        else:
            excerpt = redactor.text(reply.text)
        cut = len(excerpt) > EXCERPT_CHARS
        text += "; body%s: %s" % (" (first %d characters)" % EXCERPT_CHARS if cut else "",
                                  json.dumps(excerpt[:EXCERPT_CHARS], ensure_ascii=False))
    return redactor.text(text)


def fails_fast(outcome, statuses):
    """Whether a failed attempt's status is one that ends the probing at once."""
    return not outcome.ok and outcome.reply.status is not None and outcome.reply.status in statuses


def check_statuses(codes, what):
    for code in codes:
        if not 100 <= code <= 599:
            raise SafeshipError("%s %d is not an HTTP status (100-599)." % (what, code))
    return codes


# ---------------------------------------------------------------------------------------------- the probe

class Probe(object):
    def __init__(self, params, redactor, check_mode=False, send=_http.send, sleep=time.sleep, clock=time.monotonic):
        self.params = params
        self.redactor = redactor
        self.check_mode = check_mode
        self._send = send
        self._sleep = sleep
        self._clock = clock
        self._context = None
        self._validate_numbers()
        if params.get("ca_path") and not os.path.isfile(params["ca_path"]):
            raise SafeshipError("ca_path %s is not a file: give the PEM file of the CA certificate(s) to trust."
                                % params["ca_path"])
        self.steps = []
        self.top = None
        if params.get("url"):
            _check_url(params["url"], "url")
            self.top = Check(params, "url")
            if self.top.uses():
                raise SafeshipError("url: ${...} placeholders are only filled in steps, from values captured by "
                                    "earlier steps; write $${ for a literal ${.")
        for index, spec in enumerate(params.get("steps") or []):
            label = "step %d" % (index + 1) + (" '%s'" % spec["name"] if spec.get("name") else "")
            self.steps.append(Check(spec, label, index, inherited_headers=params.get("headers")))
        if self.top is None and not self.steps:
            raise SafeshipError("give url, steps, or both.")
        self._check_step_urls()
        self._check_captures()
        self._collect_secrets()

    # -- validation ---------------------------------------------------------------------------------------

    def _validate_numbers(self):
        params = self.params
        if params["retries"] < 0:
            raise SafeshipError("retries cannot be negative (0 means one attempt).")
        if params["delay"] < 0:
            raise SafeshipError("delay cannot be negative.")
        if params["consecutive_successes"] < 1:
            raise SafeshipError("consecutive_successes must be at least 1.")
        if params["timeout"] <= 0:
            raise SafeshipError("timeout must be more than 0 seconds.")
        if params.get("max_latency_ms") is not None and params["max_latency_ms"] <= 0:
            raise SafeshipError("max_latency_ms must be more than 0.")
        if params.get("samples") is not None and params["samples"] < 0:
            raise SafeshipError("samples cannot be negative.")
        check_statuses(params.get("fail_fast_statuses") or [], "fail_fast_statuses")

    @property
    def base_url(self):
        if self.top is not None:
            return self.top.url
        return self.steps[0].url

    def _check_step_urls(self):
        for index, step in enumerate(self.steps):
            if placeholders(step.url):
                continue
            if index == 0 and self.top is None:
                _check_url(step.url, step.label)
            else:
                _check_url(urljoin(self.base_url, step.url), step.label)

    def _check_captures(self):
        available = set()
        for step in self.steps:
            missing = sorted(step.uses() - available)
            if missing:
                raise SafeshipError(
                    "%s uses %s, which no earlier step captures (captured before it: %s). Capture a value with "
                    "capture: {name: json.path} in an earlier step; write $${ for a literal ${."
                    % (step.label, ", ".join("${%s}" % name for name in missing),
                       ", ".join(sorted(available)) or "nothing"))
            available |= set(step.capture)

    def _collect_secrets(self):
        params = self.params
        self.redactor.add(params.get("url_password"))
        for value in params.get("redact") or []:
            self.redactor.add(value)
        for check in ([self.top] if self.top else []) + self.steps:
            password = urlsplit(check.url).password
            if password:
                self.redactor.add(password)
            for name, value in check.headers.items():
                if not placeholders(value):
                    self.redactor.add_header(name, value)
            if isinstance(check.json_body, (dict, list)):
                self.redactor.add_secret_fields(check.json_body, skip=has_placeholder)

    # -- running --------------------------------------------------------------------------------------------

    def _new_session(self):
        params = self.params
        if self._context is None:
            try:
                self._context = _http.tls_context(params["validate_certs"], params.get("ca_path"))
            except ValueError as exc:
                raise SafeshipError("%s." % exc)
        return _http.new_session(params["timeout"], validate_certs=params["validate_certs"],
                                 ca_path=params.get("ca_path"), follow_redirects=params["follow_redirects"],
                                 use_proxy=params["use_proxy"], context=self._context)

    def _attempt(self, check, session, captures):
        url, headers, data = check.prepare(captures, self.base_url)
        own_auth = any(key.lower() == "authorization" for key in headers)
        params = self.params
        reply = self._send(session, check.method, url, headers=headers, data=data, timeout=params["timeout"],
                           url_username=None if own_auth else params.get("url_username"),
                           url_password=None if own_auth else params.get("url_password"),
                           force_basic_auth=params["force_basic_auth"])
        outcome = evaluate(check, reply, captures)
        for name, value in outcome.captured.items():
            if name not in check.capture_public:
                self.redactor.add(value)
        # tokens a reply carries under secret-looking keys are masked even when nobody captures them
        if outcome.doc is not _NOT_JSON:
            self.redactor.add_secret_fields(outcome.doc, skip=has_placeholder)
        return outcome

    def _explain(self, outcome):
        return explain(outcome, self.redactor)

    def _history_entry(self, number, outcome):
        entry = dict(attempt=number, ok=outcome.ok, status=outcome.reply.status,
                     latency_ms=_round(outcome.reply.latency_ms))
        if not outcome.ok:
            entry["error"] = self.redactor.text("; ".join(outcome.problems))
        return entry

    def _wait_ready(self, check, captures):
        """Attempts until check passes consecutive_successes times in a row; at most retries + that many."""
        params = self.params
        needed = params["consecutive_successes"]
        retries = params["retries"] if check.retries is None else check.retries
        delay = params["delay"] if check.delay is None else check.delay
        limit = retries + needed
        streak = best = 0
        streak_latencies = []
        last_failure = None
        outcome = session = None
        while self.attempts < limit:
            if self.attempts:
                self._sleep(delay)
            self.attempts += 1
            session = self._new_session()
            outcome = self._attempt(check, session, captures)
            self._record(outcome)
            self.history.append(self._history_entry(self.attempts, outcome))
            if outcome.ok:
                streak += 1
                best = max(best, streak)
                streak_latencies.append(outcome.reply.latency_ms)
                if streak >= needed:
                    captures.update(outcome.captured)
                    return outcome, session, streak_latencies
            else:
                streak = 0
                streak_latencies = []
                last_failure = (self.attempts, outcome)
                self._fail_fast(check, outcome, self.attempts, limit)
            if limit - self.attempts < needed - streak:
                break  # too few attempts left to reach the streak
        span = "%d attempt%s over %.1f s" % (self.attempts, "" if self.attempts == 1 else "s", self._elapsed())
        number, failure = last_failure
        if needed > 1 and best > 0:
            msg = ("%s passed at most %d time%s in a row, consecutive_successes needs %d (%s); last failure "
                   "(attempt %d): %s" % (check.describe(), best, "" if best == 1 else "s", needed,
                                         span, number, self._explain(failure)))
        else:
            msg = "%s failed after %s: %s" % (check.describe(), span, self._explain(failure))
        raise self._failure(msg)

    def _fail_fast(self, check, outcome, attempt, limit):
        """End the probe at once when the answer's status is one of fail_fast_statuses."""
        if fails_fast(outcome, self.params.get("fail_fast_statuses") or ()):
            raise self._failure(
                "%s answered with status %d, one of fail_fast_statuses, at attempt %d (of at most %d): not "
                "retried. %s" % (check.describe(), outcome.reply.status, attempt, limit, self._explain(outcome)))

    def _record(self, outcome):
        """Top-level status/json/latencies follow the readiness check."""
        reply = outcome.reply
        self.result["status"] = reply.status
        self.result["json"] = self.redactor.data(outcome.json)
        if reply.error is None:
            self.latencies.append(reply.latency_ms)

    def _sample(self, check, captures, streak_latencies):
        params = self.params
        samples = params.get("samples")
        if samples is None:
            samples = DEFAULT_SAMPLES if params.get("max_latency_ms") is not None else 0
        measured = []
        for number in range(1, samples + 1):
            outcome = self._attempt(check, self._new_session(), captures)
            self._record(outcome)
            if not outcome.ok:
                raise self._failure("%s passed, then failed latency sample %d of %d: %s"
                                    % (check.describe(), number, samples, self._explain(outcome)))
            measured.append(outcome.reply.latency_ms)
        stats = latency_stats(measured or streak_latencies)
        self.result["latency"] = stats
        budget = params.get("max_latency_ms")
        if budget is not None and stats["p95"] > budget:
            raise self._failure("%s answered with p95 latency %.1f ms over %d request%s, above max_latency_ms "
                                "%g (p50 %.1f ms, max %.1f ms)"
                                % (check.describe(), stats["p95"], stats["count"],
                                   "" if stats["count"] == 1 else "s", budget, stats["p50"], stats["max"]))
        return stats

    def _step_entry(self, check, outcome, attempts):
        reply = outcome.reply
        captured = dict((name, value if name in check.capture_public else MASK)
                        for name, value in outcome.captured.items())
        entry = dict(name=check.name, method=check.method, url=self.redactor.text(reply.url), status=reply.status,
                     latency_ms=_round(reply.latency_ms), attempts=attempts, ok=outcome.ok,
                     json=self.redactor.data(outcome.json), captured=self.redactor.data(captured))
        if not outcome.ok:
            entry["error"] = self.redactor.text("; ".join(outcome.problems))
        return entry

    def _run_step(self, check, session, captures):
        retries = check.retries or 0
        delay = self.params["delay"] if check.delay is None else check.delay
        attempts = 0
        while True:
            attempts += 1
            outcome = self._attempt(check, session, captures)
            if outcome.ok or attempts > retries:
                break
            if fails_fast(outcome, self.params.get("fail_fast_statuses") or ()):
                self.result["steps"].append(self._step_entry(check, outcome, attempts))
                self._fail_fast(check, outcome, attempts, retries + 1)
            self._sleep(delay)
        self.result["steps"].append(self._step_entry(check, outcome, attempts))
        if not outcome.ok:
            raise self._failure("%s failed (%s %s%s): %s"
                                % (check.label, check.method, self.redactor.text(outcome.reply.url),
                                   ", %d attempts" % attempts if attempts > 1 else "", self._explain(outcome)))
        captures.update(outcome.captured)

    def _elapsed(self):
        return self._clock() - self.start

    def _failure(self, msg):
        self._finish()
        error = SafeshipError(self.redactor.text(msg))
        # set after construction: SafeshipError drops None values, and status/json are returned as null
        error.details = self.redactor.data(self.result)
        return error

    def _finish(self):
        self.result["attempts"] = self.attempts
        self.result["latencies_ms"] = [_round(value) for value in self.latencies]
        self.result["history"] = self.history
        self.result["elapsed"] = round(self._elapsed(), 3)

    def run(self):
        self.start = self._clock()
        self.attempts = 0
        self.history = []
        self.latencies = []
        self.result = dict(changed=False, url=self.redactor.text(self.base_url), status=None, json=None, latency={},
                           steps=[])
        if self.check_mode and not self.params["run_in_check_mode"]:
            self._finish()
            self.result.update(skipped=True, msg="not run in check mode (run_in_check_mode: false)")
            return self.result
        captures = {}
        first = self.top if self.top is not None else self.steps[0]
        rest = self.steps if self.top is not None else self.steps[1:]
        outcome, session, streak_latencies = self._wait_ready(first, captures)
        if self.top is None:
            self.result["steps"].append(self._step_entry(first, outcome, self.attempts))
        stats = self._sample(first, captures, streak_latencies)
        for step in rest:
            self._run_step(step, session, captures)
        self._finish()
        msg = "%s healthy (status %s) after %d attempt%s" % (
            first.describe(), outcome.reply.status, self.attempts, "" if self.attempts == 1 else "s")
        if self.steps:
            msg += "; %d step%s passed" % (len(self.steps), "" if len(self.steps) == 1 else "s")
        if stats:
            msg += "; latency p50 %.1f ms, p95 %.1f ms over %d request%s" % (
                stats["p50"], stats["p95"], stats["count"], "" if stats["count"] == 1 else "s")
        self.result["msg"] = self.redactor.text(msg)
        return self.redactor.data(self.result)


# ---------------------------------------------------------------------------------------------- watching

class HealthFailure(SafeshipError):
    """An answer that ends the watch at once (a status in fail_fast)."""


class Watch(object):
    """HTTP checks probed again and again while something settles (pm2_app's health_checks).

    specs: dicts with url, status_code, json_expect, headers, timeout. probe() sends one request per check
    and returns whether every check has answered as expected at least once; an answer whose status is in
    fail_fast (and not in the check's status_code) raises HealthFailure at once. results() says, per URL,
    what came back."""

    def __init__(self, specs, redactor, fail_fast=(), send=_http.send, clock=time.monotonic):
        self.redactor = redactor
        self.fail_fast = set(fail_fast)
        self._send = send
        self._clock = clock
        self.start = clock()
        self.checks = []
        seen = set()
        for index, spec in enumerate(specs):
            label = "health_checks[%d]" % index
            _check_url(spec.get("url") or "", label)
            if spec["url"] in seen:
                raise SafeshipError("%s: url %s is checked twice; give each URL once." % (label, spec["url"]))
            seen.add(spec["url"])
            if spec.get("timeout") is not None and spec["timeout"] <= 0:
                raise SafeshipError("%s: timeout must be more than 0 seconds." % label)
            check = Check(dict(url=spec["url"], status_code=spec.get("status_code"),
                               json_expect=spec.get("json_expect"), headers=spec.get("headers")), label)
            for name, value in check.headers.items():
                redactor.add_header(name, value)
                redactor.add(value)  # headers are no_log: every value is a secret here
            state = dict(check=check, timeout=spec.get("timeout") or 5.0, attempts=0, passed=False, last=None,
                         elapsed=None)
            self.checks.append(state)
        self._context = None

    def begin(self):
        """Count the elapsed time of the answers from now."""
        self.start = self._clock()

    def _session(self, timeout):
        if self._context is None:
            try:
                self._context = _http.tls_context()
            except ValueError as exc:
                raise SafeshipError("%s." % exc)
        return _http.new_session(timeout, context=self._context)

    def probe(self):
        """One request per check; True once every check has passed at least once."""
        for state in self.checks:
            check = state["check"]
            reply = self._send(self._session(state["timeout"]), "GET", check.url, headers=dict(check.headers),
                               timeout=state["timeout"])
            outcome = evaluate(check, reply, {})
            state["attempts"] += 1
            state["last"] = outcome
            state["elapsed"] = round(self._clock() - self.start, 3)
            if outcome.ok:
                state["passed"] = True
            elif fails_fast(outcome, self.fail_fast):
                raise HealthFailure(self.redactor.text("GET %s: %s" % (check.url, explain(outcome, self.redactor))))
        return all(state["passed"] for state in self.checks)

    def pending(self):
        """What the checks that never passed last got, in words."""
        return "; ".join(self.redactor.text("GET %s: %s" % (
            state["check"].url, explain(state["last"], self.redactor) if state["last"] else "not probed"))
            for state in self.checks if not state["passed"])

    def results(self):
        """{url: {status, ok, attempts, latency_ms, elapsed[, error]}}: ok once it answered as expected; status,
        latency and error of the last answer; elapsed: seconds from the start of the watch to that answer."""
        found = {}
        for state in self.checks:
            outcome = state["last"]
            entry = dict(ok=state["passed"], attempts=state["attempts"], elapsed=state["elapsed"],
                         status=outcome.reply.status if outcome else None,
                         latency_ms=_round(outcome.reply.latency_ms) if outcome else None)
            if outcome is not None and not outcome.ok:
                entry["error"] = self.redactor.text("; ".join(outcome.problems))
            found[self.redactor.text(state["check"].url)] = entry
        return found


def _round(value):
    return None if value is None else round(value, 1)


def run(module, runner=None):
    """The health_probe module's action: the probe's result dict, or SafeshipError with the same keys as details.
    (It runs no program: runner is unused.)"""
    return Probe(module.params, Redactor(module=module), check_mode=module.check_mode).run()
