"""apisync's Airflow layer: hooks, thin operators over include/apisync, the DAG factory and the plugin.

Import nothing here but the API registrations (every submodule derives from the registered specs): the
plugin manager and the DAG processor import submodules on their own.
"""

import apisync.apis  # noqa: F401 - registers every API
