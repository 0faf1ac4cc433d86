"""The apisync Airflow plugin: mounts the webhook receiver on the api-server at /apisync.

Providers post to `<api-server>/apisync/webhooks/<api>`. This is the only module the plugin manager
executes (plugins/.airflowignore hides the rest of the package from it).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from apisync_airflow.webhook_app import create_webhook_app

URL_PREFIX = "/apisync"


class ApisyncPlugin(AirflowPlugin):
    """Webhook receiver (FastAPI) on the api-server."""

    name = "apisync"
    fastapi_apps = [{"app": create_webhook_app(), "url_prefix": URL_PREFIX, "name": "apisync webhooks"}]
