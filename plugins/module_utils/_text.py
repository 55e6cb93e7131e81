# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the text helpers the modules share to shorten a program's output for a result or a message,
and to read a user's regular expression."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError

TAIL_LINES = 40
MESSAGE_LINES = 5


def tail(text, lines=TAIL_LINES, limit=None):
    """The last lines of text (at most limit characters, cut at the start, when given)."""
    kept = "\n".join((text or "").rstrip().splitlines()[-lines:])
    if limit is not None and len(kept) > limit:
        kept = "..." + kept[-limit:]
    return kept


def first_lines(text, lines=MESSAGE_LINES, width=240):
    """The first non-blank lines of text joined with ' / ', each cut at width: output as one message line."""
    kept = [line.strip() for line in (text or "").splitlines() if line.strip()]
    kept = [line if len(line) <= width else line[:width] + "..." for line in kept[:lines]]
    return " / ".join(kept)


def compile_regex(pattern, option):
    """re.compile(pattern), or an error naming the option it came from."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SafeshipError("%s is not a valid regular expression (%s): %s" % (option, exc, pattern))
