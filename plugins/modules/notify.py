#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: notify
short_description: Post deploy start, success, failure and rollback messages to Slack, Mattermost, Teams or a webhook
version_added: 0.1.0
description:
  - Posts one message about a deploy to a Slack, Mattermost or Microsoft Teams incoming webhook, or a JSON
    document to any other webhook.
  - A notification never fails the deploy. When the message cannot be delivered (connection refused, timeout,
    connection closed, HTTP 4xx/5xx, a URL that is not http(s)), the module warns, returns RV(sent=false) and
    RV(error), and does not fail, unless O(fail_on_error=true).
  - The webhook URL is a secret (Slack and Mattermost carry the token in its path, Teams Workflows in its query
    string). It is never shown; warnings, errors and RV(endpoint) show only C(scheme://host[:port]/…).
  - Transient problems (connection errors, timeouts, closed connections, HTTP 5xx, 408, 429) are retried
    O(retries) times, waiting O(delay) seconds and doubling the wait after each attempt (at most 30 s;
    a 429 answer's C(Retry-After) is honoured up to 30 s). Other 4xx answers are not retried. Redirects are
    not followed.
  - "The message is made of a headline built from O(event), O(app), O(version) and O(environment) (for example
    'Deploy failed: shop 1.4.2 (production)'), the O(msg), fields (environment, version, deploy id, user,
    duration, rolled back, and each of O(details)), the O(reason) of a failure and a O(link)."
  - "V(slack): C(text) (the headline) and one attachment in the event's colour holding Block Kit blocks.
    V(mattermost): C(text) (the headline in Markdown) and one attachment in the event's colour with the
    message, fields and error; O(channel), O(username), O(icon_url) and O(icon_emoji) when set.
    V(teams): C({type: message, attachments: [{contentType: application/vnd.microsoft.card.adaptive,
    content: <Adaptive Card 1.2>}]}), the format both Teams Workflows (the template I(Post to a channel when a
    webhook request is received)) and the older Office 365 connector webhooks accept. V(webhook): a JSON object
    with every field (see RV(payload))."
author:
  - safeship.webapp developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - safeship.webapp.http
options:
  service:
    description:
      - Which kind of endpoint O(url) is; decides the payload format.
    type: str
    required: true
    choices: [slack, mattermost, teams, webhook]
  url:
    description:
      - The incoming webhook URL (C(https://hooks.slack.com/services/...),
        C(https://mattermost.example.com/hooks/...), a Teams Workflows URL, or any endpoint accepting a JSON
        POST).
      - It is a secret; keep it in a vault. User info in it (C(https://user:pass@host/...)) is sent as basic
        authentication.
    type: str
    required: true
  event:
    description:
      - What happened. Decides the headline and the colour (blue, green, red, amber, grey).
      - V(custom) needs O(msg).
    type: str
    choices: [start, success, failure, rollback, custom]
    default: custom
  app:
    description: Name of the application deployed.
    type: str
  environment:
    description: Environment deployed to, for example V(production).
    type: str
  version:
    description: Version, tag or commit deployed.
    type: str
  deploy_id:
    description: Identifier of the deploy run (the release id), so messages of one deploy can be matched.
    type: str
  user:
    description: Who runs the deploy.
    type: str
  msg:
    description:
      - Text shown under the headline (plain text; Slack special characters are escaped). Sent as C(message) by
        O(service=webhook).
      - Required when O(event=custom).
    type: str
  link:
    description:
      - A URL to more information (the CI job, the AWX job, the release notes), shown as a C(Details) link.
        Sent as C(url) by O(service=webhook).
    type: str
  duration:
    description: How long the deploy took, in seconds; shown as C(1m 05s).
    type: float
  rolled_back:
    description:
      - Whether the deploy was rolled back. Defaults to V(true) for O(event=rollback) and V(false) otherwise.
    type: bool
  reason:
    description:
      - What went wrong, for O(event=failure) and O(event=rollback). Sent as C(error) by O(service=webhook).
    type: str
  details:
    description:
      - Extra fields, shown as C(name - value) fields in chat messages (values that are not strings as JSON)
        and sent as C(extra) by O(service=webhook).
    type: dict
    default: {}
  channel:
    description:
      - Channel to post to instead of the webhook's own. Used by V(mattermost) (when the webhook allows it) and
        by legacy Slack webhooks (Slack app webhooks ignore it); ignored by V(teams) and V(webhook).
    type: str
  username:
    description: Name to post as. Used like O(channel).
    type: str
  icon_url:
    description: URL of the picture to post with. Used like O(channel).
    type: str
  icon_emoji:
    description: Emoji to post with instead of the picture, for example V(:rocket:). Used like O(channel).
    type: str
  headers:
    description:
      - Extra HTTP headers, for example C(Authorization) for a generic webhook. C(Content-Type) is
        C(application/json) unless set here.
      - The values are treated as secrets; they are sent but never shown, and text in the result that equals a
        value is masked. Put only what the endpoint needs here.
    type: dict
    default: {}
  retries:
    description: How many times to try again after a transient failure (so at most O(retries) + 1 requests).
    type: int
    default: 2
  delay:
    description:
      - Seconds to wait before the first retry; doubled before each next one (at most 30).
      - The alias O(retry_delay) is deprecated and will be removed in 2.0.0 (O(retries) and O(delay) are the names
        every module of the collection that retries uses).
    type: float
    default: 1.0
    aliases: [retry_delay]
  fail_on_error:
    description:
      - Fail the task when the message cannot be delivered, instead of warning.
      - Leave V(false) for deploy notifications, so that a chat outage cannot fail or roll back a deploy.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Nothing is sent. The module reports C(changed=true) and the RV(payload) a real run would post (the
        message is the change a real run makes), with RV(sent=false) and RV(tries=0).
      - An O(url) that is not an http(s) URL is reported (warning, C(changed=false)) in check mode too; the
        endpoint itself is not contacted.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Every run posts a new message, so C(changed) is V(true) whenever a message was sent (or, in check mode, would
    be) and V(false) when it was not.
  - A timeout or a closed connection after the endpoint received the request can, with O(retries), lead to the
    message being posted twice. Use O(retries=0) where a duplicate is worse than a lost message.
  - Run it once per deploy (C(run_once)) and from the controller (C(delegate_to) C(localhost)) when the hosts
    cannot reach the chat service; the role C(safeship.webapp.notify) does both.
  - Microsoft retires Office 365 connectors; create the Teams URL with the Workflows app template
    I(Post to a channel when a webhook request is received). Workflows answer C(202 Accepted).
seealso:
  - module: ansible.builtin.uri
  - name: Slack incoming webhooks
    description: Creating a Slack webhook URL and the message format.
    link: https://api.slack.com/messaging/webhooks
  - name: Mattermost incoming webhooks
    description: Creating a Mattermost webhook URL and the parameters it accepts.
    link: https://developers.mattermost.com/integrate/webhooks/incoming/
  - name: Teams Workflows webhooks
    description: Posting to a Teams channel when a webhook request is received.
    link: https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
"""

EXAMPLES = r"""
- name: Tell the team a deploy starts
  safeship.webapp.notify:
    service: slack
    url: "{{ vault_slack_webhook_url }}"
    event: start
    app: shop
    environment: production
    version: "{{ release_version }}"
    deploy_id: "{{ release_id }}"
    user: "{{ awx_user_name | default(lookup('ansible.builtin.env', 'USER')) }}"
  delegate_to: localhost
  run_once: true

- name: Report a rollback on Teams, with the reason and a link to the job
  safeship.webapp.notify:
    service: teams
    url: "{{ vault_teams_workflow_url }}"
    event: rollback
    app: shop
    environment: production
    version: "1.4.2"
    reason: "health check: version is 1.4.1, expected 1.4.2"
    link: "https://awx.example.com/#/jobs/playbook/{{ awx_job_id | default(0) }}"
    duration: 312
  delegate_to: localhost
  run_once: true

- name: Post to a Mattermost channel as a named bot
  safeship.webapp.notify:
    service: mattermost
    url: "{{ vault_mattermost_webhook_url }}"
    event: success
    app: shop
    environment: staging
    version: "1.4.2"
    channel: deploys
    username: safeship
    icon_emoji: ":rocket:"
    details:
      migrations: 3
      tenants: 120

- name: Send every field to an in-house endpoint, with a bearer token
  safeship.webapp.notify:
    service: webhook
    url: https://ops.example.com/api/deploy-events
    headers:
      Authorization: "Bearer {{ vault_ops_token }}"
    event: failure
    app: shop
    environment: production
    reason: "{{ ansible_failed_result.msg | default('unknown') }}"
    retries: 0
  register: sent

- name: Fail when the release announcement could not be posted
  safeship.webapp.notify:
    service: slack
    url: "{{ vault_slack_webhook_url }}"
    event: custom
    msg: "Maintenance window tonight 22:00-22:30 UTC"
    fail_on_error: true
"""

RETURN = r"""
sent:
  description: Whether the message was delivered (the endpoint answered 2xx). Always V(false) in check mode.
  returned: always
  type: bool
  sample: true
service:
  description: The O(service) posted to.
  returned: always
  type: str
  sample: slack
event:
  description: The O(event) reported.
  returned: always
  type: str
  sample: success
endpoint:
  description: The webhook URL reduced to C(scheme://host[:port]/…), safe to show.
  returned: always
  type: str
  sample: "https://hooks.slack.com/…"
payload:
  description:
    - The JSON document posted (or, in check mode, that would be posted). It holds no part of O(url) or
      O(headers).
    - For O(service=webhook) its keys are C(event), C(title) (the headline), C(app), C(environment), C(version),
      C(deploy_id), C(user), C(message), C(url) (O(link)), C(duration) (seconds), C(rolled_back), C(error)
      (O(reason)), C(extra) (O(details)), C(timestamp) (UTC, ISO 8601) and C(source) (V(safeship.webapp));
      options not set are V(null).
  returned: always
  type: dict
  sample: {event: success, title: "Deploy succeeded: shop 1.4.2 (production)", app: shop,
           environment: production, version: "1.4.2", deploy_id: "20240501T101500Z", user: alice,
           message: null, url: null, duration: 95.2, rolled_back: false, error: null, extra: {migrations: 3},
           timestamp: "2024-05-01T10:17:02Z", source: safeship.webapp}
status:
  description: HTTP status of the last answer.
  returned: when the endpoint answered
  type: int
  sample: 200
response:
  description: The start of the last answer's body (at most 300 characters, whitespace folded).
  returned: when the endpoint answered
  type: str
  sample: ok
tries:
  description:
    - HTTP requests made, at most O(retries) + 1; 0 in check mode or when O(url) is not usable.
    - Not called C(attempts), which Ansible sets for C(until) loops.
  returned: always
  type: int
  sample: 1
error:
  description: Why the message was not delivered, with the number of attempts. Never contains any part of O(url)
    but the scheme, host and port.
  returned: when the message was not sent (not in a successful check mode run)
  type: str
  sample: "HTTP 500 Internal Server Error: upstream failed (after 3 attempts)"
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

from ansible_collections.safeship.webapp.plugins.module_utils._module import run_module
from ansible_collections.safeship.webapp.plugins.module_utils._notify import REQUIRED_IF, argument_spec, run


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=REQUIRED_IF, supports_check_mode=True)
    run_module(module, run)


if __name__ == "__main__":
    main()
