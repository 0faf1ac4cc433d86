"""apisync's Airflow layer: hooks, thin operators over include/apisync, the DAG factory and the plugin.

Import nothing here: the plugin manager and the DAG processor import submodules on their own.
"""
