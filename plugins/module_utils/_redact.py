# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the one way this collection masks secrets in what it returns.

A Redactor holds the secrets known so far (values given to it, the password of a URL among them,
secret-looking fields of a JSON document) and replaces each of them by ``********`` in text and in
data, longest first, so a secret that contains another is masked whole. Given the module, it also
registers every secret with Ansible's no_log values, which Ansible masks in the whole result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

try:
    from urllib.parse import unquote
except ImportError:  # pragma: no cover - Python 2
    from urllib import unquote

MASK = "********"
# Header names and JSON keys whose values are treated as secrets.
_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api[-_]?key|authori[sz]ation|cookie|credential", re.I)
# ...but not what describes a secret: token_type, expires_in, token_ttl...
_DESCRIBES_SECRET = re.compile(r"[-_]?(type|kind|expires?([-_]?(in|at))?|ttl|scope|length)$", re.I)
# Values found by that rule (not named by the user) shorter than this are not masked: masking "ok" or "1"
# everywhere would make the output unreadable and protect nothing.
MIN_AUTO_SECRET = 4
# scheme://user:PASSWORD@host...
_URL_PASSWORD = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*:([^@/]+)@")


def secret_key(name):
    """Whether a header name or JSON key names a secret (password, token, access_token, X-Api-Key...)."""
    name = str(name)
    return bool(_SECRET_KEY.search(name)) and not _DESCRIBES_SECRET.search(name)


def _maskable(value):
    return isinstance(value, str) and len(value) >= MIN_AUTO_SECRET


class Redactor(object):
    """Secrets seen so far; masks them in text and data.

    values: secrets known from the start (None and empty ones are skipped). module: when given, every
    secret is also added to module.no_log_values."""

    def __init__(self, values=(), module=None):
        self.module = module
        self._secrets = set()
        for value in values:
            self.add(value)

    @property
    def secrets(self):
        """The secrets, longest first."""
        return sorted(self._secrets, key=len, reverse=True)

    def add(self, value, minimum=1):
        """A secret (a dict or list as its JSON text); a URL's password is added on its own too, as written
        and percent-decoded. Values shorter than minimum are ignored."""
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, (dict, list)):
            text = json.dumps(value, sort_keys=True)
        else:
            text = value if isinstance(value, str) else str(value)
        if len(text) < max(minimum, 1):
            return
        found = [text]
        match = _URL_PASSWORD.match(text)
        if match:
            found += [match.group(1), unquote(match.group(1))]
        for secret in found:
            self._secrets.add(secret)
            if self.module is not None:
                self.module.no_log_values.add(secret)

    def add_header(self, name, value):
        """A secret header's value, and its credential without the scheme ('Bearer abc' -> 'abc' too)."""
        if value is None or not secret_key(name):
            return
        value = str(value)
        self.add(value, MIN_AUTO_SECRET)
        parts = value.split(None, 1)
        if len(parts) == 2:
            self.add(parts[1], MIN_AUTO_SECRET)

    def add_secret_fields(self, data, skip=None):
        """Values under secret-looking keys (password, token, access_token, api_key...) of a JSON document;
        skip(value) -> True leaves a value out (a placeholder rather than a secret)."""
        if isinstance(data, dict):
            for key, value in data.items():
                if secret_key(key) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    if skip is None or not skip(value):
                        self.add(value, MIN_AUTO_SECRET)
                else:
                    self.add_secret_fields(value, skip)
        elif isinstance(data, list):
            for item in data:
                self.add_secret_fields(item, skip)

    def text(self, value):
        """value as text with every secret masked; None stays None."""
        if value is None:
            return value
        value = str(value)
        for secret in self.secrets:
            value = value.replace(secret, MASK)
        return value

    def __call__(self, text):
        """text with every secret masked; None is ''."""
        return self.text(text or "")

    def data(self, value):
        """A copy of JSON-like data with secrets masked in strings, and values under secret-looking keys masked."""
        if isinstance(value, dict):
            return dict((self.text(key), MASK if secret_key(key) and _maskable(item) else self.data(item))
                        for key, item in value.items())
        if isinstance(value, list):
            return [self.data(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and str(value) in self._secrets:
            return MASK
        return value

    def contains_secret(self, text):
        text = str(text)
        return any(secret in text for secret in self._secrets)
