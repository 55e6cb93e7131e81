import pytest

from ansible_collections.safeship.webapp.plugins.module_utils._check import (
    compare_counts,
    earlier_counts,
    parse_tolerance,
)
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError


@pytest.mark.parametrize("value, parsed", [(0, ("rows", 0)), (10, ("rows", 10)), ("10", ("rows", 10)),
                                           ("5%", ("percent", 5.0)), (" 2.5 % ", ("percent", 2.5))])
def test_parse_tolerance(value, parsed):
    assert parse_tolerance(value, "t") == parsed


@pytest.mark.parametrize("value", [-1, "five", "5%%", True, None, 1.5])
def test_parse_tolerance_refuses(value):
    with pytest.raises(SafeshipError, match="tolerance for t"):
        parse_tolerance(value, "t")


def test_equal_counts_have_no_differences():
    assert compare_counts({"users": 10}, {"users": 10}, {}) == []


def test_any_difference_fails_without_tolerance():
    diff = compare_counts({"users": 10}, {"users": 11}, {})
    assert diff == [dict(table="users", before=10, after=11, difference=1, allowed=0, unit="rows")]


def test_per_table_and_default_tolerance():
    before = {"orders": 1000, "users": 100, "logs": 50}
    after = {"orders": 1040, "users": 103, "logs": 50}
    diff = compare_counts(before, after, {"orders": "5%", "default": 2})
    assert [d["table"] for d in diff] == ["users"]


def test_a_table_that_disappeared_is_a_difference():
    diff = compare_counts({"users": 10}, {}, {"default": "100%"})
    assert diff[0]["after"] is None


@pytest.mark.parametrize("earlier", [
    {"users": 3},
    {"tables": {"users": 3}, "changed": False},
    {"manifest": {"tables": {"users": 3}}},
    {"users": "3"},
])
def test_earlier_counts_accepts_results_manifests_and_maps(earlier):
    assert earlier_counts(earlier) == {"users": 3}


def test_earlier_counts_refuses_garbage():
    with pytest.raises(SafeshipError, match="not a number"):
        earlier_counts({"users": "many"})
    with pytest.raises(SafeshipError, match="is not a valid name"):
        earlier_counts({"users; drop": 1})
