"""Property test: random sequences of build / ready / switch / fail / good / rollback / protect / cleanup on a
real directory tree, checked after every step against a model of the statuses and against the invariants:
`current` always resolves to a release that is not building, the last good release and the protected ones
survive, cleanup never removes the current release, and rollback never lands on a building or bad release."""

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ansible_collections.safeship.webapp.plugins.module_utils import _release as release
from ansible_collections.safeship.webapp.plugins.module_utils._common import SafeshipError

from helpers.releases import state_of, tree_snapshot, write_files

SWITCHABLE = ("ready", "live", "good", "rolled_back")
pick = st.integers(min_value=0, max_value=10 ** 6)


class ReleaseLifecycle(RuleBasedStateMachine):

    @initialize()
    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="safeship-release-prop-")
        self.root = os.path.join(self.tmp, "app")
        os.mkdir(self.root)
        self.status = {}  # the model: id -> status
        self.order = []  # creation order
        self.protected = set()
        self.built = set()  # ever marked ready
        self.current = None
        self.counter = 0

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- helpers -----------------------------------------------------------------------------
    def run(self, expect_ok, **args):
        before = tree_snapshot(self.root)
        try:
            result = release.manage(release.default_params(app_root=self.root, **args))
        except SafeshipError as exc:
            assert not expect_ok, "refused unexpectedly: %s (%r)" % (exc.msg, args)
            assert tree_snapshot(self.root) == before, "a refused action changed files: %r" % (args,)
            return None
        assert expect_ok, "accepted but should have been refused: %r -> %r" % (args, result.get("release"))
        return result

    def choose(self, index):
        return self.order[index % len(self.order)] if self.order else None

    def newest_good(self, exclude=None):
        for rid in reversed(self.order):
            if self.status[rid] == "good" and rid != exclude:
                return rid
        return None

    def set(self, rid, status):
        self.status[rid] = status

    def model_switch(self, left, target, rollback):
        if left is not None:
            if rollback:
                if self.status[left] != "bad":
                    self.set(left, "rolled_back")
            elif self.status[left] == "live":
                self.set(left, "ready")
        if self.status[target] in ("ready", "rolled_back"):
            self.set(target, "live")
        self.current = target

    # ---- rules -------------------------------------------------------------------------------
    @rule(ready=st.booleans())
    def build(self, ready):
        self.counter += 1
        rid = "r%03d" % self.counter
        result = self.run(True, release_id=rid)
        assert result["changed"] and result["release"]["status"] == "building"
        self.order.append(rid)
        self.set(rid, "building")
        if ready:  # else: a build cancelled half-way
            write_files(os.path.join(self.root, "releases", rid), {"REVISION": rid})
            self.run(True, release_id=rid, state="ready")
            self.set(rid, "ready")
            self.built.add(rid)

    @rule(healthy=st.booleans())
    def deploy(self, healthy):
        """What a deploy playbook does: build, switch, then good, or bad and roll back."""
        self.build(ready=True)
        rid = self.order[-1]
        self.switch(len(self.order) - 1)
        if healthy:
            self.good(len(self.order) - 1)
        else:
            self.fail(len(self.order) - 1)
            before = self.current
            target = self.newest_good(exclude=rid)
            result = self.run(target is not None, release_id=rid, state="rolled_back")
            if result is not None:
                assert result["rollback"] == {"from": before, "to": target}
                self.model_switch(before, target, rollback=True)

    @rule(index=pick)
    def switch(self, index):
        rid = self.choose(index)
        if rid is None:
            return
        allowed = self.status[rid] in SWITCHABLE
        result = self.run(allowed, release_id=rid, state="switched")
        if result is not None:
            assert result["current"] == rid
            assert result["changed"] is (rid != self.current)
            if rid != self.current:
                self.model_switch(self.current, rid, rollback=False)

    @rule(index=pick)
    def fail(self, index):
        rid = self.choose(index)
        if rid is not None:
            self.run(True, release_id=rid, state="bad")
            self.set(rid, "bad")

    @rule(index=pick)
    def good(self, index):
        rid = self.choose(index)
        if rid is not None:
            allowed = self.status[rid] != "building" and rid in self.built  # building -> bad -> good: refused
            if self.run(allowed, release_id=rid, state="good") is not None:
                self.set(rid, "good")

    @rule(index=pick)
    def protect(self, index):
        rid = self.choose(index)
        if rid is not None:
            self.run(True, release_id=rid, protected=True)  # present on a known release: metadata only
            self.protected.add(rid)

    @rule(named=st.booleans(), index=pick)
    def rollback(self, named, index):
        if named and self.order:
            target = self.choose(index)
            allowed = self.current is not None and self.status[target] in SWITCHABLE
            result = self.run(allowed, state="rolled_back", to=target)
        else:
            target = self.newest_good(exclude=self.current)
            allowed = self.current is not None and target is not None
            result = self.run(allowed, state="rolled_back")
        if result is None:
            return
        assert self.status[target] not in ("building", "bad")  # never lands on a building or bad release
        if target == self.current:
            assert result["changed"] is False and result["rollback"] is None
            return
        assert result["rollback"] == {"from": self.current, "to": target}
        self.model_switch(self.current, target, rollback=True)

    @rule(keep=st.integers(min_value=1, max_value=4), keep_bad=st.integers(min_value=0, max_value=2))
    def cleanup(self, keep, keep_bad):
        result = self.run(True, state="cleaned", keep=keep, keep_bad=keep_bad)
        removed = result["removed"]
        never = set([self.current, self.newest_good(), self.newest_good(exclude=self.current)]) | self.protected
        assert not never & set(removed), "removed %s" % sorted(never & set(removed))
        normal = [r for r in self.order if self.status[r] not in ("bad", "building")]
        bad = [r for r in self.order if self.status[r] == "bad"]
        for rid in removed:
            # only what the rules allow: older than `keep` kept ones, beyond keep_bad, or half-built and not newest
            if self.status[rid] == "bad":
                assert len([b for b in bad if b > rid]) >= keep_bad
            elif self.status[rid] == "building":
                assert rid != self.order[-1]
            else:
                assert len([n for n in normal if n > rid]) >= keep
            assert not os.path.lexists(os.path.join(self.root, "releases", rid))
            self.order.remove(rid)
            del self.status[rid]
        assert len([n for n in normal if n not in removed]) >= min(keep, len(normal))

    # ---- invariants --------------------------------------------------------------------------
    @invariant()
    def current_resolves(self):
        if self.current is None:
            assert not os.path.lexists(os.path.join(self.root, "current"))
            return
        link = os.path.join(self.root, "current")
        assert os.readlink(link) == "releases/" + self.current
        with open(os.path.join(link, "REVISION")) as handle:
            assert handle.read() == self.current
        assert self.status[self.current] != "building"

    @invariant()
    def statuses_match_the_model(self):
        if self.order:
            assert state_of(self.root) == self.status

    @invariant()
    def last_good_and_protected_survive(self):
        for rid in set([self.newest_good(), self.newest_good(exclude=self.current)]) | self.protected:
            if rid is not None:
                assert os.path.isdir(os.path.join(self.root, "releases", rid)), rid


ReleaseLifecycle.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
test_release_lifecycle = ReleaseLifecycle.TestCase
