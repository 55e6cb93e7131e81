"""deploy_record run as Ansible runs it: four ways for present and query, replacing a record, bad records leaving the
files alone, the changelog always matching the records, and concurrent appends from many processes."""

import json
import multiprocessing
import os

from helpers.deploy_record_md import assert_round_trip, parse_entries
from ansible_collections.safeship.webapp.plugins.module_utils import _record

SHA = "9f2c4e8a1b3d5f7091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8"


def make_record(deploy_id="20240501T100000Z", **changes):
    record = {
        "deploy_id": deploy_id, "app": "shop", "environment": "production", "version": "1.4.2", "tag": "v1.4.2",
        "git_sha": "0123456789abcdef0123456789abcdef01234567", "user": "alice",
        "started": "2024-05-01T10:00:00Z", "finished": "2024-05-01T10:07:12Z",
        "phases": {"backup": 12.5, "migrate": 40, "switch": 0.4}, "downtime_seconds": 0,
        "backups": [{"path": "/var/backups/shop/shop_1.dump", "sha256": SHA, "database": "shop"}],
        "migrations": {"central": ["2024_05_01_000000_add_payments"], "tenants": {"count": 120, "failed": 0}},
        "health": {"status": 200, "version": "1.4.2"}, "rolled_back": False,
        "changes": ["Checkout: one-click payment"],
    }
    record.update(changes)
    return record


def read_lines(path):
    with open(str(path)) as handle:
        return [json.loads(line) for line in handle.read().splitlines()]


def snapshot(directory):
    """{name: bytes} of the files in directory (None when it does not exist)."""
    directory = str(directory)
    if not os.path.isdir(directory):
        return None
    return dict((name, open(os.path.join(directory, name), "rb").read()) for name in sorted(os.listdir(directory)))


def assert_changelog_matches(state):
    records = read_lines(state / "deploys.jsonl")
    markdown = (state / "deploys.md").read_text()
    assert markdown == _record.render_changelog(records)
    entries = parse_entries(markdown)
    assert list(entries) == [r["deploy_id"] for r in _record.newest_first(records)]
    for record in records:
        assert_round_trip(record, entries[record["deploy_id"]])


def test_deploy_record_four_ways(run_module, tmp_path):
    app_root = tmp_path / "shop"
    app_root.mkdir()
    state = app_root / ".safeship"
    args = dict(app_root=str(app_root), record=make_record())

    check = run_module("deploy_record", args, check_mode=True, diff=True)
    assert not check.get("failed"), check.get("msg")
    assert check["changed"] is True and check["action"] == "added"
    assert check["entry"].startswith("## 2024-05-01 10:00 UTC · shop 1.4.2 → production\n")
    assert check["diff"][0]["before"] == "" and json.loads(check["diff"][0]["after"]) == check["record"]
    assert not state.exists()

    real = run_module("deploy_record", args, diff=True)
    assert real["changed"] is True and real["action"] == "added"
    assert real["path"] == str(state / "deploys.jsonl") and real["changelog_path"] == str(state / "deploys.md")
    assert read_lines(state / "deploys.jsonl") == [real["record"]]
    assert real["entry"] in (state / "deploys.md").read_text()
    assert_changelog_matches(state)
    assert oct(os.stat(str(state / "deploys.jsonl")).st_mode & 0o777) == "0o644"
    assert oct(os.stat(str(state / "deploys.md")).st_mode & 0o777) == "0o644"
    files = snapshot(state)

    again = run_module("deploy_record", args, diff=True)
    assert again["changed"] is False and again["action"] == "unchanged"
    assert again["diff"][0]["before"] == again["diff"][0]["after"]
    check_again = run_module("deploy_record", args, check_mode=True)
    assert check_again["changed"] is False and check_again["action"] == "unchanged"
    assert snapshot(state) == files


def test_query_four_ways_newest_first(run_module, tmp_path):
    app_root = str(tmp_path)
    days = ["2024-05-03", "2024-05-01", "2024-05-04", "2024-05-02"]
    for number, day in enumerate(days):
        environment = "staging" if number == 2 else "production"
        result = run_module("deploy_record", dict(app_root=app_root, record=make_record(
            "d%d" % number, started=day + "T10:00:00Z", finished=None, environment=environment)))
        assert result["changed"] is True
    files = snapshot(tmp_path / ".safeship")
    args = dict(app_root=app_root, state="query", count=2, environment="production")
    results = [run_module("deploy_record", args, check_mode=mode) for mode in (True, False, False, True)]
    for result in results:
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is False and result["total"] == 3
        assert [r["deploy_id"] for r in result["records"]] == ["d0", "d3"]
    everything = run_module("deploy_record", dict(app_root=app_root, state="query", count=10))
    assert [r["deploy_id"] for r in everything["records"]] == ["d2", "d0", "d3", "d1"]
    assert snapshot(tmp_path / ".safeship") == files
    empty = run_module("deploy_record", dict(app_root=str(tmp_path / "elsewhere"), state="query"))
    assert empty["records"] == [] and empty["total"] == 0 and not (tmp_path / "elsewhere").exists()


def test_same_deploy_id_with_other_content_replaces_the_record(run_module, tmp_path):
    state = tmp_path / ".safeship"
    for deploy_id, day in (("d1", "2024-05-01"), ("d2", "2024-05-02")):
        record = make_record(deploy_id, started=day + "T10:00:00Z", finished=None)
        assert run_module("deploy_record", dict(app_root=str(tmp_path), record=record))["changed"] is True
    failed = make_record("d1", started="2024-05-01T10:00:00Z", rolled_back=True, error="health check: got 502")
    check = run_module("deploy_record", dict(app_root=str(tmp_path), record=failed), check_mode=True, diff=True)
    assert check["changed"] is True and check["action"] == "updated"
    assert '"rolled_back":false' in check["diff"][0]["before"] and '"rolled_back":true' in check["diff"][0]["after"]
    assert "ROLLED BACK" in check["diff"][1]["after"] and "ROLLED BACK" not in check["diff"][1]["before"]
    assert [r.get("rolled_back") for r in read_lines(state / "deploys.jsonl")] == [False, False]
    updated = run_module("deploy_record", dict(app_root=str(tmp_path), record=failed))
    assert updated["changed"] is True and updated["action"] == "updated"
    lines = read_lines(state / "deploys.jsonl")
    assert [r["deploy_id"] for r in lines] == ["d1", "d2"] and lines[0]["rolled_back"] is True
    assert_changelog_matches(state)
    assert "health check: got 502" in (state / "deploys.md").read_text()


def test_changelog_is_regenerated_when_it_does_not_match(run_module, tmp_path):
    state = tmp_path / ".safeship"
    args = dict(app_root=str(tmp_path), record=make_record())
    run_module("deploy_record", args)
    (state / "deploys.md").write_text("edited by hand\n")
    result = run_module("deploy_record", args)
    assert result["changed"] is True and result["action"] == "unchanged"
    assert_changelog_matches(state)
    (state / "deploys.md").unlink()
    assert run_module("deploy_record", args)["changed"] is True
    assert_changelog_matches(state)


def test_bad_records_change_nothing(run_module, tmp_path):
    args = dict(app_root=str(tmp_path))
    # nothing recorded yet: nothing is created either
    missing = run_module("deploy_record", dict(args, record=make_record(started="yesterday", downtime_seconds=-1)))
    assert missing["failed"] is True and missing["changed"] is False
    assert missing["msg"].startswith("record is not valid: started must be a date and time")
    assert "downtime_seconds must be a number >= 0" in missing["msg"] and len(missing["problems"]) == 2
    assert os.listdir(str(tmp_path)) == []

    run_module("deploy_record", dict(args, record=make_record("good")))
    files = snapshot(tmp_path / ".safeship")
    for record, text in ((make_record("../x"), "deploy_id must be"),
                         (make_record(version=1.1), "version must be a string"),
                         (make_record(backups=[{"path": "/b.dump"}]), "backups[0].sha256"),
                         (make_record(rolledback=True), "rolledback"),
                         (make_record(deploy_id=None), "deploy_id"),
                         (dict(make_record(), migrations={"central": [], "tenant": {}}), "unknown keys tenant")):
        result = run_module("deploy_record", dict(args, record=record))
        # Ansible's own argument checks (unknown or missing keys) fail without a changed key
        assert result["failed"] is True and result.get("changed", False) is False, result
        assert text in result["msg"], result["msg"]
        assert snapshot(tmp_path / ".safeship") == files

    # a damaged records file is reported, not rewritten
    with open(str(tmp_path / ".safeship" / "deploys.jsonl"), "a") as handle:
        handle.write('{"deploy_id": "half')
    files = snapshot(tmp_path / ".safeship")
    damaged = run_module("deploy_record", dict(args, record=make_record("next")))
    assert damaged["failed"] is True and "last line of" in damaged["msg"] and "incomplete" in damaged["msg"]
    assert snapshot(tmp_path / ".safeship") == files
    # readers skip a line being written
    assert [r["deploy_id"] for r in run_module("deploy_record", dict(args, state="query"))["records"]] == ["good"]


def test_paths_can_be_chosen(run_module, tmp_path):
    path = tmp_path / "records" / "shop.jsonl"
    path.parent.mkdir()
    result = run_module("deploy_record", dict(path=str(path), record=make_record()))
    assert result["changelog_path"] == str(tmp_path / "records" / "shop.md")
    assert read_lines(path) == [result["record"]]
    nowhere = run_module("deploy_record", dict(path=str(tmp_path / "missing" / "x.jsonl"), record=make_record()))
    assert nowhere["failed"] is True and "does not exist" in nowhere["msg"]


def test_concurrent_module_runs_never_lose_a_record(run_module, tmp_path):
    """Twelve deploy_record processes at once, each with a large record: every line is whole, none is lost."""
    changes = ["change %03d %s" % (n, "x" * 1500) for n in range(40)]  # ~60 KiB per line
    running = [run_module.start("deploy_record", dict(app_root=str(tmp_path), record=make_record(
        "d%02d" % number, started="2024-05-01T10:%02d:00Z" % number, finished=None, changes=changes)))
        for number in range(12)]
    for handle in running:
        result = handle.wait_result(300)
        assert result["changed"] is True and result["action"] == "added", result.get("msg")
    lines = read_lines(tmp_path / ".safeship" / "deploys.jsonl")
    assert sorted(r["deploy_id"] for r in lines) == ["d%02d" % number for number in range(12)]
    assert all(r["changes"] == changes for r in lines)
    assert_changelog_matches(tmp_path / ".safeship")


def _appender(app_root, worker, count, errors):
    try:
        for number in range(count):
            _record.manage(dict(app_root=app_root, state="present", record=make_record(
                "w%d-%03d" % (worker, number), started="2024-05-01T10:00:00Z", finished=None,
                changes=["%d/%d %s" % (worker, number, "y" * 1900)])))
    except Exception as exc:  # pylint: disable=broad-except
        errors.put(repr(exc))


def test_concurrent_appends_from_several_processes(tmp_path):
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    workers = [context.Process(target=_appender, args=(str(tmp_path), worker, 40, errors)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(300)
        assert process.exitcode == 0
    assert errors.empty(), errors.get()
    lines = read_lines(tmp_path / ".safeship" / "deploys.jsonl")
    assert len(lines) == 160
    assert sorted(r["deploy_id"] for r in lines) == sorted("w%d-%03d" % (w, n) for w in range(4) for n in range(40))
    for worker in range(4):  # each worker's records in the order it wrote them
        mine = [r["deploy_id"] for r in lines if r["deploy_id"].startswith("w%d-" % worker)]
        assert mine == sorted(mine)
    assert_changelog_matches(tmp_path / ".safeship")
