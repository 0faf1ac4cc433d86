# Airflow 3.3 with apisync's pinned requirements baked in (compose mounts the code itself).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
# The airflow-pools one-shot service's script (the pools themselves are declared in apisync_airflow.pools).
COPY docker/ensure_pools.py /opt/airflow/docker/ensure_pools.py
