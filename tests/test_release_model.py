"""A model-based test of the release's one truth (issue 24), with hypothesis' stateful testing.

Hypothesis drives random sequences of what a person in JupyterLab, plain papermill or an
adversary can do to one release folder, against the real local platform: run any section's
cells in any order and again, record a Go or a No-go, hand-edit a result file, drop or take the
live lock (a runner that dies, a lab that stops), break the CEO's channel, change staging behind
the release's back, seal. After every step it checks the rules that must hold whatever the order:

- production changes only in the production deploy, of a live, unsealed release, under a
  standing GO taken after the checks it judged, which ran for real here (not hand-written), with
  staging still serving what they checked;
- production changes back only in a rollback of a release that changed it;
- the CEO is told "deployed" only after this release deployed and verified production;
- no request is aimed off loopback (no configured remote URL in any record);
- nothing in a sealed release changes.

What it does not cover (other tests do): killed runners, resumes and signals (test_lifecycle.py,
test_one_truth.py), the watch (test_watch_e2e.py), the Fly target (test_release_fly_e2e.py).

`make test` runs a few examples (HOTDASH_MODEL_EXAMPLES, default 8); `make test-model` many.
The seed is printed (HOTDASH_MODEL_SEED replays a run); hypothesis also prints the failing
sequence, step by step, as code.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import random
from pathlib import Path

import pytest
from conftest import make_rehearsal
from hypothesis import HealthCheck, event, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from hotdash_release.errors import ReleaseError
from hotdash_release.locks import live_release
from hotdash_release.results import results_path, utc_now, write_json_atomic

PRODUCTION = "hotdash-production"
STAGING = "hotdash-staging"
EXAMPLES = int(os.environ.get("HOTDASH_MODEL_EXAMPLES", "8"))
SEED = int(os.environ.get("HOTDASH_MODEL_SEED") or random.SystemRandom().randrange(2**32))
SEEN: dict[str, int] = {}  # how often the steps the rules judge happened
CHECKS = ("verify_secrets", "deploy_staging", "staging_smoke")
DEPLOYED = "deployed to production"  # what the CEO's message says (integrations/notify.py)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = make_rehearsal(tmp_path_factory.mktemp("model"), wait_timeout_s=4, health_deadline_s=2)
    done = world.release()
    assert done.returncode == 0, done.stdout + done.stderr
    yield world
    world.platform().stop()


HOSTS: list[str] = []  # every host an HTTP request of the library went to


@pytest.fixture
def requests_seen(monkeypatch):
    """Every request httpx sends, by host: the model checks none leaves loopback."""
    import httpx

    send = httpx.HTTPTransport.handle_request

    def watched(transport, request):
        HOSTS.append(request.url.host)
        return send(transport, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", watched)
    HOSTS.clear()
    return HOSTS


def make_machine(world, root: Path):
    platform = world.platform()
    counter = itertools.count()
    good = {app: platform.status(app).image_ref for app in (STAGING, PRODUCTION)}

    class OneRelease(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            # Each example starts from the same world, so that hypothesis can replay and shrink it.
            for app, image in good.items():
                if platform.status(app).image_ref != image:
                    platform.deploy(app, image=image, wait_timeout_s=4, on_output=lambda line: None)
            self.folder = root / f"run{next(counter)}" / PRODUCTION / "20261205T000000Z-abcdef"
            self.folder.mkdir(parents=True)
            self.inbox = self.folder.parent.parent / "notifications.log"
            self.live = live_release(self.folder)
            self.is_live = False
            self.sealed: dict[str, bytes] | None = None
            self.passed: dict[str, str] = {}  # check -> when it last passed for real, here
            self.forged: set[str] = set()  # results written by hand and not run again since
            self.go_at = ""  # when a GO was last recorded for real, here ("" : none standing)
            self.staging_checked = ""  # the staging image the checks ran against
            self.staging_defect = "?"  # what this release last deployed to staging ("?": not yet)
            self.deployed_here = False  # production changed in this release
            self.verified_here = False  # and passed its smoke test

        def teardown(self) -> None:
            if self.is_live:
                self.live.__exit__(None, None, None)

        # -- helpers -----------------------------------------------------------------------
        def section(self, kind: str, **more):
            from hotdash_release.runbook import open_section

            return open_section(
                kind, config_path=str(world.config), release_dir=str(self.folder), operator="model", **more
            )

        def cells(self, kind: str, steps, **more) -> bool:
            """Run a section's cells in order, as Run All does; True when its gate passed."""
            # The cells' progress lines (a deploy's build output) are not the model's output.
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    run = self.section(kind, **more)
                    for step in steps:
                        step(run)
                    run.gate()
                    return True
                except ReleaseError:
                    return False

        def production(self) -> str:
            return platform.status(PRODUCTION).image_ref or ""

        def standing_go(self) -> bool:
            return bool(self.go_at) and all(self.passed.get(k, "") and self.passed[k] < self.go_at for k in CHECKS)

        # -- what people and adversaries do ------------------------------------------------
        @initialize(live=st.booleans())
        def start(self, live):
            """Under `runbook release` or `runbook lab` (live), or under plain papermill (not)."""
            if live:
                self.toggle_live()

        @precondition(lambda self: self.sealed is None)
        @rule(count=st.integers(1, 8))
        def next_in_plan(self, count):
            """What most people do most of the time: the next notebooks in plan order."""
            for _ in range(count):
                if self.sealed is None:
                    self._next()

        def _next(self):
            for key, step in (
                ("preflight", lambda: self.run_check("preflight")),
                ("verify_secrets", lambda: self.run_check("verify_secrets")),
                ("deploy_staging", lambda: self.deploy_staging("")),
                ("staging_smoke", lambda: self.smoke_test("staging")),
                ("go", lambda: self.decide(True)),
            ):
                if key == "staging_smoke" and key not in self.passed and self.staging_defect:
                    return self.deploy_staging("")  # a person redeploys the good build first
                if (key == "go" and not self.standing_go()) or (key not in self.passed and key != "go"):
                    return step()
            if not self.deployed_here:
                return self.deploy_production("")
            if not self.verified_here:
                return self.smoke_test("production")
            return self.notify()

        @precondition(lambda self: self.sealed is None)
        @rule(key=st.sampled_from(("verify_secrets", "preflight")))
        def run_check(self, key):
            if key == "verify_secrets":
                ok = self.cells(key, [lambda r: r.verify_secrets()])
            else:
                ok = self.cells(key, [lambda r: r.checklist(), lambda r: r.readiness()])
            self._ran(key, ok)

        @precondition(lambda self: self.sealed is None)
        @rule(defect=st.sampled_from(("", "", "wrong_api_key")))
        def deploy_staging(self, defect):
            ok = self.cells("deploy", [lambda r: r.deploy(defect), lambda r: r.check_health()], environment="staging")
            self._ran("deploy_staging", ok)
            self.staging_defect = defect
            if ok:
                self.staging_checked = platform.status(STAGING).image_ref

        @precondition(lambda self: self.sealed is None)
        @rule(environment=st.sampled_from(("staging", "production")))
        def smoke_test(self, environment):
            before = self.production()
            ok = self.cells("smoke_test", [lambda r: r.smoke_test()], environment=environment)
            assert self.production() == before
            if environment == "staging":
                self._ran("staging_smoke", ok and platform.status(STAGING).image_ref == self.staging_checked)
            elif ok:
                assert self.deployed_here, "a production smoke test passed in a release that never deployed it"
                self.verified_here = True

        @precondition(lambda self: self.sealed is None)
        @rule(go=st.booleans())
        def decide(self, go):
            call = {"check": "Go" if go else "No-go", "by": "model", "at": utc_now(), "note": "the model's call"}
            ok = self.cells("go_no_go", [lambda r: r.go_no_go()], attestations=[call])
            self.forged.discard("go_no_go")
            self.go_at = utc_now() if ok and go else ""

        @precondition(lambda self: self.sealed is None)
        @rule(defect=st.sampled_from(("", "wrong_api_key")))
        def deploy_production(self, defect):
            before = self.production()
            may = (
                self.is_live
                and self.standing_go()
                and not (self.forged & {*CHECKS, "go_no_go"})
                and platform.status(STAGING).image_ref == self.staging_checked
            )
            self.cells("deploy", [lambda r: r.deploy(defect), lambda r: r.check_health()], environment="production")
            after = self.production()
            if after != before or self._deploy_recorded():
                event("production deployed")
                SEEN["production deployed"] = SEEN.get("production deployed", 0) + 1
                assert may, "production changed without a standing GO of a live release"
                self.deployed_here = True
                self.verified_here = False

        @precondition(lambda self: self.sealed is None)
        @rule()
        def roll_back(self):
            before = self.production()
            self.cells(
                "rollback", [lambda r: r.rollback_candidate(), lambda r: r.roll_back()], environment="production"
            )
            if self.production() != before:
                SEEN["rolled back"] = SEEN.get("rolled back", 0) + 1
                assert self.deployed_here, "a rollback changed production in a release that never changed it"

        @precondition(lambda self: self.sealed is None)
        @rule()
        def notify(self):
            told_before = self._told()
            self.cells("notify", [lambda r: r.notify()])
            if self._told() > told_before:
                event("the CEO told deployed")
                SEEN["the CEO told deployed"] = SEEN.get("the CEO told deployed", 0) + 1
                assert self.deployed_here and self.verified_here, (
                    "the CEO was told 'deployed' without a verified deploy"
                )

        @precondition(lambda self: self.sealed is None)
        @rule(key=st.sampled_from(("verify_secrets", "deploy_staging", "staging_smoke", "go_no_go")))
        def hand_edit(self, key):
            """An adversary writes the result the gate reads, as the observed bypass did."""
            staging = platform.status(STAGING).image_ref
            records = {
                "verify_secrets": {"secrets": {"rows": [{"app": STAGING}, {"app": PRODUCTION}]}},
                "deploy_staging": {"deployment": {"ok": True, "image_ref": staging}, "health": {"ok": True}},
                "staging_smoke": {},
                "go_no_go": {"decision": {"decision": "GO"}},
            }[key]
            write_json_atomic(
                results_path(self.folder, key),
                {"section": key, "outcome": "passed", "finished_at": utc_now(), "records": records},
            )
            self.forged.add(key)

        @rule()
        def toggle_live(self):
            """The runner (or the lab) ends, or a new one holds the folder."""
            if self.is_live:
                self.live.__exit__(None, None, None)
            else:
                self.live = live_release(self.folder)
                self.live.__enter__()
            self.is_live = not self.is_live

        @rule()
        def break_the_ceos_channel(self):
            if self.inbox.is_file():
                self.inbox.unlink()
            self.inbox.mkdir(exist_ok=True)

        @rule()
        def staging_changed_elsewhere(self):
            """Another release deploys staging: what this release checked no longer serves."""
            self.staging_defect = "elsewhere"
            platform.deploy(
                STAGING, build_args={"HOTDASH_DEFECT": "wrong_api_key"}, wait_timeout_s=4, on_output=lambda line: None
            )

        @precondition(lambda self: self.sealed is None)
        @rule()
        def seal(self):
            (self.folder / "manifest.json").write_text(json.dumps({"release_id": self.folder.name}))
            self.sealed = self._files()

        # -- what must hold after every step --------------------------------------------------
        @invariant()
        def nothing_sealed_changes(self):
            if self.sealed is not None:
                assert self._files() == self.sealed

        @invariant()
        def no_request_leaves_loopback(self):
            assert set(HOSTS) <= {"127.0.0.1", "localhost"}, HOSTS

        # -- model bookkeeping -----------------------------------------------------------------
        def _ran(self, key: str, ok: bool) -> None:
            self.forged.discard(key)
            if ok:
                self.passed[key] = utc_now()
            else:
                self.passed.pop(key, None)

        def _deploy_recorded(self) -> bool:
            path = results_path(self.folder, "deploy_production")
            if not path.is_file():
                return False
            records = json.loads(path.read_text()).get("records") or {}
            return bool(records.get("deployment"))

        def _told(self) -> int:
            if not self.inbox.is_file():
                return 0
            return self.inbox.read_text().count(DEPLOYED)

        def _files(self) -> dict[str, bytes]:
            return {str(p): p.read_bytes() for p in self.folder.rglob("*") if p.is_file()}

    return OneRelease


@pytest.mark.timeout(120 + 5 * EXAMPLES)
def test_whatever_the_order_production_follows_the_release_record(world, tmp_path, requests_seen):
    print(f"model: {EXAMPLES} examples, seed {SEED} (HOTDASH_MODEL_SEED={SEED} replays it)")
    machine = seed(SEED)(make_machine(world, tmp_path))
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=16,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"model: {SEEN}, {len(requests_seen)} HTTP requests, all to loopback")
    if EXAMPLES >= 50:  # enough examples to reach every kind of step: a model that never deploys proves nothing
        assert {"production deployed", "the CEO told deployed"} <= set(SEEN), SEEN
