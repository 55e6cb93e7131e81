"""The destructive_items filter: the modules' own check, for roles' preflight asserts."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.safeship.webapp.plugins.filter.destructive import FilterModule, destructive_items


@pytest.mark.parametrize("value, expected", [
    ([], []),
    (["migrate", "deploy"], []),
    (["migrate", "reset", "--force"], ["migrate reset"]),
    ([["db", "seed"], ["db", "push", "--force-reset"]], ["--force-reset"]),
    ([["migrate", "reset"], ["db", "push", "--accept-data-loss"], ["migrate", "reset"]],
     ["migrate reset", "--accept-data-loss"]),
    # each command of a list is judged on its own: `migrate` ending one and `reset` starting the next is safe
    ([["migrate"], ["reset"]], []),
    ([["sh", "-c", "npx prisma migrate reset --force"]], ["migrate reset"]),
    (["php", "artisan", "migrate:fresh", "--seed"], ["migrate:fresh", "--seed"]),
])
def test_items(value, expected):
    assert destructive_items(value) == expected


@pytest.mark.parametrize("value", ["prisma migrate reset", None, 3, {"a": 1}])
def test_not_a_list_is_an_error(value):
    with pytest.raises(AnsibleFilterError, match="expects a list of arguments"):
        destructive_items(value)


def test_registered():
    assert FilterModule().filters()["destructive_items"] is destructive_items
