# Airflow 3.3 with apisync's pinned requirements baked in (compose mounts the code itself).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
