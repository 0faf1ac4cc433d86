"""Every registered API's backfill, incremental, normalize, reconcile and audit DAGs (apisync_airflow.factory).

The APIs come from the registry (`apisync.registry`, filled by `apisync.apis`): registering one adds its DAGs
here, no file to write.
"""

from apisync.registry import APIS
from apisync_airflow.factory import api_dags

for _api in APIS:
    globals().update(api_dags(_api))
