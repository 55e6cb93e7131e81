"""The one Redactor every module masks secrets with: values given up front (a URL's password among them),
secrets found on the way (headers, JSON fields), text and data, Ansible's no_log values."""

import pytest

from ansible_collections.safeship.webapp.plugins.module_utils._redact import MASK, Redactor, secret_key


class NoLogModule(object):
    def __init__(self):
        self.no_log_values = set()


def test_values_given_up_front_and_url_passwords_as_written_and_decoded():
    redact = Redactor(["postgresql://shop:p%40ss-w0rd@db:5432/shop", "hunter22", "", None, 5432])
    text = redact("url postgresql://shop:p%40ss-w0rd@db:5432/shop, p%40ss-w0rd, p@ss-w0rd, hunter22 on 5432")
    assert text == "url ********, ********, ********, ******** on ********"
    assert redact.contains_secret("--password=hunter22") and not redact.contains_secret("safe")
    assert redact(None) == "" and redact.text(None) is None


def test_masks_text_and_data_and_registers_no_log_values():
    module = NoLogModule()
    redactor = Redactor(module=module)
    redactor.add("tok_secret_value")
    redactor.add(123456)
    redactor.add("")
    assert module.no_log_values == {"tok_secret_value", "123456"}
    assert redactor.text("Bearer tok_secret_value!") == "Bearer %s!" % MASK
    data = redactor.data({"a": ["x tok_secret_value"], "n": 123456, "ok": 1, "access_token": "other-token",
                          "token_type": "Bearer"})
    assert data == {"a": ["x ********"], "n": "********", "ok": 1, "access_token": "********",
                    "token_type": "Bearer"}


def test_longest_secret_is_masked_first():
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor.secrets == ["abcdefgh", "abcd"]
    assert redactor.text("xabcdefghx abcd") == "x********x ********"


def test_secret_headers_and_fields():
    redactor = Redactor()
    redactor.add_header("Authorization", "Bearer tok-123456")
    redactor.add_header("X-Api-Key", "key-999999")
    redactor.add_header("Host", "acme.example.test")
    redactor.add_secret_fields({"email": "a@example.test", "password": "hunter22", "api_key": "${key}",
                                "nested": [{"client_secret": "s3cr3t-x"}], "token_type": "Bearer", "pin": "1"},
                               skip=lambda value: "${" in str(value))
    assert set(redactor.secrets) == {"Bearer tok-123456", "tok-123456", "key-999999", "hunter22", "s3cr3t-x"}


@pytest.mark.parametrize("name, secret", [("Authorization", True), ("Cookie", True), ("X-Api-Key", True),
                                          ("access_token", True), ("password", True), ("Host", False),
                                          ("token_type", False), ("expires_in", False), ("email", False)])
def test_secret_key(name, secret):
    assert secret_key(name) is secret
