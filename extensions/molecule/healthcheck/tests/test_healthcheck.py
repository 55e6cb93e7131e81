"""The host healthcheck probed: nginx a running, enabled systemd unit, listening, answering /health."""


def test_nginx_is_a_running_enabled_unit(host):
    nginx = host.service("nginx")
    assert nginx.is_running
    assert nginx.is_enabled


def test_nginx_listens_on_80(host):
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_health_answers_the_version(host):
    body = host.check_output("curl -fsS http://127.0.0.1/health")
    assert '"version": "1.4.2"' in body
