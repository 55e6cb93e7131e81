# -*- coding: utf-8 -*-
# Copyright: safeship.webapp contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: read-only database checks (the logic behind the db_check module)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError, split_table_name
from ansible_collections.safeship.webapp.plugins.module_utils._database import connect, connection_argument_spec

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        count_tables=dict(type="list", elements="str", default=[]),
        required_tables=dict(type="list", elements="str", default=[]),
        compare_to=dict(type="dict"),
        tolerance=dict(type="dict", default={}),
        require_migrate_privileges=dict(type="bool", default=False),
    )
    return spec


def parse_tolerance(value, table):
    """Allowed difference in rows for table: an int (rows) or 'N%' (of the earlier count)."""
    if isinstance(value, bool):
        raise SafeshipError("tolerance for %s must be a number of rows or a percentage like '5%%'." % table)
    if isinstance(value, int):
        if value < 0:
            raise SafeshipError("tolerance for %s cannot be negative." % table)
        return ("rows", value)
    if isinstance(value, str):
        if value.strip().isdigit():
            return ("rows", int(value))
        match = _PERCENT.match(value)
        if match:
            return ("percent", float(match.group(1)))
    raise SafeshipError("tolerance for %s must be a number of rows or a percentage like '5%%', not %r."
                        % (table, value))


def earlier_counts(compare_to):
    """Accept a whole registered db_check (or db_backup manifest) result, or a plain {table: rows}."""
    counts = compare_to
    if isinstance(compare_to.get("tables"), dict):
        counts = compare_to["tables"]
    elif isinstance(compare_to.get("manifest"), dict) and isinstance(compare_to["manifest"].get("tables"), dict):
        counts = compare_to["manifest"]["tables"]
    result = {}
    for table, rows in counts.items():
        split_table_name(table)
        try:
            result[table] = int(rows)
        except (TypeError, ValueError):
            raise SafeshipError("compare_to: the row count of %s is %r, not a number." % (table, rows))
    return result


def compare_counts(before, after, tolerance):
    """List of differences beyond tolerance (each a dict); tables gone count as differences."""
    default = parse_tolerance(tolerance.get("default", 0), "default")
    off = []
    for table, old in sorted(before.items()):
        kind, amount = parse_tolerance(tolerance[table], table) if table in tolerance else default
        new = after.get(table)
        if new is None:
            off.append(dict(table=table, before=old, after=None, difference=None, allowed=amount, unit=kind))
            continue
        allowed = amount if kind == "rows" else old * amount / 100.0
        if abs(new - old) > allowed:
            off.append(dict(table=table, before=old, after=new, difference=new - old, allowed=amount, unit=kind))
    return off


def run(module, runner):
    """The db_check module's action."""
    return check(module.params, connect(module.params, runner))


def check(params, engine):
    """Connectivity, version, size, tables, row counts (against an earlier snapshot) and grants of a database."""
    count_tables = list(params["count_tables"])
    required = list(params["required_tables"])
    for table in count_tables + required + list(params["tolerance"]):
        if table != "default":
            split_table_name(table)
    before = earlier_counts(params["compare_to"]) if params.get("compare_to") is not None else None
    for table in params["tolerance"]:
        parse_tolerance(params["tolerance"][table], table)

    result = dict(changed=False, connected=False)
    result["server_version"] = engine.server_version()
    result["connected"] = True
    result["size"] = engine.database_size()
    wanted = list(dict.fromkeys(count_tables + (list(before) if before else [])))
    missing = engine.missing_tables(list(dict.fromkeys(required + wanted)))
    result["missing_tables"] = missing
    result["tables"] = engine.count_rows([t for t in wanted if t not in missing])
    privileges = engine.privileges()
    result["privileges"] = privileges
    result["can_migrate"] = bool(privileges.get("superuser") or (
        privileges.get("create_in_schema") and privileges.get("owns_all_tables", True)
        and privileges.get("alter", True)))

    problems = []
    missing_required = [t for t in required if t in missing]
    missing_counted = [t for t in wanted if t in missing and t not in required]
    if missing_required:
        problems.append("required table(s) missing: %s" % ", ".join(missing_required))
    if missing_counted:
        problems.append("table(s) to count not found: %s" % ", ".join(missing_counted))
    if before is not None:
        differences = compare_counts(before, result["tables"], params["tolerance"])
        result["differences"] = differences
        if differences:
            problems.append("row counts off: %s" % "; ".join(
                "%s %s -> %s (allowed %s%s)" % (d["table"], d["before"], "missing" if d["after"] is None else d["after"],
                                                d["allowed"], "%" if d["unit"] == "percent" else " rows")
                for d in differences))
    if params.get("require_migrate_privileges") and not result["can_migrate"]:
        problems.append("user %r may not run migrations here (needs CREATE in the schema and ownership of the "
                        "tables): %s" % (privileges.get("user"), privileges))
    if problems:
        raise SafeshipError("%s: %s." % (engine.where(), "; ".join(problems)), **result)
    return result
