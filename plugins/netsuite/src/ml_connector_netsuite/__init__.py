"""The ml-connector source plugin for Oracle NetSuite.

Approved bills go to BILL; BILL payments come back against them.

Only the entry-point metadata lives here, so the core can check compatibility without importing
the plugin's code; the hooks are in :mod:`ml_connector_netsuite.plugin`.
"""

__all__ = ["PLUGIN_INFO"]

PLUGIN_INFO = {
    "system": "netsuite",
    "display_name": "Oracle NetSuite",
    "role": "source",
    "contract": ">=1.2,<2",
}
"""Entry-point metadata (``ml_connector.plugin_info``)."""
