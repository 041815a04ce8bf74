"""``ml-connector serve``: the long-running service."""

from __future__ import annotations

from datetime import timedelta

import click
import uvicorn

from ml_connector.cli._app import AppContext, pass_app
from ml_connector.service import Service, ServiceOptions

__all__ = ["register"]


def register(main: click.Group) -> None:
    """Add ``serve`` to ``main``."""

    @main.command()
    @click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
    @click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
    @click.option(
        "--interval",
        type=click.IntRange(min=1),
        default=15,
        show_default=True,
        help="Minutes between two runs of a connection.",
    )
    @click.option(
        "--public-url",
        metavar="URL",
        help="HTTPS URL the sink reaches this service at; enables webhook subscriptions.",
    )
    @click.option("--connection", "connections", multiple=True, help="Serve only these.")
    @pass_app
    def serve(
        app: AppContext,
        host: str,
        port: int,
        interval: int,
        public_url: str | None,
        connections: tuple[str, ...],
    ) -> None:
        """Run every connection each interval; receive webhooks; report /health and /metrics.

        Webhook deliveries go to POST /webhooks/<connection>; a delivery whose signature does not
        match the stored key is refused (401) before anything in it is read.
        """
        service = Service(
            app.store,
            app.vault,
            app.registry,
            ServiceOptions(
                interval=timedelta(minutes=interval),
                connections=connections,
                public_url=public_url,
            ),
        )
        click.echo(
            f"serving {len(service.connection_names())} connection(s) on http://{host}:{port}"
        )
        uvicorn.run(service.app, host=host, port=port, log_level="info", access_log=False)
