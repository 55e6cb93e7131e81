"""Shared by the testinfra checks of every scenario: each check runs on the lab host it names."""

import pytest


@pytest.fixture(autouse=True)
def _on_the_lab_host(request):
    """A check that ran on the controller by mistake would pass for the wrong reason: refuse it."""
    if "host" not in request.fixturenames:
        return
    host = request.getfixturevalue("host")
    assert host.backend.get_connection_type() != "local", "testinfra must reach the lab host over SSH"
    assert host.check_output("hostname") == host.backend.get_hostname(), "check ran on another host"
