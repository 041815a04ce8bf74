"""ml-connector plugin for Acumatica (source): released AP bills out, BILL payments back.

Only the entry-point metadata lives here, so the core can check compatibility without importing
the plugin's code; the hooks are in :mod:`ml_connector_acumatica.plugin`.
"""

__all__ = ["PLUGIN_INFO"]

PLUGIN_INFO = {
    "system": "acumatica",
    "display_name": "Acumatica",
    "role": "source",
    "contract": ">=1.0,<2",
}
"""Entry-point metadata (``ml_connector.plugin_info``)."""
