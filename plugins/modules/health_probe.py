#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: health_probe
short_description: Prove a web application answers correctly over HTTP, with retries, latency budget and smoke steps
version_added: 0.1.0
description:
  - Sends HTTP requests from the managed host and fails unless the replies are what a healthy release gives
    back - an expected status, expected values at JSON paths (for example C(status=ok) and C(version) equal to the
    release just deployed), a body pattern, and optionally a latency budget.
  - B(Readiness.) The readiness check is O(url) (with the top-level request options), or the first of O(steps)
    when O(url) is not given. It is retried (O(retries), O(delay)) until it passes O(consecutive_successes) times
    in a row, so the probe waits for an application that is still starting and catches one that flaps. Every
    failure is retried the same way, a wrong status or version included (an old process may still answer
    during a reload).
  - B(Latency.) After the readiness check passes, O(samples) more requests are sent to it back to back; each
    must pass the same checks. RV(latency) reports p50, p95 and max; with O(max_latency_ms) the task fails when
    p95 is above it.
  - B(Smoke steps.) Then every other step runs once, in order, sharing one cookie jar (a session cookie set by a
    login step reaches later steps). A step may O(steps[].capture) values from its JSON reply (a token, an id);
    later steps use them as C(${name}) in their URL, headers, body, JSON body and expected values, or as a bearer
    token with O(steps[].bearer). A step only retries when it sets O(steps[].retries).
  - B(Messages.) A failure says what was expected and what came back - connection refused (host:port), no
    response within the timeout, connection closed without a response, TLS certificate not accepted, C(status
    503, expected 200), C(JSON path 'version' is "1.2.2", expected "1.2.3"), a missing JSON path and where it
    stops, a body that is not JSON, a body that does not match - with the attempt count and the first 200
    characters of the body (a JSON body is shown re-serialised, secrets masked).
  - B(Secrets.) Captured values (unless listed in O(steps[].capture_public)), O(url_password), O(redact), the
    password in a URL, values of headers named like C(Authorization), C(Cookie), C(X-Api-Key) or C(*token*), and
    values under keys such as C(password), C(secret), C(token), C(access_token), C(api_key) in request and reply
    JSON are masked as C(********) in every message, body excerpt and result, and registered as no_log values
    so Ansible masks them too.
  - Uses C(ansible.module_utils.urls), so it needs nothing on the managed host beyond Python.
  - Never changes the managed host; always reports C(changed=false).
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - safeship.webapp.http
options:
  url:
    description:
      - URL of the readiness check (C(http://) or C(https://)).
      - Relative step URLs (V(/api/me)) are resolved against it.
      - At least one of O(url) and O(steps) is required.
    type: str
  method:
    description:
      - HTTP method of the O(url) request.
    type: str
    default: GET
  headers:
    description:
      - Request headers of the O(url) request. Steps send them too, under their own O(steps[].headers).
      - Set V(Host) to reach one name-based virtual host or tenant through an address, for example
        O(url=http://127.0.0.1/health) with C(Host) V(acme.example.com). For C(https://) URLs the TLS server
        name stays the URL's host.
    type: dict
    default: {}
  body:
    description:
      - Request body of the O(url) request, sent as given. Set a C(Content-Type) in O(headers).
      - Mutually exclusive with O(json_body).
    type: str
  json_body:
    description:
      - Request body of the O(url) request as JSON, with C(Content-Type) V(application/json) unless O(headers) set
        one. A string is sent as is and must be JSON.
      - Mutually exclusive with O(body).
    type: raw
  status_code:
    description:
      - HTTP statuses that count as success for the O(url) request.
    type: list
    elements: int
    default: [200]
  json_expect:
    description:
      - Values the JSON reply of the O(url) request must have, as a mapping of dotted path to value. A path walks
        object keys and array indexes, for example V(status), V(checks.db) or V(items.0.id) (negative indexes
        count from the end). Keys that contain a dot cannot be addressed.
      - Values are compared as JSON values, types included. V("1.2.3") and V("200") are strings and only match
        strings; V(200) and V(1.5) are numbers and only match numbers (V(1) matches V(1.0)); V(true) does not
        match V(1). Quote versions in YAML, V("1.2") rather than V(1.2), or the expected value is the number 1.2.
        A mismatch of types says so in the failure message.
      - An object or array value must match exactly (all keys, all items).
    type: dict
    default: {}
  body_regex:
    description:
      - Python regular expression that must match somewhere in the body of the O(url) reply (C(re.search)).
    type: str
  retries:
    description:
      - How many times to retry the readiness check after a failed attempt.
      - The readiness check makes at most O(retries) + O(consecutive_successes) attempts, O(delay) seconds apart,
        and gives up earlier once too few attempts are left to reach the streak.
      - V(0) makes a single attempt (with O(consecutive_successes=1)).
    type: int
    default: 10
  delay:
    description:
      - Seconds to wait between two attempts of the readiness check (also between two successes of a streak),
        and the default wait between the retries of a step. Fractions are allowed.
    type: float
    default: 2
  consecutive_successes:
    description:
      - How many times in a row the readiness check must pass. A flapping application (answering well every
        other request) fails with V(2) or more, where V(1) may let it through.
    type: int
    default: 1
  fail_fast_statuses:
    description:
      - HTTP statuses that end the probe at once as failed, without the remaining retries, when a reply of the
        readiness check or of a step has one of them (and it is not in that request's O(status_code)). The
        message names the URL, the status and the start of the body (secrets masked).
      - For example V(500) to V(599) after a release said it is ready - an application that answers 5xx then is
        broken, waiting will not mend it. Connection errors and other statuses are retried as usual.
    type: list
    elements: int
    default: []
  max_latency_ms:
    description:
      - Latency budget in milliseconds for the p95 of the latency sample (see O(samples)). Above it the task fails,
        naming p95, p50, max and the number of requests.
      - Latency is measured with a monotonic clock from before connecting to the last byte of the body.
    type: float
  samples:
    description:
      - Requests sent to the readiness check after it passed, to measure latency. Each must pass the same checks.
      - Defaults to V(10) when O(max_latency_ms) is set, otherwise to V(0). With V(0), RV(latency) is computed over
        the passing streak of the readiness check.
    type: int
  follow_redirects:
    description:
      - V(none) reports a redirect as its 3xx status (and where it points); V(safe) follows redirects of GET and
        HEAD requests; V(all) follows every redirect.
    type: str
    choices: [none, safe, all]
    default: safe
  use_proxy:
    description:
      - Use the proxy from the environment (C(http_proxy), C(https_proxy), honouring C(no_proxy)).
    type: bool
    default: true
  url_username:
    description:
      - User name for HTTP basic authentication, sent with every request that has no C(Authorization) header of its
        own (a step with O(steps[].bearer) does not send it). C(~/.netrc) is never read.
    type: str
  url_password:
    description:
      - Password for O(url_username). Masked in all output.
    type: str
  force_basic_auth:
    description:
      - Send the basic authentication header with the first request instead of waiting for a 401 challenge.
    type: bool
    default: false
  redact:
    description:
      - More values to mask in all output (for example a password inside O(body)).
    type: list
    elements: str
    default: []
  steps:
    description:
      - A smoke flow. Without O(url), the first step is the readiness check (retried as described above) and the
        others run once each after it; with O(url), all steps run once each after the readiness check.
      - Steps send the top-level O(headers) (a step's own O(steps[].headers) win, whatever their case) and use the
        top-level O(timeout), O(validate_certs), O(ca_path), O(follow_redirects), O(use_proxy) and basic
        authentication settings. The top-level O(status_code), O(json_expect) and O(body_regex) do not apply to
        steps.
      - C(${name}) in a step's O(steps[].url), O(steps[].headers) values, O(steps[].body), O(steps[].json_body) and
        O(steps[].json_expect) values is replaced by the value captured under that name by an earlier step; a
        string that is only C(${name}) becomes the captured value itself (a number stays a number). Write C($${)
        for a literal C(${). Jinja C({{ }}) is not used because Ansible templates task arguments before the module
        runs. A name no earlier step captures is an error before any request is sent.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Name of the step, used in messages and RV(steps).
        type: str
      url:
        description:
          - URL of the step; a relative URL is resolved against O(url) (or the first step's URL).
        type: str
        required: true
      method:
        description:
          - HTTP method.
        type: str
        default: GET
      headers:
        description:
          - Request headers, added to (and overriding) the top-level O(headers).
        type: dict
        default: {}
      body:
        description:
          - Request body, sent as given. Mutually exclusive with O(steps[].json_body).
        type: str
      json_body:
        description:
          - Request body as JSON (C(Content-Type) V(application/json) unless set in the headers). Values under keys
            such as V(password) are masked in all output. Mutually exclusive with O(steps[].body).
        type: raw
      status_code:
        description:
          - HTTP statuses that count as success.
        type: list
        elements: int
        default: [200]
      json_expect:
        description:
          - Expected values at dotted JSON paths, compared as in O(json_expect).
        type: dict
        default: {}
      body_regex:
        description:
          - Regular expression that must match the body.
        type: str
      capture:
        description:
          - Values to save from the JSON reply once the step passed, as a mapping of name to dotted JSON path. A
            missing path fails the step.
          - Captured values are secrets unless listed in O(steps[].capture_public).
        type: dict
        default: {}
      capture_public:
        description:
          - Names of O(steps[].capture) whose values are not secret (ids, tenant names) and are shown in
            RV(steps).
        type: list
        elements: str
        default: []
      bearer:
        description:
          - Name of a captured value to send as C(Authorization) C(Bearer <value>).
        type: str
      retries:
        description:
          - How many times to retry this step after a failure. Defaults to V(0) (once), or to O(retries) for the
            first step when it is the readiness check.
        type: int
      delay:
        description:
          - Seconds between the retries of this step. Defaults to O(delay).
        type: float
  run_in_check_mode:
    description:
      - Whether to send the requests in check mode. A probe only reads the host, so by default it runs in check
        mode too. Steps with methods such as POST may change the application; set V(false) to skip the probe in
        check mode (the result then has C(skipped=true)).
    type: bool
    default: true
notes:
  - Attempt counts, latencies and statuses are in the result on failure as well as on success.
  - A body larger than 4 MiB is read up to 4 MiB only.
attributes:
  check_mode:
    support: full
    details: The probe only reads from the host's point of view and runs the same requests in check mode, unless
      O(run_in_check_mode=false).
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
"""

EXAMPLES = r"""
- name: Wait for the new release to answer with its version, healthy 3 times in a row
  safeship.webapp.health_probe:
    url: http://127.0.0.1:8080/health
    json_expect:
      status: ok
      version: "{{ release_version }}"
      checks.db: ok
    retries: 30
    delay: 2
    consecutive_successes: 3
    timeout: 5

- name: The release said it is ready; a 5xx answer now fails at once instead of after 30 retries
  safeship.webapp.health_probe:
    url: http://127.0.0.1:8080/health
    retries: 30
    delay: 1
    fail_fast_statuses: "{{ range(500, 600) | list }}"

- name: Latency budget - p95 of 20 requests under 300 ms
  safeship.webapp.health_probe:
    url: https://app.example.com/health
    ca_path: /etc/ssl/certs/internal-ca.pem
    max_latency_ms: 300
    samples: 20

- name: Smoke flow - log in, call the API with the token, then one tenant through its Host header
  safeship.webapp.health_probe:
    url: http://127.0.0.1:8080/health
    json_expect:
      status: ok
    steps:
      - name: login
        url: /api/login
        method: POST
        json_body:
          email: smoke@example.com
          password: "{{ vault_smoke_password }}"
        capture:
          token: access_token
          user_id: user.id
        capture_public: [user_id]
      - name: profile
        url: /api/users/${user_id}
        bearer: token
        json_expect:
          id: ${user_id}
      - name: tenant acme
        url: /api/tenant
        bearer: token
        headers:
          Host: acme.example.com
        json_expect:
          tenant: acme
  register: smoke

- name: A page, not JSON - status and a pattern
  safeship.webapp.health_probe:
    url: http://127.0.0.1/
    headers:
      Host: www.example.com
    body_regex: "<title>Example"
    retries: 5
    delay: 1

- name: In check mode, only preflight; skip the probe
  safeship.webapp.health_probe:
    url: http://127.0.0.1:8080/health
    run_in_check_mode: false
"""

RETURN = r"""
url:
  description: URL of the readiness check (password and captured secrets masked).
  returned: always
  type: str
  sample: http://127.0.0.1:8080/health
attempts:
  description: Requests made to the readiness check before it passed (or gave up); latency samples not counted.
  returned: always
  type: int
  sample: 3
status:
  description: HTTP status of the last reply of the readiness check; null when the last attempt got no reply.
  returned: always
  type: int
  sample: 200
json:
  description: The last JSON reply of the readiness check, with secrets masked; null when it was not JSON.
  returned: always
  type: raw
  sample: {status: ok, version: 1.2.3}
latencies_ms:
  description: Latency in milliseconds of every request to the readiness check that got a reply, in order
    (failed attempts and latency samples included; refused connections and timeouts not).
  returned: always
  type: list
  elements: float
  sample: [3.1, 2.4, 2.2]
latency:
  description:
    - Latency statistics in milliseconds (nearest-rank percentiles) over the O(samples) requests, or over the
      passing streak of the readiness check when O(samples=0). Empty when the readiness check did not pass.
  returned: always
  type: dict
  sample: {count: 10, min: 1.9, p50: 2.3, p95: 4.0, max: 4.0}
  contains:
    count:
      description: Number of requests measured.
      type: int
    min:
      description: Fastest request.
      type: float
    p50:
      description: Median.
      type: float
    p95:
      description: 95th percentile, compared with O(max_latency_ms).
      type: float
    max:
      description: Slowest request.
      type: float
history:
  description: Every attempt of the readiness check.
  returned: always
  type: list
  elements: dict
  sample: [{attempt: 1, ok: false, status: null, latency_ms: 0.4, error: "connection refused by 127.0.0.1:8080
           (nothing listening?)"}, {attempt: 2, ok: true, status: 200, latency_ms: 2.1}]
steps:
  description: Result of each step that ran, in order (the readiness step included when it is the first step).
  returned: always
  type: list
  elements: dict
  sample: [{name: login, method: POST, url: "http://127.0.0.1:8080/api/login", status: 200, latency_ms: 12.3,
            attempts: 1, ok: true, json: {access_token: "********"}, captured: {token: "********", user_id: 7}}]
  contains:
    name:
      description: O(steps[].name).
      type: str
    method:
      description: HTTP method.
      type: str
    url:
      description: URL requested, with captured values filled in (secrets masked).
      type: str
    status:
      description: HTTP status, or null without a reply.
      type: int
    latency_ms:
      description: Latency of the last attempt.
      type: float
    attempts:
      description: Attempts made.
      type: int
    ok:
      description: Whether the step passed.
      type: bool
    json:
      description: JSON reply (secrets masked), or null.
      type: raw
    captured:
      description: Values captured; secret ones as C(********).
      type: dict
    error:
      description: What was wrong, when the step failed.
      type: str
elapsed:
  description: Seconds the whole probe took.
  returned: always
  type: float
  sample: 4.213
skipped:
  description: True when the probe was not run because of O(run_in_check_mode=false) in check mode.
  returned: when skipped
  type: bool
  sample: true
msg:
  description: One line saying what passed (or what failed, on failure).
  returned: always
  type: str
  sample: "GET http://127.0.0.1:8080/health healthy (status 200) after 3 attempts; 2 steps passed"
executed_commands:
  description:
    - The commands the module ran, as every module of the collection returns them; always empty, this module runs
      no program.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.safeship.webapp.plugins.module_utils._health import (
    MUTUALLY_EXCLUSIVE,
    REQUIRED_ONE_OF,
    argument_spec,
    run,
)
from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_one_of=REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
