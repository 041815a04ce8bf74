"""``ml-connector emulate NAME``: serve a system's emulator on loopback."""

from __future__ import annotations

import json
import signal
import sys
import time
from types import FrameType

import click

from ml_connector.emulation import EmulatorOptions, load_emulator, serve_in_thread

__all__ = ["register"]


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def register(main: click.Group) -> None:
    """Add ``emulate`` to ``main``."""

    @main.command()
    @click.argument("system")
    @click.option("--port", type=click.IntRange(0, 65535), default=0, help="0 picks a free port.")
    @click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, help="Per request.")
    @click.option("--seed", type=int, default=0, help="Seeds generated data and random faults.")
    def emulate(system: str, port: int, latency_ms: float, seed: int) -> None:
        """Serve SYSTEM's emulator on 127.0.0.1 until stopped (Ctrl-C or SIGTERM).

        Prints one JSON line first: ``base_url`` (configure it in place of the real service's
        base URL), ``settings`` and ``credentials`` (a connection can use both as they are).
        """
        factory = load_emulator(system)
        emulator = factory(EmulatorOptions(latency=latency_ms / 1000, seed=seed))
        running = serve_in_thread(emulator, port)
        start = {
            "system": system,
            "base_url": running.base_url,
            "settings": emulator.settings(running.base_url),
            "credentials": emulator.credentials(),
        }
        click.echo(json.dumps(start))
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        try:
            while running.alive:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
