"""Every module's EXAMPLES parse as a task list and use only options its DOCUMENTATION gives (with the
doc fragments merged, as ansible-doc shows them): no undocumented option, no suboption a dict option
does not have, every required option set (directly, through `args` or through the `module_defaults` of
an enclosing block), every literal value of an option with choices one of them, every module named by
its FQCN. The documentation is read with ansible-doc, so what is checked is what users read.

The checks also run on broken copies of an example (an option misspelt, a suboption invented, a
required option dropped, a choice that does not exist), so they are proven to fail."""

import copy
import functools
import glob
import json
import os
import subprocess

import pytest
import yaml
from ansible.playbook.block import Block
from ansible.playbook.task import Task

from helpers.modules import REPO
from helpers.paths import venv_tool
from helpers.playbooks import ansible_env

COLLECTION = "safeship.webapp"
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "plugins", "modules", "*.py"))
                 if not os.path.basename(p).startswith("_"))
TASK_KEYWORDS = set(Task.fattributes) | set(Block.fattributes) | {"local_action"}


@functools.lru_cache(maxsize=None)
def module_docs():
    """{module: {"doc": ..., "examples": ...}} for every module of the collection, from ansible-doc."""
    names = ["%s.%s" % (COLLECTION, name) for name in MODULES]
    out = subprocess.run([venv_tool("ansible-doc"), "--json", "-t", "module"] + names, env=ansible_env(),
                         capture_output=True, text=True, check=True).stdout
    return {fqcn.split(".")[-1]: data for fqcn, data in json.loads(out).items()}


@functools.lru_cache(maxsize=None)
def action_groups():
    with open(os.path.join(REPO, "meta", "runtime.yml")) as runtime:
        groups = yaml.safe_load(runtime).get("action_groups", {})
    return {"group/%s.%s" % (COLLECTION, group): members for group, members in groups.items()}


def option_names(options):
    names = {}
    for name, spec in (options or {}).items():
        for alias in [name] + list(spec.get("aliases") or []):
            names[alias] = spec
    return names


def templated(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_options(where, options, args, provided=()):
    """Problems with `args` against the documented `options` (recursing into suboptions)."""
    problems = []
    if not isinstance(args, dict):
        return ["%s: the options are %r, not a mapping of option names" % (where, args)]
    known = option_names(options)
    for key, value in args.items():
        spec = known.get(key)
        if spec is None:
            problems.append("%s: option %r is not documented (documented: %s)" % (where, key, ", ".join(sorted(options))))
            continue
        choices = spec.get("choices")
        values = value if isinstance(value, list) and spec.get("type") == "list" else [value]
        if choices and not templated(value):
            choice_values = choices if isinstance(choices, list) else list(choices)
            for item in values:
                if not templated(item) and item not in choice_values:
                    problems.append("%s: %s=%r is not one of its choices %s" % (where, key, item, choice_values))
        if spec.get("suboptions") and not templated(value):
            items = value if isinstance(value, list) else [value]
            for index, item in enumerate(items):
                if templated(item):
                    continue
                label = "%s.%s" % (where, key) + ("[%d]" % index if isinstance(value, list) else "")
                problems.extend(check_options(label, spec["suboptions"], item))
    given = set(args) | set(provided)
    for name, spec in (options or {}).items():
        if spec.get("required") and not ({name} | set(spec.get("aliases") or [])) & given:
            problems.append("%s: required option %r is not set" % (where, name))
    return problems


def task_problems(where, task, defaults):
    """Problems of one task (or block) of an EXAMPLES list."""
    if not isinstance(task, dict):
        return ["%s: %r is not a task" % (where, task)]
    defaults = dict(defaults)
    for group, values in (task.get("module_defaults") or {}).items():
        defaults[group] = dict(defaults.get(group, {}), **(values or {}))
    problems = []
    for section in ("block", "rescue", "always"):
        for index, inner in enumerate(task.get(section) or []):
            problems.extend(task_problems("%s %s[%d]" % (where, section, index), inner, defaults))
    if any(section in task for section in ("block", "rescue", "always")):
        return problems + check_defaults(where, task.get("module_defaults") or {})
    actions = [key for key in task if key not in TASK_KEYWORDS]
    if len(actions) != 1:
        return problems + ["%s: expected one module, found %s" % (where, actions or "none")]
    action = actions[0]
    short = action.split(".")[-1]
    if short in MODULES and action != "%s.%s" % (COLLECTION, short):
        problems.append("%s: module %r is not named by its FQCN %s.%s" % (where, action, COLLECTION, short))
    if not action.startswith(COLLECTION + "."):
        return problems
    if short not in MODULES:
        return problems + ["%s: %s is not a module of the collection" % (where, action)]
    args = task[action]
    if isinstance(task.get("args"), dict) and isinstance(args, dict):
        args = dict(task["args"], **args)
    provided = set(defaults.get(action, {}))
    for group, members in action_groups().items():
        if short in members:
            provided |= set(defaults.get(group, {}))
    label = "%s (%s)" % (where, action)
    return problems + check_options(label, module_docs()[short]["doc"].get("options"), args, provided)


def check_defaults(where, module_defaults):
    problems = []
    for target, values in module_defaults.items():
        members = action_groups().get(target)
        if members is None and target.startswith(COLLECTION + "."):
            members = [target.split(".")[-1]]
        if members is None:
            continue
        options = {}
        for member in members:
            options.update(module_docs()[member]["doc"].get("options") or {})
        known = option_names(options)
        problems.extend("%s: module_defaults %s: %r is not an option of %s" % (where, target, key, ", ".join(members))
                        for key in values or {} if key not in known)
    return problems


def example_problems(module, examples_text):
    try:
        tasks = yaml.safe_load(examples_text)
    except yaml.YAMLError as exc:
        return ["%s EXAMPLES: not YAML: %s" % (module, exc)]
    if not isinstance(tasks, list) or not tasks:
        return ["%s EXAMPLES: not a list of tasks" % module]
    problems = []
    for index, task in enumerate(tasks):
        name = task.get("name", "") if isinstance(task, dict) else ""
        problems.extend(task_problems("%s EXAMPLES[%d] %r" % (module, index, name), task, {}))
    used = json.dumps(tasks)
    if '"%s.%s"' % (COLLECTION, module) not in used:
        problems.append("%s EXAMPLES: no example uses %s.%s" % (module, COLLECTION, module))
    return problems


def test_every_module_has_examples():
    docs = module_docs()
    assert sorted(docs) == MODULES
    assert [name for name in MODULES if not (docs[name].get("examples") or "").strip()] == []


@pytest.mark.parametrize("module", MODULES)
def test_examples_parse_and_use_only_documented_options(module):
    assert example_problems(module, module_docs()[module]["examples"]) == []


def first_module_task(tasks, module):
    """The first task (searching blocks) calling the module, as (task, its args)."""
    for task in tasks:
        for section in ("block", "rescue", "always"):
            found = first_module_task(task.get(section) or [], module)
            if found:
                return found
        if isinstance(task.get("%s.%s" % (COLLECTION, module)), dict):
            return task, task["%s.%s" % (COLLECTION, module)]
    return None


def test_broken_examples_are_caught():
    """A misspelt option, an invented suboption, a dropped required option, a wrong choice and a short
    module name are each reported, naming what is wrong."""
    tasks = yaml.safe_load(module_docs()["db_backup"]["examples"])
    task, args = first_module_task(tasks, "db_backup")
    cases = {}

    broken = copy.deepcopy(tasks)
    first_module_task(broken, "db_backup")[1]["destination"] = "/tmp/x"
    cases["option 'destination' is not documented"] = broken

    broken = copy.deepcopy(tasks)
    first_module_task(broken, "db_backup")[1]["format"] = "tarball"
    cases["format='tarball' is not one of its choices"] = broken

    broken = copy.deepcopy(tasks)
    required = [name for name, spec in module_docs()["db_backup"]["doc"]["options"].items() if spec.get("required")]
    assert required, "db_backup documents a required option"
    first_module_task(broken, "db_backup")[1].pop(required[0], None)
    cases["required option %r is not set" % required[0]] = broken

    broken = copy.deepcopy(tasks)
    broken_task = first_module_task(broken, "db_backup")[0]
    broken_task["db_backup"] = broken_task.pop("%s.db_backup" % COLLECTION)
    cases["module 'db_backup' is not named by its FQCN"] = broken

    health = yaml.safe_load(module_docs()["health_probe"]["examples"])
    steps_task = next(t for t in health if isinstance(t.get("%s.health_probe" % COLLECTION, {}).get("steps"), list))
    broken = copy.deepcopy(health)
    broken[health.index(steps_task)]["%s.health_probe" % COLLECTION]["steps"][0]["pasword"] = "x"
    cases["steps[0]: option 'pasword' is not documented"] = broken

    for expected, broken_tasks in cases.items():
        module = "health_probe" if broken_tasks is broken else "db_backup"
        problems = example_problems(module, yaml.safe_dump(broken_tasks))
        assert any(expected in problem for problem in problems), (expected, problems)
    assert args  # the original example had options to break
    assert example_problems("db_backup", "- name: [unclosed") != []
