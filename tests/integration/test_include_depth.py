"""The test-only callback tests/callback_plugins/include_depth.py, which holds every run of playbooks/deploy.yml
in the tests to at most three include levels (helpers.playbooks), counts what it should: a task reached
through four dynamic includes is 4 deep, a static import adds nothing, and a real deploy stays within 3."""

from helpers.playbooks import MAX_DEPLOY_INCLUDE_DEPTH, Playbook, succeeded

PLAY = """\
- name: Nested includes
  hosts: app
  gather_facts: false
  tasks:
    - name: Level one
      ansible.builtin.include_tasks: one.yml
"""
FILES = {
    "one.yml": "- name: Level two\n  ansible.builtin.include_tasks: two.yml\n",
    "two.yml": "- name: Imported, not a level\n  ansible.builtin.import_tasks: imported.yml\n",
    "imported.yml": "- name: Level three\n  ansible.builtin.include_tasks: three.yml\n",
    "three.yml": ("- name: Three deep\n  ansible.builtin.debug:\n    msg: three\n"
                  "- name: Level four\n  ansible.builtin.include_tasks: four.yml\n"),
    "four.yml": "- name: Four deep\n  ansible.builtin.debug:\n    msg: four\n",
}


def test_the_callback_counts_dynamic_includes_only(tmp_path):
    for name, text in FILES.items():
        (tmp_path / "play" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "play" / name).write_text(text)
    proc = succeeded(Playbook(tmp_path / "play").run(PLAY))
    depths = {row["task"]: row["depth"] for row in proc.include_depths}
    assert depths["Three deep"] == 3 and depths["Four deep"] == 4
    assert depths["Level one"] == 0 and depths["Level two"] == 1 and depths["Level three"] == 2
    assert max(depths.values()) > MAX_DEPLOY_INCLUDE_DEPTH  # what the deploy tests would refuse
