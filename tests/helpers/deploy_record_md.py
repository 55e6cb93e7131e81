"""A reader of deploy_record's Markdown changelog that is independent of the renderer: it sees what a CommonMark
reader (markdown-it-py, with GitHub's tables and strikethrough on) sees, and checks a record against its entry."""

import json

import pytest
from markdown_it import MarkdownIt

from ansible_collections.safeship.webapp.plugins.module_utils import _record

MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def inline_parts(token):
    """[(kind, text)] of an inline token: 'strong', 'code' or 'text'. Any other markup means escaping failed."""
    parts, strong = [], False
    for child in token.children:
        if child.type == "strong_open":
            strong = True
        elif child.type == "strong_close":
            strong = False
        elif child.type == "code_inline":
            parts.append(("code", child.content))
        elif child.type == "text":
            if child.content:  # markdown-it adds empty text tokens around emphasis markers
                parts.append(("strong" if strong else "text", child.content))
        else:
            raise AssertionError("unexpected Markdown %s in %r" % (child.type, token.content))
    merged = []
    for kind, text in parts:
        if merged and merged[-1][0] == kind and kind != "code":
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def plain(parts):
    return "".join(text for dummy, text in parts)


def parse_entries(markdown):
    """{deploy id: entry}; entry = {'title', 'fields': {label: (value parts, [sub-item parts])}, 'changes', 'error'}."""
    tokens = MD.parse(markdown)
    entries, entry, section, depth, item_depth = [], None, None, 0, []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open" and token.tag == "h2":
            entry = {"title": plain(inline_parts(tokens[i + 1])), "fields": {}, "changes": [], "error": None}
            entries.append(entry)
            section = "fields"
        elif token.type == "heading_open" and token.tag == "h3":
            section = plain(inline_parts(tokens[i + 1])).lower()
        elif token.type == "bullet_list_open":
            depth += 1
        elif token.type == "bullet_list_close":
            depth -= 1
        elif token.type == "inline" and depth and tokens[i - 1].type == "paragraph_open" and entry is not None:
            parts = inline_parts(token)
            if section == "changes":
                entry["changes"].append(plain(parts))
            elif depth == 1:
                assert parts[0][0] == "strong", parts
                label = parts[0][1].rstrip(":")
                rest = parts[1:]
                if rest:
                    assert rest[0][0] == "text" and rest[0][1].startswith(" "), rest
                    rest = [("text", rest[0][1][1:])] + rest[1:] if rest[0][1][1:] else rest[1:]
                entry["fields"][label] = (rest, [])
                item_depth = [label]
            else:
                entry["fields"][item_depth[0]][1].append(parts)
        elif token.type == "fence" and section == "error":
            entry["error"] = token.content[:-1] if token.content.endswith("\n") else token.content
        elif token.type in ("html_block", "code_block", "hr", "blockquote_open", "ordered_list_open", "table_open"):
            raise AssertionError("unexpected Markdown block %s" % token.type)
        i += 1
    result = {}
    for parsed in entries:
        deploy_id = parsed["fields"]["Deploy"][0]
        assert len(deploy_id) == 1 and deploy_id[0][0] == "code"
        result[deploy_id[0][1]] = parsed
    return result


def keyed(items):
    """Sub-items '`key`: json' -> {key: value}."""
    out = {}
    for parts in items:
        assert parts[0][0] == "code" and parts[1][1].startswith(": "), parts
        out[parts[0][1]] = json.loads(plain(parts[1:])[2:])
    return out


def seconds_of(text):
    assert text.endswith(" s"), text
    return float(text[:-2])


def assert_round_trip(record, entry):
    """Every field of the (normalized) record is in its entry, as a reader sees it."""
    fields = entry["fields"]

    def value(label):
        return plain(fields[label][0])

    assert value("App") == record["app"]
    for key, label in (("environment", "Environment"), ("version", "Version"), ("tag", "Tag"),
                       ("git_sha", "Commit"), ("user", "By")):
        if key in record:
            assert value(label) == record[key]
        else:
            assert label not in fields
    started = _record.parse_timestamp(record["started"])
    assert value("Started") == started.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert entry["title"].startswith(started.strftime("%Y-%m-%d %H:%M UTC") + " · " + record["app"])
    if "finished" in record:
        finished = _record.parse_timestamp(record["finished"])
        assert value("Finished").startswith(finished.strftime("%Y-%m-%d %H:%M:%S UTC"))
    expected_result = "rolled back" if record.get("rolled_back") else "failed" if record.get("error") else "success"
    assert value("Result") == expected_result
    if expected_result != "success":
        assert entry["title"].endswith(expected_result.upper())
    if "downtime_seconds" in record:
        assert seconds_of(value("Downtime")) == pytest.approx(record["downtime_seconds"], abs=5e-4)
    migrations = record.get("migrations", {})
    if "central" in migrations:
        assert int(value("Central migrations")) == len(migrations["central"])
        assert fields["Central migrations"][1] == [[("code", name)] for name in migrations["central"]]
    if "tenants" in migrations:
        assert keyed(fields["Tenant migrations"][1]) == migrations["tenants"]
    if "backups" in record:
        assert int(value("Backups")) == len(record["backups"])
        for backup, parts in zip(record["backups"], fields["Backups"][1]):
            codes = [text for kind, text in parts if kind == "code"]
            if "database" in backup:
                assert codes[0] == backup["database"]
                codes = codes[1:]
            else:
                assert parts[0] == ("text", "-: ")
            assert codes[0] == backup["path"]
            assert codes[1] == backup["sha256"][:12]
            size = "%d bytes" % backup["size"] if "size" in backup else "size unknown"
            assert plain(parts).endswith(", %s)" % size)
    for key, label in (("health", "Health"), ("extra", "Extra")):
        if key in record:
            assert keyed(fields[label][1]) == record[key]
    if "phases" in record:
        assert list(record["phases"]) == [parts[0][1] for parts in fields["Phases"][1]]
        for (name, seconds), parts in zip(record["phases"].items(), fields["Phases"][1]):
            assert seconds_of(plain(parts[1:])[2:]) == pytest.approx(seconds, abs=5e-4)
    assert entry["changes"] == record.get("changes", [])
    assert entry["error"] == record.get("error")
