"""No secret reaches the state store, a log record or the CLI's output, through real syncs.

Every ERP emulator (in each of its plugin's sign-in modes) and the BILL emulator are served on
loopback; the real plugins sync them through the engine, with session expiry, throttling, 5xx
answers, a lost response, a bill BILL refuses, a change, a payments round trip (by polling and by
webhook, a forged delivery included), runs whose sign-in is refused, and the operator commands
(``sync run``, ``runs``, ``audit``, ``exceptions``, ``state``, ``connections``, ``mapping``,
``ping``). Every log record of every logger at DEBUG is tapped as it is handled.

Then every row of every table of the state database, the database files' bytes, every log record
(message, arguments, exception, extra attributes) and every command's output are searched for
every secret: the connection's passwords, keys and client secrets (and their URL-encoded and
Basic-auth forms), every session id and token the emulators issued (recorded as they were issued),
BILL's webhook signing keys and the vault's master key.

``test_the_scanner_finds_planted_secrets`` proves the search can fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import inspect
from sqlmodel import select
from tests.e2e_support import NAME, SINK, SOURCES, Pair

import ml_connector.store
from ml_connector.cli import main
from ml_connector.connections import SideInput, create_connection
from ml_connector.emulation import (
    DemoSink,
    DemoSource,
    EmulatorOptions,
    FaultAction,
    SessionStore,
    load_emulator,
    serve_in_thread,
)
from ml_connector.engine import RetryPolicy, WebhookReceiver, ensure_subscription
from ml_connector.errors import ConnectorError
from ml_connector.registry import Registry
from ml_connector.store import ExceptionItemRow, RunRow, RunStatus, Store, open_store
from ml_connector.vault import Vault

pytestmark = pytest.mark.skipif(not SOURCES, reason="no ERP emulator installed")

#: The plugins' sign-in modes, each a different path for a secret to take.
AUTH_MODES: dict[str, tuple[str, ...]] = {
    "acumatica": ("oauth", "cookie"),
    "epicor": ("token_resource", "basic", "oauth"),
}
#: Emulator options that keep the test about secrets: no licence or per-minute limit to wait out.
EMULATOR_EXTRA: dict[str, dict[str, Any]] = {
    "acumatica": {"requests_per_minute": None, "max_sessions": 50},
}
#: Credential fields that name someone rather than prove who they are.
NOT_SECRET = frozenset({"username", "user", "client_id", "company", "tenant"})
#: Loggers of the emulated remote systems (their own server logs), not of the connector.
REMOTE_LOGGERS = ("uvicorn", "ml_connector.emulation", "ml_connector_bill.emulator")
WEBHOOK_URL = f"https://connector.example/webhooks/{NAME}"


def variants() -> list[tuple[str, str | None]]:
    return [(source, mode) for source in SOURCES for mode in AUTH_MODES.get(source, (None,))]


# --- Where secrets could show up ---------------------------------------------------------------


class LogTap:
    """Every log record any logger handles (propagating or not), with every logger at DEBUG."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []

    def connector_records(self) -> list[logging.LogRecord]:
        return [r for r in self.records if not r.name.startswith(REMOTE_LOGGERS)]


@pytest.fixture
def log_tap(monkeypatch: pytest.MonkeyPatch) -> Iterator[LogTap]:
    """Tap ``Logger.handle``; every logger at DEBUG and enabled until the test ends."""
    tap = LogTap()
    handle = logging.Logger.handle

    def tapped(logger: logging.Logger, record: logging.LogRecord) -> None:
        tap.records.append(record)  # list.append is atomic: emulator threads log too
        handle(logger, record)

    monkeypatch.setattr(logging.Logger, "handle", tapped)
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.disabled = False
        logger.setLevel(logging.DEBUG)  # also clears isEnabledFor's cache
    try:
        yield tap
    finally:
        for logger, level, disabled in saved:
            logger.disabled = disabled
            logger.setLevel(level)


_PLAIN_RECORD = set(vars(logging.makeLogRecord({})))


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler or formatter could write of a record."""
    try:
        message = record.getMessage()
    except Exception as exc:  # a bad format string must not hide the arguments
        message = f"{record.msg!r} % {exc!r}"
    parts = [message, repr(record.msg), repr(record.args), record.exc_text or ""]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    if record.stack_info:
        parts.append(record.stack_info)
    extra = {k: v for k, v in vars(record).items() if k not in _PLAIN_RECORD}
    parts.append(repr(extra))
    return "\n".join(parts)


def _as_text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)


def store_cells(store: Store) -> Iterator[tuple[str, str]]:
    """(where, text) of every cell of every table, as the database holds it (no type decoding)."""
    with store.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            result = connection.exec_driver_sql(f'SELECT * FROM "{table}"')
            columns = list(result.keys())
            for number, row in enumerate(result):
                for column, value in zip(columns, row, strict=True):
                    yield f"table {table} row {number} column {column}", _as_text(value)


def database_files(path: Path, store: Store) -> Iterator[tuple[str, str]]:
    """The SQLite files' bytes, after moving the write-ahead log into the database."""
    with store.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    for file in sorted(path.parent.glob(path.name + "*")):
        yield f"file {file.name}", file.read_bytes().decode("latin-1")


@dataclass
class Scan:
    """What to look for, and where."""

    secrets: dict[str, str]
    places: list[tuple[str, str]] = field(default_factory=list)

    def add_text(self, where: str, text: str) -> None:
        self.places.append((where, text))

    def add_records(self, records: Sequence[logging.LogRecord]) -> None:
        for record in records:
            where = f"log {record.name}:{record.levelname} {str(record.msg)[:60]!r}"
            self.places.append((where, record_text(record)))

    def leaks(self) -> list[str]:
        found = []
        for label, secret in self.secrets.items():
            for where, text in self.places:
                if secret in text:
                    found.append(f"{label} in {where}")
        return found


def secret_forms(label: str, value: str) -> dict[str, str]:
    """A secret and the encodings it travels in (form bodies, query strings)."""
    forms = {label: value, f"{label} (url-encoded)": quote(value, safe="")}
    forms[f"{label} (form-encoded)"] = quote_plus(value)
    return forms


def credential_secrets(side: str, credentials: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in credentials.items():
        if name not in NOT_SECRET and value:
            found.update(secret_forms(f"{side} {name}", value))
    username, password = credentials.get("username"), credentials.get("password")
    if username and password:
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        found[f"{side} basic-auth header"] = basic
    return found


class IssuedTokens:
    """Every session id and token an emulator's :class:`SessionStore` issues, as issued."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tokens: list[str] = []
        create = SessionStore.create
        tokens = self.tokens

        def recording(store: SessionStore, principal: str, **data: Any) -> Any:
            session = create(store, principal, **data)
            tokens.append(session.token)
            return session

        monkeypatch.setattr(SessionStore, "create", recording)


# --- The syncs ---------------------------------------------------------------------------------


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


def make_emulators(source: str) -> tuple[Any, Any]:
    erp = load_emulator(source)(EmulatorOptions(seed=11, extra=EMULATOR_EXTRA.get(source, {})))
    bill = load_emulator(SINK)(
        EmulatorOptions(
            seed=11,
            extra={
                "auto_deliver": False,
                "delivery_backoff_scale": 0.0,
                "delivery_sleep": _no_sleep,
            },
        )
    )
    assert isinstance(erp, DemoSource)
    assert isinstance(bill, DemoSink)
    erp.seed_demo(16, 11)
    unmapped = erp.unmapped_account()
    bill.seed_chart({n: name for n, name in erp.account_numbers().items() if n != unmapped})
    return erp, bill


def erp_connection(erp: Any, source: str, mode: str | None, base: str) -> SideInput:
    if source == "epicor" and mode == "oauth":
        return SideInput(source, erp.oauth_settings(base), erp.oauth_credentials())
    settings = erp.settings(base)
    if source == "epicor" and mode is not None:
        settings["auth"] = mode
    elif source == "acumatica" and mode is not None:
        settings["auth_mode"] = mode
    return SideInput(source, settings, erp.credentials())


def refuse_erp_logins(erp: Any) -> bool:
    """Make the ERP emulator refuse every sign-in, where it can; whether it could."""
    if hasattr(erp, "revoke_credentials"):
        erp.revoke_credentials()
    elif hasattr(erp, "credentials_valid"):
        erp.credentials_valid = False
    else:
        return False
    erp.expire_sessions()
    return True


def has_sessions(source: str, mode: str | None) -> bool:
    """Whether the ERP side signs in to a session (a 401 then means "sign in again")."""
    return not (source == "epicor" and mode == "basic")


def add_faults(pair: Pair, erp_sessions: bool) -> None:
    """Session expiry, throttling, 5xx, a lost response and a bill BILL refuses, in one run."""
    erp, bill = pair.erp, pair.bill
    if erp_sessions:
        erp.faults.add(FaultAction(401, kind="session"), skip=3)
    erp.faults.add(FaultAction(429, kind="throttled", retry_after=0.0), skip=1, times=2)
    # a read the engine retries; NetSuite reads through SuiteQL, which is a POST
    read: dict[str, str] = (
        {"method": "POST", "path_contains": "/suiteql"}
        if erp.system == "netsuite"
        else {"method": "GET"}
    )
    erp.faults.add(FaultAction(500), skip=1, times=2, **read)
    bill.faults.add(FaultAction(401, kind="session"), skip=4)
    bill.faults.add(FaultAction(429, kind="throttled", retry_after=0.0), skip=1, times=2)
    bill.faults.add(FaultAction(503), skip=1, times=2)
    bill.faults.add(FaultAction(504, after_apply=True), method="POST", path_contains="/bills")
    bill.faults.add(FaultAction(400, kind="validation"), method="POST", path_contains="/bills")


class Cli:
    """``ml-connector`` in process, on the pair's database, in a thread (it runs its own loop)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.outputs: list[tuple[str, str]] = []

    async def __call__(self, *args: str) -> str:
        def invoke() -> str:
            result = CliRunner().invoke(main, ["--db", str(self.db), *args])
            failure = result.exception
            if failure is None or isinstance(failure, SystemExit):
                return result.output
            return result.output + "".join(traceback.format_exception(failure))

        output = await asyncio.to_thread(invoke)
        self.outputs.append((" ".join(args), output))
        return output


async def exercise(pair: Pair, db: Path, erp_sessions: bool) -> Cli:
    """Everything a connection does and shows, with the faults that make it say more."""
    cli = Cli(db)
    add_faults(pair, erp_sessions)
    first = await pair.sync(bulk=False, workers=2)
    assert first.status is RunStatus.SUCCEEDED, first.error
    pair.erp.faults.clear()
    pair.bill.faults.clear()

    pair.erp.change_bill(sorted(pair.erp.eligible_bills())[0])
    spent = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, sleep=_no_sleep)
    pair.bill.faults.add(FaultAction(503), path_contains="/bills", times=4)  # retries run out
    await pair.sync(retry=spent, bulk=False, workers=1)
    pair.bill.faults.clear()

    vault = Vault.from_environment()
    async with pair.engine() as engine:
        await ensure_subscription(pair.store, vault, engine, WEBHOOK_URL)
        receiver = WebhookReceiver(pair.store, vault, engine)

        async def deliver(request: httpx.Request) -> httpx.Response:
            try:
                await receiver.receive(dict(request.headers), request.content)
            except ConnectorError:
                return httpx.Response(401)
            return httpx.Response(200)

        pair.bill.config.delivery_transport = httpx.MockTransport(deliver)
        pair.bill.pay_bills(3)
        assert pair.bill.outbox, "paying made no webhook delivery"
        delivery = pair.bill.outbox[0]
        forged = {
            name: ("AAAA" + value[4:] if "signature" in name.lower() else value)
            for name, value in delivery.headers.items()
        }
        with contextlib.suppress(ConnectorError):  # refused: nothing read, nothing stored
            await receiver.receive(forged, delivery.body)
        assert await pair.bill.deliver_pending() >= 3
    pair.bill.pay_bills(2)
    paid = await pair.sync()
    assert paid.status is RunStatus.SUCCEEDED, paid.error

    pair.erp.expire_sessions()
    pair.bill.expire_sessions()
    if erp_sessions:
        pair.erp.faults.add(FaultAction(401, kind="session"), skip=2)
    await cli("--debug", "sync", "run", NAME, "--no-bulk")
    await cli("--debug", "sync", "run", NAME, "--json")
    await cli("--debug", "ping", NAME)

    pair.bill.reject_logins = True
    pair.bill.expire_sessions()
    refused = await pair.sync()
    assert refused.status is RunStatus.FAILED
    await cli("--debug", "sync", "run", NAME)
    await cli("--debug", "ping", NAME, "--json")
    pair.bill.reject_logins = False
    if refuse_erp_logins(pair.erp):
        refused = await pair.sync()
        assert refused.status is RunStatus.FAILED
        await cli("--debug", "sync", "run", NAME)
        await cli("--debug", "ping", NAME)

    await show_everything(cli, pair.store)
    return cli


async def show_everything(cli: Cli, store: Store) -> None:
    with store.session(read_only=True) as session:
        runs = [r.id for r in session.exec(select(RunRow))]
        items = [e.id for e in session.exec(select(ExceptionItemRow))]
    for as_json in ((), ("--json",)):
        await cli("runs", "list", NAME, "--limit", "0", *as_json)
        await cli("audit", NAME, "--limit", "0", *as_json)
        await cli("exceptions", "list", NAME, "--status", "all", *as_json)
        await cli("state", "show", NAME, *as_json)
        await cli("connections", "list", *as_json)
        await cli("connections", "show", NAME, *as_json)
        await cli("mapping", "show", NAME, *as_json)
        for run_id in runs:
            await cli("runs", "show", str(run_id), *as_json)
        for item_id in items:
            await cli("exceptions", "show", str(item_id), *as_json)


# --- The tests ---------------------------------------------------------------------------------


@pytest.fixture
def cli_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dispose of the stores the CLI opens (it leaves that to the process's end)."""
    opened: list[Store] = []

    def open_and_keep(url_or_path: str | None = None) -> Store:
        store = open_store(url_or_path)
        opened.append(store)
        return store

    monkeypatch.setattr(ml_connector.store, "open_store", open_and_keep)
    yield
    for store in opened:
        store.dispose()


@pytest.mark.parametrize(("source", "mode"), variants())
async def test_no_secret_in_the_store_the_logs_or_the_output_of_real_syncs(
    source: str,
    mode: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cli_stores: None,
    log_tap: LogTap,
    ml_connector_home: Path,
) -> None:
    tokens = IssuedTokens(monkeypatch)
    erp, bill = make_emulators(source)
    servers = [serve_in_thread(erp), serve_in_thread(bill)]
    db = tmp_path / "state.db"
    store = open_store(str(db))
    try:
        erp_side = erp_connection(erp, source, mode, servers[0].base_url)
        bill_side = SideInput(SINK, bill.settings(servers[1].base_url), bill.credentials())
        registry = Registry()
        create_connection(store, Vault.from_environment(), registry, NAME, erp_side, bill_side)
        pair = Pair(source, erp, bill, store, registry, transports=None)
        cli = await exercise(pair, db, has_sessions(source, mode))
    finally:
        for server in servers:
            server.stop()

    # The faults were served, so the error paths ran.
    for emulator in (erp, bill):
        statuses = {r.status for r in emulator.log.records}
        assert 429 in statuses, (emulator.system, statuses)
        assert 401 in statuses or (emulator is erp and not has_sessions(source, mode))
        assert statuses & {500, 503, 504}, (emulator.system, statuses)
    assert 400 in {r.status for r in bill.log.records}
    assert pair.exceptions(), "the refused bill and the spent retries must be queued"
    assert sum(erp.payments_posted().values()) >= 5
    assert bill.subscriptions, "the webhook subscription was made"

    secrets = credential_secrets(source, dict(erp_side.credentials))
    secrets |= credential_secrets(SINK, dict(bill_side.credentials))
    assert tokens.tokens, "no session was issued: the token recording is broken"
    secrets |= {f"issued session/token #{n}": t for n, t in enumerate(tokens.tokens)}
    secrets |= {f"webhook key of {s}": bill.security_key(s) for s in bill.subscriptions}
    key_file = ml_connector_home / "master.key"
    secrets |= {f"master key line {n}": k for n, k in enumerate(key_file.read_text().split())}
    assert all(len(s) >= 8 for s in secrets.values()), "too short to search for"

    scan = Scan(secrets)
    for where, text in store_cells(store):
        scan.add_text(where, text)
    for where, text in database_files(db, store):
        scan.add_text(where, text)
    store.dispose()
    scan.add_records(log_tap.connector_records())
    for command, output in cli.outputs:
        scan.add_text(f"output of `ml-connector {command}`", output)
    captured = capsys.readouterr()
    scan.add_text("stdout", captured.out)
    scan.add_text("stderr", captured.err)
    for emulator in (erp, bill):  # what the connector put in URLs
        scan.add_text(
            f"{emulator.system} request paths", " ".join(r.path for r in emulator.log.records)
        )

    assert len(log_tap.connector_records()) > 100, "the log tap caught almost nothing"
    assert scan.leaks() == []


# --- The scanner can fail ----------------------------------------------------------------------


def test_the_scanner_finds_planted_secrets(tmp_path: Path, log_tap: LogTap) -> None:
    secret, password = "planted-S3cret-0123456789", "planted-passw0rd!"
    log = logging.getLogger("ml_connector_bill")
    log.debug("session %s opened", secret)  # in the arguments
    try:
        raise ConnectorError(f"refused {secret}")
    except ConnectorError:
        logging.getLogger("ml_connector.engine").warning("failed", exc_info=True)  # traceback
    logging.getLogger("ml_connector").info("sent", extra={"header": f"Bearer {secret}"})
    basic = base64.b64encode(f"ap:{password}".encode()).decode()
    logging.getLogger("ml_connector_epicor").debug("Authorization: Basic %s", basic)
    logging.getLogger("uvicorn.access").info("GET /?key=%s", secret)  # the remote side's own

    db = tmp_path / "state.db"
    store = open_store(str(db))
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO alembic_version (version_num) VALUES (?)", (secret,)
        )
    cells = dict(store_cells(store))
    files = dict(database_files(db, store))
    store.dispose()

    scan = Scan(
        {"token": secret} | credential_secrets("erp", {"username": "ap", "password": password})
    )
    scan.add_records(log_tap.connector_records())
    scan.add_text("output", f"password={quote_plus(password)}")
    leaks = scan.leaks()
    assert any(leak.startswith("token in log ml_connector_bill:DEBUG") for leak in leaks)
    assert any(leak.startswith("token in log ml_connector.engine:WARNING") for leak in leaks)
    assert any(leak.startswith("token in log ml_connector:INFO") for leak in leaks)
    assert any(leak.startswith("erp basic-auth header in log") for leak in leaks)
    assert any(leak.startswith("erp password (form-encoded) in output") for leak in leaks)
    assert not any("uvicorn" in leak for leak in leaks)

    planted = Scan({"token": secret})
    planted.places += list(cells.items()) + list(files.items())
    found = planted.leaks()
    assert any("table alembic_version" in leak for leak in found), found
    assert any("file state.db" in leak for leak in found), found
    assert Scan({"token": secret}, [("clean", "nothing here")]).leaks() == []
