# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: deploy records (one JSON line per deploy in deploys.jsonl) and their Markdown changelog (deploys.md).

Private: the interface may change without notice; only this collection's modules use it.

deploys.jsonl is the record; deploys.md is always regenerated from it with render_changelog(), so the two never
disagree. render_entry() is the one place a record becomes Markdown.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import json
import math
import os
import re
import unicodedata

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError, fsync_path, human_duration, remove_path
from ansible_collections.safeship.webapp.plugins.module_utils._state import locked, state_dir

RECORDS_FILE = "deploys.jsonl"
CHANGELOG_FILE = "deploys.md"
FILE_MODE = 0o644
MAX_ERROR = 65536

# the record's keys, in the order they are written
KEYS = ("deploy_id", "app", "environment", "version", "tag", "git_sha", "user", "started", "finished", "phases",
        "downtime_seconds", "backups", "migrations", "health", "rolled_back", "error", "changes", "extra")
REQUIRED = ("deploy_id", "app", "started")
_DEPLOY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_GIT_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

CHANGELOG_HEADER = (
    "# Deploys\n\n"
    "Newest first. Written by safeship.webapp.deploy_record from %s; do not edit, the file is regenerated from it "
    "on every record.\n")


# ---------------------------------------------------------------------------------------------------------------
# validation: every problem of a record in one message


def record_options():
    """Suboptions of the module's record option: types, required keys and no unknown keys are checked by Ansible;
    normalize_record() checks the rest (and everything again when used without the spec)."""
    return dict(
        deploy_id=dict(type="str", required=True),
        app=dict(type="str", required=True),
        environment=dict(type="str"),
        version=dict(type="raw"),
        tag=dict(type="raw"),
        git_sha=dict(type="str"),
        user=dict(type="str"),
        started=dict(type="raw", required=True),
        finished=dict(type="raw"),
        phases=dict(type="dict"),
        downtime_seconds=dict(type="float"),
        backups=dict(type="list", elements="dict"),
        migrations=dict(type="dict"),
        health=dict(type="dict"),
        rolled_back=dict(type="bool"),
        error=dict(type="str"),
        changes=dict(type="list", elements="str"),
        extra=dict(type="dict"),
    )


class _Problems(object):
    def __init__(self):
        self.items = []

    def add(self, where, text):
        self.items.append("%s %s" % (where, text))


def _has_bad_characters(text, multi_line=False):
    for char in text:
        category = unicodedata.category(char)
        if category == "Cs":
            return True
        if category == "Cc" and not (multi_line and char in "\n\t"):
            return True
    return False


def _line(value, where, problems, limit=500):
    """A one-line string (stripped); None when absent or empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(where, "must be a string (got %s %r; quote numbers such as versions)"
                     % (type(value).__name__, value))
        return None
    value = value.strip()
    if _has_bad_characters(value):
        problems.add(where, "must be one line without control characters")
        return None
    if len(value) > limit:
        problems.add(where, "is longer than %d characters" % limit)
        return None
    return value or None


def _number(value, where, problems):
    """A finite number >= 0 (numeric strings accepted), rounded to milliseconds; ints stay ints."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip()) if any(c in value for c in ".eE") else int(value.strip())
        except ValueError:
            problems.add(where, "must be a number of seconds (got %r)" % (value,))
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not math.isfinite(value)) or value < 0:
        problems.add(where, "must be a number >= 0 (got %r)" % (value,))
        return None
    if isinstance(value, float):
        value = round(value, 3)
        if value == int(value):
            return int(value)
    return value


def _count(value, where, problems):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.add(where, "must be a whole number >= 0 (got %r)" % (value,))
        return None
    return value


def parse_timestamp(value):
    """A UTC datetime from ISO 8601 text with a time zone (Z or an offset) or from epoch seconds; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(datetime.timezone.utc)


def _timestamp(value, where, problems):
    if value is None:
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        problems.add(where, "must be a date and time with a time zone, such as '2024-05-01T10:00:00Z' (got %r)"
                     % (value,))
        return None
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_value(value, where, problems):
    """Free-form data (health, extra, tenant counts): must be plain JSON with finite numbers and valid text."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeError) as exc:
        problems.add(where, "must be plain JSON data (%s)" % exc)
        return None
    return json.loads(text)


def _string_list(value, where, problems):
    if value is None:
        return None
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, list):
        problems.add(where, "must be a list of strings (got %s)" % type(value).__name__)
        return None
    items = []
    for index, item in enumerate(value):
        item = _line(item, "%s[%d]" % (where, index), problems, limit=2000)
        if item is not None:
            items.append(item)
    return items


def _boolean(value, where, problems):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    problems.add(where, "must be true or false (got %r)" % (value,))
    return None


def _error_text(value, where, problems):
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(where, "must be a string (got %s)" % type(value).__name__)
        return None
    text = _ANSI.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    if any(unicodedata.category(char) == "Cs" for char in text):
        problems.add(where, "contains invalid characters (lone surrogates)")
        return None
    text = "".join(char if char in "\n\t" or unicodedata.category(char) != "Cc" else u"\ufffd" for char in text)
    text = text.rstrip().lstrip("\n")
    if len(text) > MAX_ERROR:
        problems.add(where, "is longer than %d characters; record an excerpt" % MAX_ERROR)
        return None
    return text or None


def _backups(value, problems):
    if value is None:
        return None
    if not isinstance(value, list):
        problems.add("backups", "must be a list of {path, sha256, database} (got %s)" % type(value).__name__)
        return None
    backups = []
    for index, item in enumerate(value):
        where = "backups[%d]" % index
        if not isinstance(item, dict):
            problems.add(where, "must be a dict with path and sha256 (got %s)" % type(item).__name__)
            continue
        # a registered db_backup result works as is: sha256 and database are also read from its manifest
        manifest = item.get("manifest") if isinstance(item.get("manifest"), dict) else {}
        entry = {}
        raw_path = item.get("path")
        path = _line(raw_path, where + ".path", problems, limit=4096)
        if path is None:
            if raw_path is None or (isinstance(raw_path, str) and not raw_path.strip()):
                problems.add(where + ".path", "is required: the absolute path of the backup")
            continue
        if not path.startswith("/"):
            problems.add(where + ".path", "must be an absolute path (got %r)" % (path,))
            continue
        entry["path"] = path
        sha256 = item.get("sha256", manifest.get("sha256"))
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            problems.add(where + ".sha256", "must be the backup's sha256, 64 hexadecimal digits (got %r)" % (sha256,))
            continue
        entry["sha256"] = sha256.lower()
        database = _line(item.get("database", manifest.get("database")), where + ".database", problems)
        if database is not None:
            entry["database"] = database
        size = item.get("size", manifest.get("size"))
        if size is not None:
            size = _count(size, where + ".size", problems)
            if size is not None:
                entry["size"] = size
        backups.append(entry)
    return backups


def _migrations(value, problems):
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add("migrations", "must be a dict with central and/or tenants (got %s)" % type(value).__name__)
        return None
    unknown = sorted(set(value) - set(["central", "tenants"]))
    if unknown:
        problems.add("migrations", "has unknown keys %s (allowed: central, tenants)" % ", ".join(map(str, unknown)))
    migrations = {}
    central = _string_list(value.get("central"), "migrations.central", problems)
    if central is not None:
        migrations["central"] = central
    tenants = value.get("tenants")
    if tenants is not None:
        if not isinstance(tenants, dict):
            problems.add("migrations.tenants", "must be a dict such as {count: 120, failed: 0} (got %s)"
                         % type(tenants).__name__)
        else:
            result = {}
            for key, item in tenants.items():
                where = "migrations.tenants.%s" % key
                if key == "count":
                    item = _count(item, where, problems)
                elif key == "failed" and not isinstance(item, list):
                    item = _count(item, where, problems)
                elif key == "failed":
                    item = _string_list(item, where, problems)
                else:
                    _key(key, "migrations.tenants", problems)
                    item = _json_value(item, where, problems)
                result[key] = item
            migrations["tenants"] = result
    return migrations


def _key(key, where, problems):
    if not isinstance(key, str) or not key or _has_bad_characters(key) or len(key) > 200:
        problems.add(where, "key %r must be a non-empty line of at most 200 characters" % (key,))


def _free_dict(value, where, problems):
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add(where, "must be a dict (got %s)" % type(value).__name__)
        return None
    for key in value:
        _key(key, where, problems)
    return _json_value(value, where, problems)


def _phases(value, problems):
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add("phases", "must be a dict of phase name to seconds (got %s)" % type(value).__name__)
        return None
    phases = {}
    for key, item in value.items():
        if isinstance(key, str) and not key.strip():
            problems.add("phases key", "must not be empty")
            continue
        name = _line(key, "phases key", problems, limit=100)
        seconds = _number(item, "phases.%s" % key, problems)
        if name is not None and seconds is not None:
            phases[name] = seconds
    return phases


def normalize_record(record):
    """The record as it is stored: validated, strings stripped, times in UTC, numbers rounded to milliseconds.

    Raises one SafeshipError listing every problem."""
    if not isinstance(record, dict):
        raise SafeshipError("record must be a dict (got %s)." % type(record).__name__)
    problems = _Problems()
    unknown = sorted(str(key) for key in record if key not in KEYS)
    if unknown:
        problems.add("record", "has unknown keys %s (allowed: %s; put anything else under extra)"
                     % (", ".join(unknown), ", ".join(KEYS)))
    for key in REQUIRED:
        if record.get(key) in (None, ""):
            problems.add(key, "is required")
    out = {}
    deploy_id = record.get("deploy_id")
    if deploy_id not in (None, ""):
        if not isinstance(deploy_id, str) or not _DEPLOY_ID.match(deploy_id):
            problems.add("deploy_id", "must be 1 to 128 letters, digits, '_', '.', ':', '+' or '-', starting with a "
                                      "letter or digit (got %r)" % (deploy_id,))
        else:
            out["deploy_id"] = deploy_id
    for key in ("app", "environment", "version", "tag", "user"):
        out[key] = _line(record.get(key), key, problems)
    git_sha = _line(record.get("git_sha"), "git_sha", problems)
    if git_sha is not None and not _GIT_SHA.match(git_sha):
        problems.add("git_sha", "must be a hexadecimal commit id (got %r)" % (git_sha,))
    out["git_sha"] = git_sha.lower() if git_sha and _GIT_SHA.match(git_sha) else None
    out["started"] = _timestamp(record.get("started"), "started", problems)
    out["finished"] = _timestamp(record.get("finished"), "finished", problems)
    if out["started"] and out["finished"] and out["finished"] < out["started"]:
        problems.add("finished", "(%s) is before started (%s)" % (out["finished"], out["started"]))
    out["phases"] = _phases(record.get("phases"), problems)
    out["downtime_seconds"] = _number(record.get("downtime_seconds"), "downtime_seconds", problems)
    out["backups"] = _backups(record.get("backups"), problems)
    out["migrations"] = _migrations(record.get("migrations"), problems)
    out["health"] = _free_dict(record.get("health"), "health", problems)
    out["rolled_back"] = _boolean(record.get("rolled_back"), "rolled_back", problems)
    out["error"] = _error_text(record.get("error"), "error", problems)
    out["changes"] = _string_list(record.get("changes"), "changes", problems)
    out["extra"] = _free_dict(record.get("extra"), "extra", problems)
    if problems.items:
        raise SafeshipError("record is not valid: %s. Nothing was written." % "; ".join(problems.items),
                            problems=problems.items)
    return dict((key, out[key]) for key in KEYS if out.get(key) is not None)


# ---------------------------------------------------------------------------------------------------------------
# Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&~|#$])")
_ASCII_PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def md_text(text, block_start=True):
    """Text that CommonMark shows as is: inline markup is backslash-escaped and, when the text starts a block (a list
    item), so are the block markers a line may start with."""
    text = _MD_SPECIAL.sub(r"\\\1", text)
    if not block_start:
        return text
    if text and text[0] in _ASCII_PUNCTUATION and text[0] != "\\":
        text = "\\" + text
    match = re.match(r"^(\d+)([.)])", text)
    if match:
        text = match.group(1) + "\\" + text[len(match.group(1)):]
    return text


def md_code(text):
    """An inline code span showing text exactly (the fence is longer than any run of backticks in it)."""
    longest = max([len(run) for run in re.findall(r"`+", text)] or [0])
    fence = "`" * (longest + 1)
    # CommonMark drops one space at each end when both ends have one, and a backtick must not touch the fence
    both_spaces = text.startswith(" ") and text.endswith(" ") and text.strip(" ")
    pad = " " if text.startswith("`") or text.endswith("`") or both_spaces else ""
    return "%s%s%s%s%s" % (fence, pad, text, pad, fence)


def md_json(value):
    return md_text(json.dumps(value, ensure_ascii=False, sort_keys=True), block_start=False)


def md_fence(text, info="text"):
    longest = max([len(run) for run in re.findall(r"`+", text)] or [0])
    fence = "`" * max(3, longest + 1)
    return "%s%s\n%s\n%s\n" % (fence, info, text, fence)


def seconds_text(value):
    text = ("%.3f" % value).rstrip("0").rstrip(".")
    return "%s s" % text


def _when(stamp):
    return parse_timestamp(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")


def result_of(record):
    if record.get("rolled_back"):
        return "rolled back"
    if record.get("error"):
        return "failed"
    return "success"


def render_entry(record):
    """The Markdown changelog entry of one (normalized) record."""
    started = parse_timestamp(record["started"])
    title = "%s · %s" % (started.strftime("%Y-%m-%d %H:%M UTC"), record["app"])
    shown_version = record.get("version") or record.get("tag") or (record.get("git_sha") or "")[:12]
    if shown_version:
        title += " %s" % shown_version
    if record.get("environment"):
        title += " → %s" % record["environment"]
    result = result_of(record)
    if result != "success":
        title += " · %s" % result.upper()
    lines = ["## %s" % md_text(title), ""]

    def item(label, value):
        # the value follows the label: it never starts a block
        lines.append("- **%s:** %s" % (label, value))

    def inline(text):
        return md_text(text, block_start=False)

    def sub(value):
        lines.append("  - %s" % value)

    item("Deploy", md_code(record["deploy_id"]))
    item("App", inline(record["app"]))
    for key, label, show in (("environment", "Environment", inline), ("version", "Version", inline),
                             ("tag", "Tag", md_code), ("git_sha", "Commit", md_code), ("user", "By", inline)):
        if record.get(key):
            item(label, show(record[key]))
    item("Started", _when(record["started"]))
    if record.get("finished"):
        took = (parse_timestamp(record["finished"]) - started).total_seconds()
        item("Finished", "%s (took %s)" % (_when(record["finished"]), human_duration(took)))
    item("Result", result)
    if record.get("downtime_seconds") is not None:
        item("Downtime", seconds_text(record["downtime_seconds"]))
    migrations = record.get("migrations") or {}
    if "central" in migrations:
        item("Central migrations", str(len(migrations["central"])))
        for name in migrations["central"]:
            sub(md_code(name))
    if "tenants" in migrations:
        tenants = migrations["tenants"]
        summary = []
        if "count" in tenants:
            summary.append("%d tenants" % tenants["count"])
        if "failed" in tenants:
            failed = tenants["failed"]
            summary.append("%d failed" % (len(failed) if isinstance(failed, list) else failed))
        item("Tenant migrations", ", ".join(summary) or "see below")
        for key in sorted(tenants):
            sub("%s: %s" % (md_code(key), md_json(tenants[key])))
    if "backups" in record:
        item("Backups", str(len(record["backups"])))
        for backup in record["backups"]:
            sub("%s: %s (sha256 %s, %s)" % (md_code(backup["database"]) if "database" in backup else "-",
                                            md_code(backup["path"]),
                                            md_code(backup["sha256"][:12]),
                                            "%d bytes" % backup["size"] if "size" in backup else "size unknown"))
    for key, label in (("health", "Health"), ("extra", "Extra")):
        if key in record:
            lines.append("- **%s:**" % label)
            for name in sorted(record[key]):
                sub("%s: %s" % (md_code(name), md_json(record[key][name])))
    if "phases" in record:
        item("Phases", seconds_text(sum(record["phases"].values())))
        for name, seconds in record["phases"].items():
            sub("%s: %s" % (md_code(name), seconds_text(seconds)))
    if record.get("changes"):
        lines.extend(["", "### Changes", ""])
        lines.extend("- %s" % md_text(change) for change in record["changes"])
    if record.get("error"):
        lines.extend(["", "### Error", ""])
        lines.append(md_fence(record["error"]).rstrip("\n"))
    return "\n".join(lines) + "\n"


def newest_first(records):
    """Records ordered by start time, newest first; records started at the same time: the later written first."""
    order = sorted(enumerate(records), key=lambda pair: (str(pair[1].get("started", "")), pair[0]), reverse=True)
    return [record for dummy, record in order]


def render_changelog(records, source_name=RECORDS_FILE):
    parts = [CHANGELOG_HEADER % source_name]
    for record in newest_first(records):
        parts.append(render_entry(record))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# files


def serialize(record):
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def read_records(path, complete_only=False):
    """(records, text) from deploys.jsonl; ([], '') when it does not exist.

    complete_only: a last line without its newline is being written right now (readers without the lock) and is
    skipped; otherwise it means an interrupted write and is an error."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return [], ""
        raise SafeshipError("cannot read %s: %s" % (path, exc.strerror or exc))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SafeshipError("%s is not UTF-8 text (%s); fix or move that file." % (path, exc))
    lines = text.split("\n")
    last = lines.pop()
    if last.strip():
        if not complete_only:
            raise SafeshipError("the last line of %s is incomplete (a write was interrupted): %r. Nothing was "
                                "written; remove or complete that line." % (path, last[:200]))
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise SafeshipError("line %d of %s is not valid JSON (%s). Nothing was written; fix or remove that line."
                                % (number, path, exc))
        if not isinstance(record, dict) or not isinstance(record.get("deploy_id"), str):
            raise SafeshipError("line %d of %s is not a deploy record (no deploy_id). Nothing was written; fix or "
                                "remove that line." % (number, path))
        records.append(record)
    return records, text


def _file_mode(path):
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return FILE_MODE


def write_text_atomic(path, text):
    """Replace path with text (temporary file, fsync, rename); keeps the mode of the file it replaces."""
    mode = _file_mode(path)
    tmp = "%s.%d.partial" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fchmod(handle.fileno(), mode)
                os.fsync(handle.fileno())
        except BaseException:
            remove_path(tmp)
            raise
        os.rename(tmp, path)
    except (IOError, OSError) as exc:
        remove_path(tmp)
        raise SafeshipError("cannot write %s: %s" % (path, exc.strerror or exc))
    fsync_path(os.path.dirname(path))


def append_line(path, line):
    """Append one line with a single write; on a short or failed write the file is cut back to its old size."""
    data = line.encode("utf-8")
    created = not os.path.exists(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise SafeshipError("cannot open %s: %s" % (path, exc.strerror or exc))
    try:
        size = os.fstat(fd).st_size
        if created:
            os.fchmod(fd, FILE_MODE)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write (%d of %d bytes)" % (written, len(data)))
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, size)
            raise SafeshipError("cannot append to %s: %s. The file was left as it was." % (path, exc.strerror or exc))
    finally:
        os.close(fd)
    if created:
        fsync_path(os.path.dirname(path))


# ---------------------------------------------------------------------------------------------------------------
# the module's work


def resolve_paths(params):
    app_root = params.get("app_root")
    path = params.get("path")
    if path is None:
        if not app_root:
            raise SafeshipError("give app_root or path.")
        path = os.path.join(state_dir(app_root), RECORDS_FILE)
    changelog = params.get("changelog_path")
    if changelog is None:
        if app_root and params.get("path") is None:
            changelog = os.path.join(state_dir(app_root), CHANGELOG_FILE)
        else:
            changelog = os.path.splitext(path)[0] + ".md"
    for name, value in (("path", path), ("changelog_path", changelog)):
        if not os.path.isabs(value):
            raise SafeshipError("%s %r must be an absolute path." % (name, value))
    if os.path.realpath(path) == os.path.realpath(changelog):
        raise SafeshipError("path and changelog_path are the same file (%s)." % path)
    return path, changelog


def _ensure_directories(params, path, changelog, create):
    app_root = params.get("app_root")
    if app_root and not os.path.isdir(app_root):
        raise SafeshipError("app_root %s does not exist." % app_root)
    for target in (path, changelog):
        directory = os.path.dirname(target)
        if os.path.isdir(directory):
            continue
        if app_root and directory == state_dir(app_root):
            if create:
                state_dir(app_root, create=True)
            continue
        raise SafeshipError("directory %s does not exist (for %s)." % (directory, target))


def record_present(params, check_mode=False, diff=False):
    record = normalize_record(params.get("record"))
    path, changelog = resolve_paths(params)
    _ensure_directories(params, path, changelog, create=not check_mode)
    if check_mode:
        return _plan_present(record, path, changelog, diff, check_mode=True)
    with locked(path):
        return _plan_present(record, path, changelog, diff, check_mode=False)


def _plan_present(record, path, changelog, diff, check_mode):
    records, text = read_records(path)
    existing = [r for r in records if r.get("deploy_id") == record["deploy_id"]]
    if not existing:
        action = "added"
        new_records = records + [record]
    elif len(existing) == 1 and existing[0] == record:
        action = "unchanged"
        new_records = records
    else:
        action = "updated"
        new_records = []
        for item in records:
            if item.get("deploy_id") != record["deploy_id"]:
                new_records.append(item)
            elif record not in new_records:
                new_records.append(record)
    markdown = render_changelog(new_records, os.path.basename(path))
    try:
        with open(changelog, "rb") as handle:
            current_markdown = handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        current_markdown = None
    changelog_changed = current_markdown != markdown
    entry = render_entry(record)
    result = dict(changed=action != "unchanged" or changelog_changed, action=action, record=record, path=path,
                  changelog_path=changelog, entry=entry)
    if diff:
        before_line = "".join(serialize(item) for item in existing)
        before_entry = "".join(render_entry(item) for item in existing)
        result["diff"] = [
            dict(before_header=path, after_header=path, before=before_line, after=serialize(record)),
            dict(before_header="%s (entry %s)" % (changelog, record["deploy_id"]),
                 after_header="%s (entry %s)" % (changelog, record["deploy_id"]),
                 before=before_entry if current_markdown is not None else "", after=entry),
        ]
    if check_mode or not result["changed"]:
        return result
    if action == "added":
        append_line(path, serialize(record))
    elif action == "updated":
        write_text_atomic(path, "".join(serialize(item) for item in new_records))
    if changelog_changed:
        try:
            write_text_atomic(changelog, markdown)
        except SafeshipError as exc:
            raise SafeshipError("the record was %s in %s, but the changelog could not be written: %s" %
                                (action, path, exc.msg), changed=action != "unchanged", path=path)
    return result


def record_query(params):
    path, changelog = resolve_paths(params)
    count = params.get("count")
    if count is None or count < 1:
        raise SafeshipError("count must be 1 or more (got %r)." % (count,))
    records, dummy = read_records(path, complete_only=True)
    for key in ("environment", "app"):
        if params.get(key):
            records = [record for record in records if record.get(key) == params[key]]
    ordered = newest_first(records)
    return dict(changed=False, records=ordered[:count], total=len(ordered), path=path, changelog_path=changelog)


def argument_spec():
    return dict(
        app_root=dict(type="path"),
        path=dict(type="path"),
        changelog_path=dict(type="path"),
        state=dict(type="str", choices=["present", "query"], default="present"),
        record=dict(type="dict", options=record_options()),
        count=dict(type="int", default=10),
        environment=dict(type="str"),
        app=dict(type="str"),
    )


REQUIRED_ONE_OF = [["app_root", "path"]]
REQUIRED_IF = [["state", "present", ["record"]]]


def run(module, runner=None):
    """The deploy_record module's action (it runs no program: runner is unused)."""
    return manage(module.params, check_mode=module.check_mode, diff=module._diff)


def manage(params, check_mode=False, diff=False):
    """Append a record (state present) or read the last ones (state query)."""
    if params.get("state") == "query":
        return record_query(params)
    if params.get("record") is None:
        raise SafeshipError("record is required with state: present.")
    return record_present(params, check_mode=check_mode, diff=diff)
