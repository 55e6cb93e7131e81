"""The db_entries filter: every entry over the shared connection, each named as the roles name them."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.safeship.webapp.plugins.filter.database import FilterModule, db_entries


def test_entries_over_the_shared_connection_named_by_database():
    shared = dict(engine="postgresql", login_host="db1", login_password="p", database="central")
    entries = db_entries([{}, dict(database="tenant_a"), dict(database="tenant_b", name="b", login_host="db2")],
                         shared)
    assert [e["name"] for e in entries] == ["central", "tenant_a", "b"]
    assert [e["database"] for e in entries] == ["central", "tenant_a", "tenant_b"]
    assert [e["login_host"] for e in entries] == ["db1", "db1", "db2"]
    assert all(e["login_password"] == "p" for e in entries)
    assert shared == dict(engine="postgresql", login_host="db1", login_password="p", database="central")


@pytest.mark.parametrize("path, name", [("/srv/app/shared/data/app.sqlite", "app"), ("/x/shop.sqlite3", "shop"),
                                        ("/x/notes.db", "notes"), ("/x/plain", "plain")])
def test_sqlite_files_are_named_without_their_suffix(path, name):
    assert db_entries([dict(engine="sqlite", database=path)])[0]["name"] == name


def test_an_entry_without_a_database_gets_an_empty_name():
    # the roles' own checks then name what is missing
    assert db_entries([dict(engine="mysql")])[0]["name"] == ""


@pytest.mark.parametrize("entries, shared, message", [
    ("central", None, "expects a list"),
    ([dict(database="a"), "b"], None, "entry 1 is a str"),
    ([dict(database="a")], ["engine"], "expects a mapping"),
])
def test_bad_input_is_named(entries, shared, message):
    with pytest.raises(AnsibleFilterError, match=message):
        db_entries(entries, shared)


def test_registered():
    assert FilterModule().filters()["db_entries"] is db_entries
