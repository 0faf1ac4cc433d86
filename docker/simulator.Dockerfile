# The API simulator as a service, for demos at scale.
FROM python:3.11-slim
COPY docker/simulator-requirements.txt /tmp/simulator-requirements.txt
RUN pip install --no-cache-dir -r /tmp/simulator-requirements.txt
WORKDIR /app
ENV PYTHONPATH=/app/dev
CMD ["python", "-m", "api_simulator", "--host", "0.0.0.0", "--port", "8000"]
