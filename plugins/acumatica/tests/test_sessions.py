"""Sessions survive a crash: a killed run's licence slot is reused or freed by the next run.

A run killed with ``kill -9`` never signs out; its session keeps one of the licence's API-user
slots until it times out (acumatica.md §2, §4). The client saves each session in the store
(``ConnectionContext.saved_session``), and the next run reuses it or signs it out before it signs
in. A run that finds every slot taken says so and gives up after ``login_wait_seconds``.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from plugins.acumatica.tests.support import (
    BASE_URL,
    ReferenceSink,
    RoundTrip,
    context,
    credentials,
    emulator,
    requests_to,
    settings,
)

from ml_connector.connections import OpenConnection, open_connection
from ml_connector.emulation import FaultAction, serve_in_thread
from ml_connector.engine import LimiterPool, RetryPolicy, SyncEngine, SyncOptions
from ml_connector.errors import AuthenticationError
from ml_connector.store import RunStatus
from ml_connector.vault import Vault
from ml_connector_acumatica import plugin
from ml_connector_acumatica.client import LICENCE_SLOT, LOGIN_LIMIT_POLL, AcumaticaClient

if TYPE_CHECKING:
    from ml_connector.testing import ManualClock
    from ml_connector_acumatica.emulator import AcumaticaEmulator

MODES = ["oauth", "cookie"]
REPO = Path(__file__).resolve().parents[3]


async def _no_sleep(_: float) -> None:
    """Retries without waiting: the tests never depend on the wall clock."""


FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)


class MemoryKeeper:
    """A ``SessionKeeper`` that two contexts of one test share, as two processes share a store."""

    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        return None if self.data is None else dict(self.data)

    def save(self, data: dict[str, Any]) -> None:
        self.data = dict(data)

    def clear(self) -> None:
        self.data = None


@dataclass
class Observer:
    """Counts stages and records what the run says it waits for."""

    stages: list[str] = field(default_factory=list)
    waits: list[tuple[str, float, float]] = field(default_factory=list)

    def stage(self, name: str) -> None:
        self.stages.append(name)

    def count(self, key: str, n: int = 1) -> None:
        pass

    def wait(self, what: str, waited: float, limit: float) -> None:
        self.waits.append((what, waited, limit))


def stored(tmp_path: Path, emu: AcumaticaEmulator, **source_settings: Any) -> RoundTrip:
    """A stored connection (state database, vault, registry) from the emulator to a sink."""
    return RoundTrip(tmp_path, emu, ReferenceSink(), source_settings=source_settings)


def open_side(trip: RoundTrip) -> OpenConnection:
    """Both sides of the stored connection, as a new process opens them."""
    return open_connection(
        trip.store,
        Vault.from_environment(),
        trip.registry,
        trip.name,
        {"acumatica": trip.emu.transport()},
    )


async def killed_run(trip: RoundTrip) -> None:
    """A run that signs in, reads, and dies without signing out (``kill -9``)."""
    connection = open_side(trip)
    await connection.source.authenticate()
    await connection.source.list_accounts()
    client = connection.source.ctx.state["acumatica.client"]
    assert isinstance(client, AcumaticaClient)
    await client.http.aclose()  # the process is gone: its connections drop, no logout is sent


async def sync(trip: RoundTrip, observer: Observer) -> Any:
    connection = open_side(trip)
    try:
        engine = SyncEngine(
            trip.store,
            connection.id,
            connection.source,
            connection.sink,
            SyncOptions(retry=FAST_RETRY, now=trip.emu.now),
            observer,
            LimiterPool(),
        )
        return await engine.run()
    finally:
        await connection.close()


def refused_logins(emu: AcumaticaEmulator) -> int:
    """Sign-ins the emulator refused ("API Login Limit" or any other reason)."""
    return sum(
        1
        for r in emu.log.records
        if r.status >= 400 and ("/entity/auth/login" in r.path or "/connect/token" in r.path)
    )


# --- Killed runs do not pile up in the licence's slots -----------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_runs_killed_without_sign_out_do_not_use_up_the_licence(
    tmp_path: Path, clock: ManualClock, mode: str
) -> None:
    emu = emulator(clock, max_sessions=2)
    trip = stored(tmp_path, emu, auth_mode=mode)
    try:
        for _ in range(5):  # more kills than the licence has slots
            await killed_run(trip)
        assert emu.live_sessions() == 1, "each killed run reused the one session before it"

        observer = Observer()
        summary = await sync(trip, observer)

        assert summary.status is RunStatus.SUCCEEDED, summary.error
        assert observer.waits == [], "the run started at once: no wait for a licence slot"
        assert refused_logins(emu) == 0
        assert emu.logins == 1, "one sign-in for six runs"
        assert emu.live_sessions() == 0, "the run that ended cleanly signed the session out"
        assert open_side(trip).source.ctx.saved_session.load() is None  # type: ignore[union-attr]
    finally:
        trip.close()


@pytest.mark.parametrize("mode", MODES)
async def test_a_saved_session_that_expired_costs_one_new_sign_in(
    tmp_path: Path, clock: ManualClock, mode: str
) -> None:
    emu = emulator(clock, max_sessions=1)
    trip = stored(tmp_path, emu, auth_mode=mode)
    try:
        await killed_run(trip)
        clock.advance(timedelta(days=31))  # idle timeout, token and refresh chain all over
        assert emu.live_sessions() == 0
        summary = await sync(trip, Observer())
        assert summary.status is RunStatus.SUCCEEDED, summary.error
        assert emu.logins == 2
        assert emu.live_sessions() == 0
    finally:
        trip.close()


async def test_a_saved_oauth_session_whose_token_ran_out_goes_on_by_refresh(
    clock: ManualClock,
) -> None:
    emu = emulator(clock, max_sessions=1)
    keeper = MemoryKeeper()
    first = context(emu)
    first.saved_session = keeper
    await plugin.authenticate(first)  # then killed
    clock.advance(timedelta(hours=2))  # the access token expired; the refresh token did not
    second = context(emu)
    second.saved_session = keeper
    await plugin.authenticate(second)
    await plugin.list_accounts(second)
    assert (emu.logins, emu.refreshes) == (1, 1), "the same session, renewed"
    await plugin.close_connection(second)
    assert emu.live_sessions() == 0
    assert keeper.data is None


async def test_a_saved_session_of_another_sign_in_mode_is_signed_out_first(
    clock: ManualClock,
) -> None:
    emu = emulator(clock, max_sessions=1)
    keeper = MemoryKeeper()
    cookie = context(emu, auth_mode="cookie")
    cookie.saved_session = keeper
    await plugin.authenticate(cookie)  # then killed; the operator switches to OAuth
    oauth = context(emu, auth_mode="oauth")
    oauth.saved_session = keeper
    await plugin.authenticate(oauth)
    assert emu.logouts == 1, "the cookie session was signed out before the new sign-in"
    assert refused_logins(emu) == 0, "so the one slot was free for it"
    assert keeper.data is not None
    assert keeper.data["mode"] == "oauth"
    await plugin.close_connection(oauth)
    assert emu.live_sessions() == 0


async def test_a_saved_session_of_other_settings_is_left_alone(clock: ManualClock) -> None:
    emu = emulator(clock)
    keeper = MemoryKeeper()
    keeper.save({"mode": "cookie", "owner": {"instance": "https://elsewhere"}, "cookies": []})
    ctx = context(emu, auth_mode="cookie")
    ctx.saved_session = keeper
    await plugin.authenticate(ctx)
    assert emu.logouts == 0
    assert keeper.data is not None
    assert keeper.data["owner"]["instance"] == BASE_URL
    await plugin.close_connection(ctx)


async def test_a_failed_sign_out_keeps_the_session_for_the_next_run(clock: ManualClock) -> None:
    emu = emulator(clock, max_sessions=1)
    keeper = MemoryKeeper()
    ctx = context(emu, auth_mode="cookie")
    ctx.saved_session = keeper
    await plugin.authenticate(ctx)
    emu.faults.add(FaultAction(503), path_contains="/entity/auth/logout")
    await plugin.close_connection(ctx)
    assert keeper.data is not None, "the instance did not confirm the end: keep it"
    again = context(emu, auth_mode="cookie")
    again.saved_session = keeper
    await plugin.authenticate(again)
    assert emu.logins == 1, "reused: the slot it holds was not lost"
    await plugin.close_connection(again)
    assert keeper.data is None
    assert emu.live_sessions() == 0


@pytest.mark.parametrize("mode", MODES)
async def test_saved_data_carries_the_session_and_no_password(
    clock: ManualClock, mode: str
) -> None:
    emu = emulator(clock)
    keeper = MemoryKeeper()
    ctx = context(emu, auth_mode=mode)
    ctx.saved_session = keeper
    await plugin.authenticate(ctx)
    text = repr(keeper.data)
    assert emu.config.password not in text
    assert emu.config.client_secret not in text
    assert mode in text
    await plugin.close_connection(ctx)


# --- Waiting for a slot: said, and bounded ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_run_that_finds_every_slot_taken_says_so_and_gives_up(
    tmp_path: Path, clock: ManualClock, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator(clock, max_sessions=2)
    holders = [context(emu, auth_mode=mode) for _ in range(2)]  # other runs, still running
    for holder in holders:
        await plugin.authenticate(holder)
    trip = stored(tmp_path, emu, auth_mode=mode, login_wait_seconds=0.01)
    caplog.set_level(logging.WARNING, logger="ml_connector")
    try:
        observer = Observer()
        summary = await sync(trip, observer)
    finally:
        trip.close()

    assert summary.status is RunStatus.FAILED
    assert observer.waits == [(LICENCE_SLOT, 0.0, 0.01)], "on screen: what, how long, the bound"
    assert observer.stages == ["accounts"]
    assert summary.error is not None
    assert "gave up after waiting 0 s for a free Acumatica API-user licence slot" in summary.error
    assert "API Login Limit" in summary.error
    assert "login_wait_seconds" in summary.error
    assert emu.config.password not in summary.error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"waiting for {LICENCE_SLOT}: 0 s so far" in w for w in warnings), warnings
    assert refused_logins(emu) == 2, "one sign-in, one more after the wait, then no more"
    for holder in holders:
        await plugin.close_connection(holder)


async def test_the_wait_is_reported_before_each_pause_up_to_the_bound(
    clock: ManualClock,
) -> None:
    emu = emulator(clock, max_sessions=1)
    holder = context(emu, auth_mode="cookie")
    await plugin.authenticate(holder)
    pauses: list[float] = []
    reports: list[tuple[str, float, float]] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    client = AcumaticaClient(
        context(emu).http_client(BASE_URL),
        settings(emu, auth_mode="cookie"),  # login_wait_seconds: the default, 300
        credentials(emu),
        clock=emu.now,
        sleep=sleep,
        report_wait=lambda what, waited, limit: reports.append((what, waited, limit)),
    )
    with pytest.raises(AuthenticationError, match="gave up after waiting 300 s"):
        await client.sign_in()
    assert pauses == [LOGIN_LIMIT_POLL] * 20
    assert reports == [(LICENCE_SLOT, LOGIN_LIMIT_POLL * n, 300.0) for n in range(20)]
    assert requests_to(emu, "POST", "/entity/auth/login") == 1 + 21
    await client.close()
    await plugin.close_connection(holder)


async def test_a_slot_that_comes_free_during_the_wait_is_taken(clock: ManualClock) -> None:
    emu = emulator(clock, max_sessions=1)
    holder = context(emu, auth_mode="cookie")
    await plugin.authenticate(holder)
    reports: list[float] = []

    async def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))
        if len(reports) == 3:
            await plugin.close_connection(holder)  # the other run ends

    client = AcumaticaClient(
        context(emu).http_client(BASE_URL),
        settings(emu, auth_mode="cookie"),
        credentials(emu),
        clock=emu.now,
        sleep=sleep,
        report_wait=lambda what, waited, limit: reports.append(waited),
    )
    await client.sign_in()
    assert reports == [0.0, 15.0, 30.0]
    assert emu.live_sessions() == 1
    await client.close()
    assert emu.live_sessions() == 0


async def test_a_client_without_a_context_logs_its_wait(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    emu = emulator(clock, max_sessions=1)
    holder = context(emu, auth_mode="cookie")
    await plugin.authenticate(holder)
    client = AcumaticaClient(
        context(emu).http_client(BASE_URL),
        settings(emu, auth_mode="cookie", login_wait_seconds=1),
        credentials(emu),
        sleep=_no_sleep,
    )
    caplog.set_level(logging.WARNING)
    with pytest.raises(AuthenticationError):
        await client.sign_in()
    assert "acumatica: waiting for a free Acumatica API-user licence slot" in caplog.text
    await client.close()
    await plugin.close_connection(holder)


# --- The emulator's licence, as the tests above rely on it ----------------------------------------


async def test_emulator_a_signed_out_session_cannot_come_back_by_refresh(
    clock: ManualClock,
) -> None:
    emu = emulator(clock, max_sessions=1)
    ctx = context(emu)
    client = AcumaticaClient(ctx.http_client(BASE_URL), settings(emu), credentials(emu))
    await client.sign_in()
    refresh = client.session.refresh_token  # type: ignore[attr-defined]
    await client.close()
    other = context(emu)
    await plugin.authenticate(other)  # the freed slot is taken
    response = (
        await context(emu)
        .http_client(BASE_URL)
        .post(
            "identity/connect/token",
            data={
                "grant_type": "refresh_token",
                "client_id": emu.config.client_id,
                "client_secret": emu.config.client_secret,
                "refresh_token": refresh,
            },
        )
    )
    assert response.status_code == 400
    assert emu.live_sessions() == 1
    await plugin.close_connection(other)


async def test_emulator_a_refresh_past_the_token_waits_for_a_slot(clock: ManualClock) -> None:
    emu = emulator(clock, max_sessions=1)
    first = context(emu)
    await plugin.authenticate(first)
    clock.advance(timedelta(hours=2))  # its access token ran out: the slot is free
    second = context(emu)
    await plugin.authenticate(second)
    first_client = first.state["acumatica.client"]
    response = await first_client.http.post(
        "identity/connect/token",
        data={
            "grant_type": "refresh_token",
            "client_id": emu.config.client_id,
            "client_secret": emu.config.client_secret,
            "refresh_token": first_client.session.refresh_token,
        },
    )
    assert response.status_code == 400
    assert "API Login Limit" in response.text
    await plugin.close_connection(second)


# --- The same with real processes killed with SIGKILL -------------------------------------------


@pytest.mark.slow
async def test_processes_killed_with_sigkill_leave_no_slot_taken(
    tmp_path: Path, clock: ManualClock
) -> None:
    emu = emulator(clock, max_sessions=2)
    served = serve_in_thread(emu)
    trip = RoundTrip(
        tmp_path,
        emu,
        ReferenceSink(),
        source_settings={**emu.settings(served.base_url), "auth_mode": "cookie"},
    )
    try:
        for _ in range(3):  # more kills than the licence has slots
            child = subprocess.Popen(  # noqa: ASYNC220 - a child to kill, not to await
                [sys.executable, "-m", "plugins.acumatica.tests.session_child",
                 str(tmp_path / "state.db"), trip.name],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                cwd=REPO,
            )  # fmt: skip
            assert child.stdout is not None
            line = child.stdout.readline()
            child.send_signal(signal.SIGKILL)
            _, errors = child.communicate(timeout=30)
            assert line == "signed-in\n", errors[-2000:]
        assert emu.live_sessions() == 1

        connection = open_connection(trip.store, Vault.from_environment(), trip.registry, trip.name)
        await connection.source.authenticate()
        assert emu.logins == 1, "every process after the first reused the first one's session"
        await connection.close()
        assert emu.live_sessions() == 0
    finally:
        trip.close()
        served.stop()
