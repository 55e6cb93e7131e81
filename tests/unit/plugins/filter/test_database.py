"""The db_connection filter keeps exactly the database modules' connection options."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.safeship.webapp.plugins.filter.database import FilterModule, db_connection
from ansible_collections.safeship.webapp.plugins.module_utils._database import connection_argument_spec


def test_keeps_the_connection_and_drops_the_rest():
    entry = dict(engine="postgresql", login_host="db1", login_port=5432, login_user="u", login_password="p",
                 database="shop", db="alias", ssl_rootcert="/ca.pem", name="shop", tables=["users"], keep=3,
                 dest="/backups", target="shop_drill")
    assert db_connection(entry) == dict(engine="postgresql", login_host="db1", login_port=5432, login_user="u",
                                        login_password="p", database="shop", db="alias", ssl_rootcert="/ca.pem")


def test_every_option_of_the_spec_is_kept():
    spec = connection_argument_spec()
    entry = dict((key, key) for key in spec)
    assert db_connection(entry) == entry


@pytest.mark.parametrize("value", [["engine"], "engine=sqlite", None])
def test_not_a_mapping_is_an_error(value):
    with pytest.raises(AnsibleFilterError, match="expects a mapping"):
        db_connection(value)


def test_registered():
    assert FilterModule().filters()["db_connection"] is db_connection
