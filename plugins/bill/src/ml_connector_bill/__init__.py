"""ml-connector plugin for BILL (sink): vendors and approved bills in, payments back.

Only the entry-point metadata lives here, so the core can check compatibility without importing
the plugin's code; the hooks are in :mod:`ml_connector_bill.plugin`, the HTTP client in
:mod:`ml_connector_bill.client`, the wire format in :mod:`ml_connector_bill.schemas` and the
emulator in :mod:`ml_connector_bill.emulator`.
"""

__all__ = ["PLUGIN_INFO"]

PLUGIN_INFO = {"system": "bill", "display_name": "BILL", "role": "sink", "contract": ">=1.0,<2"}
"""Entry-point metadata (``ml_connector.plugin_info``)."""
