"""The toolkit every system emulator is built with.

Sessions that expire, calls-in-flight gates and rate windows, scripted HTTP faults, a request log,
paging tokens, an :class:`Emulator` base (an ASGI app) and serving on loopback. Each plugin's
``emulator.py`` uses it, so every emulator is built the same way and stays small.
"""

from ml_connector.emulation._demo import BillKey, DemoSink, DemoSource, missing_members
from ml_connector.emulation._discovery import EMULATORS_GROUP, available_emulators, load_emulator
from ml_connector.emulation._emulator import Emulator, EmulatorOptions
from ml_connector.emulation._faults import FaultAction, HttpFaults
from ml_connector.emulation._limits import ConcurrencyGate, RateWindow
from ml_connector.emulation._log import RequestLog, RequestRecord
from ml_connector.emulation._paging import decode_page_token, encode_page_token
from ml_connector.emulation._server import RunningEmulator, serve_in_thread
from ml_connector.emulation._sessions import Session, SessionStore

__all__ = [
    "EMULATORS_GROUP",
    "BillKey",
    "ConcurrencyGate",
    "DemoSink",
    "DemoSource",
    "Emulator",
    "EmulatorOptions",
    "FaultAction",
    "HttpFaults",
    "RateWindow",
    "RequestLog",
    "RequestRecord",
    "RunningEmulator",
    "Session",
    "SessionStore",
    "available_emulators",
    "decode_page_token",
    "encode_page_token",
    "load_emulator",
    "missing_members",
    "serve_in_thread",
]
