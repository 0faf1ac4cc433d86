"""github: backfill, incremental, normalize and reconcile DAGs, generated from the catalog (see apisync_airflow.factory)."""

from apisync_airflow.factory import api_dags

globals().update(api_dags("github"))
