"""The post-deployment watch: production measured at an interval while the CEO tests.

The plan's release does not end at the notification ("monitor production logs, watch health
checks ... if blocking, roll back immediately"). As progressive-delivery tools run an analysis,
the watch takes a measurement every `interval_s` for a window: one /health request (status and
latency), the new log lines and how many match the error pattern, and, where the target knows,
its machines: how many are not running, how many health checks the platform reports critical, and
how many machines restarted since the last measurement (from the machines' events: a crash
followed by a start; MachineWatch says which events count). A measurement fails when health fails,
error lines appeared, a machine was down, a check was critical or a machine restarted; `failure_limit` consecutive failures are a breach and end the watch at once.
At the end the window is judged against the success conditions (availability, p95 latency,
error lines). Results are values: what is done about a breach (roll back, or alert) is the
runbook's gate and the runner's call.

An interrupt (the `stop` event, or a KeyboardInterrupt: the runner interrupts the kernel when
it gets SIGINT/SIGTERM) ends the window early; what was measured is kept and the result says so.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from ..errors import ConfigError, UsageError
from ..secrets.redact import Redactor
from ..tables import ShowsAsRecord, html_table, record_rows
from .http import check_health

#: What the watch can do about a breach.
ON_BREACH = ("rollback", "alert")


@dataclass(frozen=True)
class WatchSettings:
    """[watch] in hotdash.toml: the window and the analysis' conditions."""

    minutes: float = 30.0
    interval_s: float = 15.0
    min_availability_pct: float = 99.0
    max_p95_ms: float = 1500.0
    max_error_lines: int = 0
    failure_limit: int = 3  # consecutive failed measurements that make a breach
    error_pattern: str = r"\b(ERROR|CRITICAL|FATAL|Traceback)\b"
    on_breach: str = "rollback"

    @property
    def window_s(self) -> float:
        return self.minutes * 60

    @property
    def planned_measurements(self) -> int:
        """One at the start and one every interval while the window lasts."""
        return max(1, math.ceil(round(self.window_s / self.interval_s, 6)))


@dataclass(frozen=True)
class Measurement:
    """One poll: what /health said, how fast, and what the logs said since the last poll."""

    at: str
    elapsed_s: float
    ok: bool
    health_ok: bool
    status_code: int | None
    latency_ms: float | None
    error_lines: int
    machines_down: int
    detail: str
    critical_checks: int = 0
    restarts: int = 0

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MachinesSeen:
    """The machines at one measurement: not running, critical checks, restarts since the last one."""

    down: int = 0
    critical_checks: int = 0
    restarts: int = 0
    why: tuple[str, ...] = ()  # each restart: which machine, and what it exited with


def crash_of(event: Mapping[str, Any]) -> str:
    """Why a machine event is a crash ("exit code 1", "OOM killed", "signal 9"), or "" if it is none.

    Only an `exit` can be one. An OOM kill always is. Otherwise an exit somebody asked for is not
    (requested_stop: the proxy's auto-stop, `fly machine stop`, a deploy or config update replacing
    the machine), whatever its code; nor is an exit with code 0 and no signal. What is left is an
    exit the app did not ask for with a non-zero code (the process's or the guest's) or a signal.
    ``event`` is a machine event as targets/fly.py reads it: its `exit` holds the exit_event."""
    if event.get("type") != "exit":
        return ""
    exited = event.get("exit") or {}
    if exited.get("oom_killed"):
        return "OOM killed"
    if exited.get("requested_stop"):
        return ""
    code = exited.get("exit_code") or exited.get("guest_exit_code")
    if code:
        return f"exit code {code}"
    signal_number = exited.get("guest_signal") or exited.get("signal")
    return f"signal {signal_number}" if signal_number else ""


@dataclass
class _EventsRead:
    """How far one machine's events have been read, and a crash still waiting for its start."""

    last_ms: float  # the newest timestamp read
    at_last: set = field(default_factory=set)  # the events read at that millisecond (two can share one)
    crashed: str = ""  # a crash exit read, not yet followed by a start


class MachineWatch:
    """Reads the target's machines at each measurement and tells what changed.

    Restarts come from what the platform records, never from a timestamp: on Fly each machine
    carries its `events` (flyd's record, newest first, timestamps in ms). A restart is a crash
    (crash_of: an OOM kill, or an exit nobody asked for with a non-zero code or a signal) followed
    by a `start`. An auto-stop and auto-start by Fly's proxy (a requested stop, exit code 0), a
    config update or a deploy (`update`, a requested stop), a `fly machine restart` and a health
    check going critical and back are not restarts: the checks and the machine's state are
    measured on their own. `updated_at` moves on with any of those (and, with some flyctl, at
    every call), so it is not read at all where there are events.

    Each event counts once: per machine, only events newer than the last one read (by
    timestamp; those sharing its millisecond by their content). The first reading is the
    baseline: what happened before the watch is not the watch's, except a crash whose start
    comes after it. A machine first seen later counts events from the watch's start.

    A platform that records no events (the local one: its machine has no `events` key) is read
    as before: a machine back to `started` from another state, or whose `updated_at` (there: its
    process's start, which moves only when the process starts again) moved on on the same image."""

    def __init__(
        self,
        read_machines: Callable[[], Sequence[dict]],
        read_checks: Callable[[], Sequence[str]] = lambda: (),
        *,
        now_ms: Callable[[], float] = lambda: time.time() * 1000,
    ) -> None:
        self._read_machines = read_machines
        self._read_checks = read_checks  # the status of each health check: passing | warning | critical
        self._seen: dict[str, tuple] = {}
        self._events: dict[str, _EventsRead] = {}
        self._since_ms = now_ms()
        for machine in read_machines():
            key = self._key(machine)
            self._seen[key] = self._facts(machine)
            if isinstance(machine.get("events"), list):
                self._events[key] = _EventsRead(last_ms=-math.inf)
                self._crashes_restarted(key, machine["events"])  # the baseline: nothing counts

    @staticmethod
    def _key(machine: dict) -> str:
        return str(machine.get("id") or machine.get("name") or "")

    @staticmethod
    def _facts(machine: dict) -> tuple:
        return machine.get("state"), machine.get("updated_at"), machine.get("image_ref")

    def __call__(self) -> MachinesSeen:
        machines = list(self._read_machines())
        why: list[str] = []
        for machine in machines:
            key = self._key(machine)
            if isinstance(machine.get("events"), list):
                why += [f"machine {key}: {crash}" for crash in self._crashes_restarted(key, machine["events"])]
            elif self._came_back(key, machine):
                why.append(f"machine {key}: started again")
            self._seen[key] = self._facts(machine)
        return MachinesSeen(
            down=sum(1 for m in machines if m.get("state") not in (None, "started")),
            critical_checks=sum(1 for status in self._read_checks() if status == "critical"),
            restarts=len(why),
            why=tuple(why),
        )

    def _crashes_restarted(self, key: str, events: Sequence[Mapping[str, Any]]) -> list[str]:
        """The crashes among the machine's events not read yet that a start followed."""
        read = self._events.setdefault(key, _EventsRead(last_ms=self._since_ms))
        oldest_first = sorted(reversed(events), key=lambda e: e["timestamp"])  # stable: ties keep flyd's order
        new = [
            e
            for e in oldest_first
            if e["timestamp"] > read.last_ms or (e["timestamp"] == read.last_ms and _event_key(e) not in read.at_last)
        ]
        restarted = []
        for event in new:
            crash = crash_of(event)
            if crash:
                read.crashed = crash
            elif event.get("type") == "start" and read.crashed:
                restarted.append(read.crashed)
                read.crashed = ""
        if new:
            newest = new[-1]["timestamp"]
            if newest > read.last_ms:
                read.last_ms, read.at_last = newest, set()
            read.at_last |= {_event_key(e) for e in new if e["timestamp"] == newest}
        return restarted

    def _came_back(self, key: str, machine: dict) -> bool:
        """Without events: started again since the last reading (see the class docstring)."""
        before = self._seen.get(key)
        state, updated_at, image = self._facts(machine)
        if before is None or state != "started":
            return False
        was_state, was_updated, was_image = before
        bounced = was_state == "started" and image == was_image and updated_at and updated_at != was_updated
        return was_state != "started" or bool(bounced)


def _event_key(event: Mapping[str, Any]) -> tuple:
    return (event.get("timestamp"), event.get("type"), event.get("status"), event.get("source"))


@dataclass(frozen=True)
class Breach:
    at: str
    elapsed_s: float
    what: str

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WatchResult(ShowsAsRecord):
    """The window as measured, and whether it met the conditions."""

    started_at: str
    finished_at: str
    planned_s: float
    watched_s: float
    measurements: tuple[Measurement, ...]
    breaches: tuple[Breach, ...]
    availability_pct: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    error_lines: int
    machines_down: int  # the most seen down at once
    error_samples: tuple[str, ...]  # a few matching log lines, redacted
    ended_early: str = ""  # why the window ended before its end ("" when it ran to the end)
    settings: dict = field(default_factory=dict)
    restarts: int = 0  # machine restarts seen over the window
    critical_checks: int = 0  # the most health checks seen critical at once

    @property
    def ok(self) -> bool:
        return not self.breaches

    def summary(self) -> str:
        latency = "no latency" if self.p95_ms is None else f"p95 {self.p95_ms:g} ms"
        availability = "n/a" if self.availability_pct is None else f"{self.availability_pct:g}%"
        head = f"{len(self.measurements)} measurements over {self.watched_s:.0f} s: availability {availability}, "
        head += f"{latency}, {self.error_lines} error lines, {self.machines_down} machines down at most, "
        head += f"{self.critical_checks} critical checks at most, {self.restarts} restarts"
        if self.ended_early:
            head += f"; ended early: {self.ended_early}"
        return head + ("; " + "; ".join(b.what for b in self.breaches) if self.breaches else "; conditions met")

    def as_row(self) -> dict:
        row = asdict(self)
        row["measurements"] = [m.as_row() for m in self.measurements]
        row["breaches"] = [b.as_row() for b in self.breaches]
        row["summary"] = self.summary()
        return row

    def _repr_html_(self) -> str:
        """The summary and figures; each measurement was printed as it was taken, and is in the record."""
        row = {k: v for k, v in self.as_row().items() if k not in ("measurements", "breaches", "settings")}
        row["breaches"] = [f"{b.at}: {b.what}" for b in self.breaches] or "none"
        return html_table(record_rows(row))


#: The longest later watch `runbook watch --minutes` takes: a day.
MAX_WATCH_MINUTES = 24 * 60


def check_watch_minutes(value) -> float:
    """watch_minutes: 0 (the configured window) or a finite number of minutes up to a day."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"watch_minutes: must be a number of minutes, got {value!r}")
    if not 0 <= value <= MAX_WATCH_MINUTES:
        raise UsageError(
            f"watch_minutes: must be between 0 (the configured window) and {MAX_WATCH_MINUTES}, got {value!r}"
        )
    return float(value)


def watch_settings(table: dict, *, key: str = "watch") -> WatchSettings:
    """[watch] of hotdash.toml, each value checked: one ConfigError naming the key and what is allowed."""
    if not isinstance(table, dict):
        raise ConfigError(key, "must be a table")
    fields = {f.name: f for f in dataclasses.fields(WatchSettings)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", f"unknown key; allowed: {', '.join(fields)}")
    positive = ("minutes", "interval_s", "max_p95_ms")
    values = {}
    for name, value in table.items():
        where = f"{key}.{name}"
        if name in ("error_pattern", "on_breach"):
            if not isinstance(value, str) or not value:
                raise ConfigError(where, "must be a non-empty string")
        elif name in ("max_error_lines", "failure_limit"):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "failure_limit" else 0):
                raise ConfigError(
                    where, f"must be a whole number >= {1 if name == 'failure_limit' else 0}, got {value!r}"
                )
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(where, f"must be a finite number, got {value!r}")
        elif name in positive and value <= 0:
            raise ConfigError(where, f"must be greater than 0, got {value!r}")
        elif name == "min_availability_pct" and not 0 <= value <= 100:
            raise ConfigError(where, f"must be between 0 and 100, got {value!r}")
        values[name] = value
    if values.get("on_breach", "rollback") not in ON_BREACH:
        raise ConfigError(
            f"{key}.on_breach", f"{values['on_breach']!r} is not allowed; allowed: {', '.join(ON_BREACH)}"
        )
    try:
        re.compile(values.get("error_pattern", WatchSettings.error_pattern))
    except re.error as exc:
        raise ConfigError(f"{key}.error_pattern", f"not a regular expression ({exc})") from None
    settings = WatchSettings(**values)
    if settings.interval_s > settings.window_s:
        raise ConfigError(
            f"{key}.interval_s", f"{settings.interval_s:g} s is longer than the window ({settings.window_s:g} s)"
        )
    return settings


class NewLogLines:
    """The lines a log tail gained since the last call. A target gives the last N lines of the
    app's log; what overlaps the previous tail is not new. The first call sets the baseline
    (what was logged before the watch is not the watch's)."""

    def __init__(self, read_tail: Callable[[], Sequence[str]]) -> None:
        self._read_tail = read_tail
        self._seen: list[str] = list(read_tail())

    def __call__(self) -> list[str]:
        lines = list(self._read_tail())
        overlap = next((k for k in range(min(len(self._seen), len(lines)), 0, -1) if self._seen[-k:] == lines[:k]), 0)
        self._seen = lines
        return lines[overlap:]


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(round(pct / 100 * len(ordered), 6))))
    return ordered[rank - 1]


def watch_production(
    client: httpx.Client,
    health_url: str,
    settings: WatchSettings,
    *,
    read_new_logs: Callable[[], Sequence[str]] = lambda: (),
    machines: Callable[[], MachinesSeen] = MachinesSeen,
    max_age_s: float = 120.0,
    redactor: Redactor | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[Measurement], None] = lambda m: None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], str] | None = None,
) -> WatchResult:
    """Measure production every interval for the window, or until a breach or `stop`.

    read_new_logs: the log lines written since the last call (the target's seam);
    machines: what the app's machines say now (a MachineWatch), where the target knows."""
    from ..results import utc_now

    now = now or utc_now
    redactor = redactor if redactor is not None else Redactor.empty()
    stop = stop or threading.Event()
    pattern = re.compile(settings.error_pattern)
    started_at, start = now(), clock()
    measurements: list[Measurement] = []
    breaches: list[Breach] = []
    samples: list[str] = []
    failed_in_a_row = 0
    ended_early = ""
    try:
        while True:
            elapsed = clock() - start
            health = check_health(
                client,
                health_url,
                deadline_s=max(min(settings.interval_s, 10.0), 0.5),
                initial_backoff_s=3600.0,  # one request a measurement: the next one is the retry
                max_age_s=max_age_s,
                redactor=redactor,
            )
            matching = [line for line in read_new_logs() if pattern.search(line)]
            samples.extend(redactor.redact(line)[:300] for line in matching[: max(0, 5 - len(samples))])
            seen = machines()
            problems = [
                p
                for p in (
                    "" if health.ok else f"health: {health.detail}",
                    f"{len(matching)} error lines" if matching else "",
                    f"{seen.down} machines not running" if seen.down > 0 else "",
                    f"{seen.critical_checks} health checks critical" if seen.critical_checks > 0 else "",
                    f"{seen.restarts} machines restarted ({'; '.join(seen.why)})" if seen.restarts > 0 else "",
                )
                if p
            ]
            measurement = Measurement(
                at=now(),
                elapsed_s=round(elapsed, 2),
                ok=not problems,
                health_ok=health.ok,
                status_code=health.status_code,
                latency_ms=health.latency_ms,
                error_lines=len(matching),
                machines_down=seen.down,
                detail="; ".join(problems),
                critical_checks=seen.critical_checks,
                restarts=seen.restarts,
            )
            measurements.append(measurement)
            progress(measurement)
            failed_in_a_row = 0 if measurement.ok else failed_in_a_row + 1
            if failed_in_a_row >= settings.failure_limit:
                breaches.append(
                    Breach(
                        measurement.at,
                        measurement.elapsed_s,
                        f"{failed_in_a_row} failed measurements in a row (limit "
                        f"{settings.failure_limit}): {measurement.detail}",
                    )
                )
                ended_early = "breach"
                break
            if len(measurements) >= settings.planned_measurements:
                break
            next_at = start + len(measurements) * settings.interval_s
            if stop.wait(max(next_at - clock(), 0)):
                ended_early = "interrupted"
                break
    except KeyboardInterrupt:  # the kernel interrupted: a signal to the runner during the watch
        ended_early = "interrupted"
    breaches += _judge(measurements, settings, now)
    finished_at = now()
    healthy = [m for m in measurements if m.health_ok]
    latencies = [m.latency_ms for m in healthy if m.latency_ms is not None]
    return WatchResult(
        started_at=started_at,
        finished_at=finished_at,
        planned_s=settings.window_s,
        watched_s=round(clock() - start, 2),
        measurements=tuple(measurements),
        breaches=tuple(breaches),
        availability_pct=round(100 * len(healthy) / len(measurements), 2) if measurements else None,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        error_lines=sum(m.error_lines for m in measurements),
        machines_down=max((m.machines_down for m in measurements), default=0),
        error_samples=tuple(samples),
        ended_early=ended_early,
        settings=asdict(settings),
        restarts=sum(m.restarts for m in measurements),
        critical_checks=max((m.critical_checks for m in measurements), default=0),
    )


def _judge(measurements: Sequence[Measurement], settings: WatchSettings, now: Callable[[], str]) -> list[Breach]:
    """The window's success conditions, judged on what was measured."""
    if not measurements:
        return []
    at, elapsed = now(), measurements[-1].elapsed_s
    found = []
    healthy = [m for m in measurements if m.health_ok]
    availability = 100 * len(healthy) / len(measurements)
    if availability < settings.min_availability_pct:
        found.append(f"availability {availability:.1f}% below {settings.min_availability_pct:g}%")
    p95 = percentile([m.latency_ms for m in healthy if m.latency_ms is not None], 95)
    if p95 is not None and p95 > settings.max_p95_ms:
        found.append(f"p95 latency {p95:g} ms above {settings.max_p95_ms:g} ms")
    errors = sum(m.error_lines for m in measurements)
    if errors > settings.max_error_lines:
        found.append(f"{errors} error lines, more than {settings.max_error_lines}")
    return [Breach(at, elapsed, what) for what in found]
