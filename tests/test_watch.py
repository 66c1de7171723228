"""The post-deployment watch against a loopback server playing production: measurements at an
interval, error lines from the logs, a breach after consecutive failures, the window's
conditions, and an interrupt that keeps what was measured."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime

import httpx
import pytest
from loopback import Reply

from hotdash_release.checks.watch import (
    MachinesSeen,
    MachineWatch,
    Measurement,
    WatchSettings,
    _judge,
    check_watch_minutes,
    percentile,
    watch_production,
)
from hotdash_release.errors import UsageError
from hotdash_release.secrets.redact import Redactor

FAST = dict(minutes=0.6 / 60, interval_s=0.1)  # six measurements, a tenth of a second apart


def healthy(_request):
    return Reply.json({"status": "ok", "timestamp": datetime.now(UTC).isoformat()})


@pytest.fixture
def production(loopback):
    loopback.routes["/health"] = healthy
    return loopback


def watch(server, settings, **kwargs):
    with httpx.Client(timeout=2) as client:
        return watch_production(client, f"{server.base_url}/health", settings, **kwargs)


def test_a_healthy_window_meets_its_conditions(production):
    result = watch(production, WatchSettings(**FAST))
    assert result.ok and not result.ended_early
    assert len(result.measurements) == 6 and production.hits["/health"] == 6
    assert result.availability_pct == 100 and result.p95_ms is not None and result.error_lines == 0
    assert [m.elapsed_s for m in result.measurements] == sorted(m.elapsed_s for m in result.measurements)
    assert "conditions met" in result.summary()


def test_consecutive_failures_are_a_breach_that_ends_the_watch(production):
    answers = itertools.count(1)
    production.routes["/health"] = lambda r: healthy(r) if next(answers) <= 2 else Reply(503, b"down")
    result = watch(production, WatchSettings(minutes=1, interval_s=0.05, failure_limit=3))
    assert not result.ok and result.ended_early == "breach"
    assert len(result.measurements) == 5  # two good, then three failed in a row
    assert "3 failed measurements in a row" in result.breaches[0].what and "HTTP 503" in result.breaches[0].what
    assert any("availability 40.0% below 99%" in b.what for b in result.breaches)


def test_one_failure_is_not_a_breach_but_the_window_judges_availability(production):
    answers = itertools.count(1)
    production.routes["/health"] = lambda r: Reply(503, b"") if next(answers) == 3 else healthy(r)
    lenient = watch(production, WatchSettings(**FAST, failure_limit=2, min_availability_pct=80))
    assert lenient.ok and lenient.availability_pct == pytest.approx(83.33)
    answers = itertools.count(1)
    strict = watch(production, WatchSettings(**FAST, failure_limit=2, min_availability_pct=99))
    assert [b.what for b in strict.breaches] == ["availability 83.3% below 99%"]


def test_error_lines_in_the_logs_are_counted_sampled_and_redacted(production):
    logs = iter([[], ["GET / 200"], ["ERROR boom for key sk_live_SECRETVALUE1", "INFO ok"], [], [], []])
    result = watch(
        production,
        WatchSettings(**FAST, failure_limit=5),
        read_new_logs=lambda: next(logs),
        redactor=Redactor({"SHOPIFY_API_SECRET@production": "sk_live_SECRETVALUE1"}),
    )
    assert result.error_lines == 1 and result.measurements[2].detail == "1 error lines"
    assert [b.what for b in result.breaches] == ["1 error lines, more than 0"]
    assert "SECRETVALUE1" not in repr(result.as_row()) and "ERROR boom" in result.error_samples[0]


def _machine(state="started", updated_at="2026-11-28T10:00:00Z", image="registry.fly.io/app:deployment-1"):
    """A machine of a platform that records no events (the local one): the fields the watch reads."""
    return {"id": "148e", "name": "app-machine", "state": state, "updated_at": updated_at, "image_ref": image}


def _event(at, kind, status="", **exited):
    """A machine event as targets/fly.py reads `fly status --json` (exit: its exit_event)."""
    fields = ("exit_code", "guest_exit_code", "guest_signal", "signal", "oom_killed", "requested_stop", "restarting")
    exit_event = {
        name: exited.get(name, False if name in ("oom_killed", "requested_stop", "restarting") else 0)
        for name in fields
    }
    return {
        "type": kind,
        "status": status,
        "source": "flyd",
        "timestamp": at,
        "exit": exit_event if kind == "exit" else None,
    }


def _fly_machine(*events, updated_at="now"):
    """A Fly machine: its events newest first, as flyd lists them; updated_at as any flyctl sets it."""
    machine = _machine(updated_at=updated_at)
    return {**machine, "events": sorted(events, key=lambda e: -e["timestamp"])}


def test_machines_not_running_fail_a_measurement(production):
    states = iter(["started", "started", "stopped", "stopped", "stopped", "stopped", "stopped"])
    machines = MachineWatch(lambda: [_machine(next(states))])
    result = watch(production, WatchSettings(**FAST, failure_limit=9, min_availability_pct=0), machines=machines)
    assert [m.ok for m in result.measurements] == [True, False, False, False, False, False]
    assert result.machines_down == 1 and "1 machines not running" in result.measurements[1].detail


def test_restarts_come_from_crash_events_followed_by_a_start_never_from_updated_at(production):
    """updated_at differs at every reading (as a flyctl that sets it to the time of each call
    answers); an auto-stop and auto-start and a config update are not restarts; a crash (non-zero
    exit nobody asked for) or an OOM kill followed by a start is one, counted once, also when its
    start comes a poll later; what happened before the watch is not the watch's."""
    launched = [_event(1, "launch", "created"), _event(2, "start", "started")]
    crashed_before = [_event(3, "exit", "stopped", exit_code=1), _event(4, "start", "started")]
    auto_stop = [
        _event(10, "stop", "stopping"),
        _event(11, "exit", "stopped", requested_stop=True),
        _event(12, "start", "started"),
    ]
    update = [_event(20, "update", "replacing"), _event(21, "exit", "stopped", requested_stop=True, signal=2)]
    update_started = [_event(22, "start", "started")]
    crash = [_event(30, "exit", "stopped", exit_code=1, restarting=True), _event(31, "start", "started")]
    oom_exit = [_event(40, "exit", "stopped", exit_code=137, oom_killed=True)]
    oom_started = [_event(41, "start", "started")]
    history = [launched + crashed_before]
    for batch in (auto_stop, update, update_started, crash, oom_exit, oom_started):
        history.append(history[-1] + batch)
    readings = iter(history)
    stamps = iter(range(100))
    machines = MachineWatch(lambda: [_fly_machine(*next(readings), updated_at=f"T{next(stamps)}")], now_ms=lambda: 5)
    result = watch(production, WatchSettings(minutes=0.6 / 60, interval_s=0.1, failure_limit=9), machines=machines)
    assert [m.restarts for m in result.measurements] == [0, 0, 0, 1, 0, 1]
    assert "1 machines restarted (machine 148e: exit code 1)" in result.measurements[3].detail
    assert "(machine 148e: OOM killed)" in result.measurements[5].detail
    assert result.restarts == 2 and "2 restarts" in result.summary()


def test_events_read_at_one_poll_are_not_counted_again_at_the_next(production):
    crash = [_event(30, "exit", "stopped", guest_signal=9), _event(31, "start", "started")]
    readings = iter([[], crash, crash, crash, crash + [_event(31, "start", "started")], crash, crash])
    machines = MachineWatch(lambda: [_fly_machine(*next(readings))])
    result = watch(production, WatchSettings(**FAST, failure_limit=9), machines=machines)
    assert [m.restarts for m in result.measurements] == [1, 0, 0, 0, 0, 0]
    assert "signal 9" in result.measurements[0].detail


def test_without_events_a_machine_back_to_started_is_a_restart(production):
    # The local platform records no events: its updated_at is its process's start, which moves
    # only when the process starts again. A new image is a deploy, not a restart.
    readings = iter(
        [
            _machine(),  # the baseline, before the first measurement
            _machine(),
            _machine("stopped", "T2"),
            _machine("started", "T3"),  # came back: restart 1
            _machine("started", "T4"),  # started again between two polls: restart 2
            _machine("started", "T5", image="registry.fly.io/app:deployment-2"),  # redeployed: not a restart
            _machine("started", "T5", image="registry.fly.io/app:deployment-2"),
        ]
    )
    machines = MachineWatch(lambda: [next(readings)])
    result = watch(production, WatchSettings(**FAST, failure_limit=9), machines=machines)
    assert [m.restarts for m in result.measurements] == [0, 0, 1, 1, 0, 0]
    assert (
        result.restarts == 2 and "1 machines restarted (machine 148e: started again)" in result.measurements[3].detail
    )


def test_critical_health_checks_fail_a_measurement(production):
    checks = iter([["passing"], ["passing", "warning"], ["critical", "passing"], ["passing"], [], [], []])
    machines = MachineWatch(lambda: [_machine()], lambda: next(checks))
    result = watch(production, WatchSettings(**FAST, failure_limit=9), machines=machines)
    assert [m.critical_checks for m in result.measurements] == [0, 0, 1, 0, 0, 0]
    assert result.critical_checks == 1 and "1 health checks critical" in result.measurements[2].detail
    assert [m.ok for m in result.measurements] == [True, True, False, True, True, True]


def test_slow_answers_breach_the_p95_condition(production):
    result = watch(production, WatchSettings(**FAST, max_p95_ms=0.001))
    assert any(b.what.startswith("p95 latency") for b in result.breaches)


def test_an_interrupt_ends_the_window_early_and_keeps_what_was_measured(production):
    stop = threading.Event()
    seen = []

    def progress(measurement):
        seen.append(measurement)
        if len(seen) == 2:
            stop.set()  # what the signal handler does

    result = watch(production, WatchSettings(minutes=10, interval_s=0.05), stop=stop, progress=progress)
    assert result.ended_early == "interrupted" and len(result.measurements) == 2
    assert result.ok and result.watched_s < 60


def test_a_keyboard_interrupt_in_the_kernel_ends_the_window_early_too(production):
    def progress(measurement):
        if measurement.elapsed_s > 0:
            raise KeyboardInterrupt  # what the kernel sees when the runner interrupts it

    result = watch(production, WatchSettings(minutes=10, interval_s=0.05), progress=progress)
    assert result.ended_early == "interrupted" and len(result.measurements) == 2


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


@pytest.mark.parametrize(
    "table,key,allowed",
    [
        ({"minutes": float("nan")}, "watch.minutes", "finite number"),
        ({"minutes": float("inf")}, "watch.minutes", "finite number"),
        ({"minutes": 0}, "watch.minutes", "greater than 0"),
        ({"interval_s": -5}, "watch.interval_s", "greater than 0"),
        ({"interval_s": True}, "watch.interval_s", "finite number"),
        ({"max_p95_ms": "fast"}, "watch.max_p95_ms", "finite number"),
        ({"min_availability_pct": 101}, "watch.min_availability_pct", "between 0 and 100"),
        ({"max_error_lines": -1}, "watch.max_error_lines", ">= 0"),
        ({"failure_limit": 0}, "watch.failure_limit", ">= 1"),
        ({"failure_limit": 2.5}, "watch.failure_limit", "whole number"),
        ({"on_breach": "pray"}, "watch.on_breach", "allowed: rollback, alert"),
        ({"error_pattern": "(unclosed"}, "watch.error_pattern", "not a regular expression"),
        ({"minutes": 0.01, "interval_s": 60}, "watch.interval_s", "longer than the window"),
        ({"seconds": 5}, "watch.seconds", "unknown key; allowed"),
    ],
)
def test_bad_watch_settings_name_the_key_and_what_is_allowed(table, key, allowed):
    from hotdash_release.checks.watch import watch_settings
    from hotdash_release.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        watch_settings(table)
    assert refused.value.key == key and allowed in str(refused.value) and "\n" not in str(refused.value)


def test_good_watch_settings_are_taken():
    from hotdash_release.checks.watch import watch_settings

    settings = watch_settings({"minutes": 0.5, "interval_s": 5, "on_breach": "alert", "failure_limit": 2})
    assert (settings.window_s, settings.planned_measurements, settings.on_breach) == (30.0, 6, "alert")


# -- the CEO's feedback channel: GitHub issues opened since the release ----------------------

SINCE = "2026-11-28T10:00:00Z"


def github_issue(number, created, *, pull=False, labels=("ceo",), title="Dashboard blank"):
    item = {
        "number": number,
        "title": title,
        "state": "open",
        "user": {"login": "ceo"},
        "labels": [{"name": name} for name in labels],
        "created_at": created,
        "html_url": f"https://github.com/hotdash/hotdash/issues/{number}",
    }
    if pull:
        item["pull_request"] = {"url": "..."}
    return item


def test_issues_opened_since_the_release_are_listed_without_pulls_or_older_ones(loopback):
    from hotdash_release.integrations.feedback import issues_opened_since

    loopback.routes["/repos/hotdash/hotdash/issues"] = lambda request: Reply.json(
        [
            github_issue(12, "2026-11-28T10:05:00Z"),
            github_issue(11, "2026-11-28T10:01:00Z", pull=True),
            github_issue(7, "2026-11-27T09:00:00Z"),  # updated since, opened before
        ]
    )
    with httpx.Client() as client:
        found = issues_opened_since(
            client, "hotdash/hotdash", SINCE, token="ghp_TOKENVALUE123", api_url=loopback.base_url, labels=["ceo"]
        )
    assert found.ok and [i.number for i in found.issues] == [12]
    request = loopback.received[0]
    assert request.query == {
        "state": "all",
        "since": SINCE,
        "per_page": "100",
        "sort": "created",
        "direction": "desc",
        "labels": "ceo",
    }
    assert request.headers["Authorization"] == "Bearer ghp_TOKENVALUE123"


def test_a_refusing_github_is_an_outcome_without_the_token(loopback):
    from hotdash_release.integrations.feedback import issues_opened_since

    loopback.routes["/repos/hotdash/hotdash/issues"] = lambda request: Reply.json(
        {"message": "Bad credentials ghp_TOKENVALUE123"}, 401
    )
    with httpx.Client() as client:
        found = issues_opened_since(
            client, "hotdash/hotdash", SINCE, token="ghp_TOKENVALUE123", api_url=loopback.base_url
        )
    assert not found.ok and "401" in found.detail and "ghp_TOKENVALUE123" not in found.detail


# -- the watch at its edges: each condition's boundary, decided by the pure parts --------------


def _measured(ok=True, latency_ms=100.0):
    return Measurement(
        at="2026-11-28T10:00:00Z",
        elapsed_s=0.0,
        ok=ok,
        health_ok=ok,
        status_code=200 if ok else 503,
        latency_ms=latency_ms,
        error_lines=0,
        machines_down=0,
        detail="" if ok else "health: HTTP 503",
    )


def _judged(measurements, **settings):
    return [b.what for b in _judge(measurements, WatchSettings(**settings), lambda: "2026-11-28T10:01:00Z")]


def test_a_p95_exactly_at_the_limit_passes_and_just_above_breaches():
    at_limit = [_measured(latency_ms=1500.0)] * 20
    assert _judged(at_limit, max_p95_ms=1500) == []
    assert _judged(at_limit, max_p95_ms=1499.9) == ["p95 latency 1500 ms above 1499.9 ms"]


def test_availability_at_the_minimum_passes_and_one_point_under_breaches():
    def window(healthy):
        return [_measured()] * healthy + [_measured(ok=False)] * (100 - healthy)

    assert _judged(window(99), min_availability_pct=99) == []
    assert _judged(window(98), min_availability_pct=99) == ["availability 98.0% below 99%"]


def test_failures_that_alternate_with_successes_are_not_in_a_row():
    # fail, ok, fail, ok, fail, ok: three failures, never two in a row, so no breach at a limit of 2.
    down = itertools.cycle([1, 0])
    ticks = itertools.count()  # a clock that is always past the next measurement: no waiting
    health = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"status": "ok", "timestamp": datetime.now(UTC).isoformat()})
    )
    with httpx.Client(transport=health) as client:
        result = watch_production(
            client,
            "http://production.test/health",
            WatchSettings(minutes=6 / 60, interval_s=1, failure_limit=2, min_availability_pct=0),
            machines=lambda: MachinesSeen(down=next(down)),
            clock=lambda: float(next(ticks)),
        )
    assert [m.ok for m in result.measurements] == [False, True, False, True, False, True]
    assert result.ok and result.ended_early == "" and result.breaches == ()


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        (list(range(1, 11)), 95, 10),  # rank 9.5 rounds up, not down
        (list(range(1, 11)), 50, 5),
        (list(range(1, 21)), 95, 19),  # rank exactly 19
        (list(range(1, 101)), 7, 7),  # 7 / 100 * 100 is 7.000000000000001 in floating point: still rank 7
        ([3.0, 1.0, 2.0], 0, 1.0),  # the lowest rank is the first, never the last
        ([3.0, 1.0, 2.0], 100, 3.0),
        ([250.0, 10.0, 30.0, 20.0], 99, 250.0),
    ],
)
def test_percentile_against_known_values(values, pct, expected):
    assert percentile(values, pct) == expected


@pytest.mark.parametrize("minutes", [0, 0.5, 1440])
def test_a_later_watch_of_up_to_a_day_is_taken(minutes):
    assert check_watch_minutes(minutes) == minutes


@pytest.mark.parametrize("minutes", [1441, 1440.01, -0.01])
def test_a_later_watch_longer_than_a_day_is_refused(minutes):
    with pytest.raises(UsageError, match=r"watch_minutes: must be between 0 .* and 1440"):
        check_watch_minutes(minutes)
