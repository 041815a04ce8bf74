"""Epicor Kinetic source plugin for ml-connector.

This module holds only the entry-point metadata, so the core can check the plugin's contract range
without importing its code. The hook implementations live in :mod:`ml_connector_epicor.plugin`.
"""

__all__ = ["PLUGIN_INFO"]

PLUGIN_INFO = {
    "system": "epicor",
    "display_name": "Epicor Kinetic",
    "role": "source",
    "contract": ">=1.0,<2",
}
"""Entry-point metadata (``ml_connector.plugin_info``)."""
