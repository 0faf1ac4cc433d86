# The API simulator as a service, for demos at scale.
FROM python:3.11-slim
RUN pip install --no-cache-dir fastapi==0.136.3 uvicorn==0.54.0 httpx==0.28.1 orjson==3.13.0
WORKDIR /app
ENV PYTHONPATH=/app/include
CMD ["python", "-m", "api_simulator", "--host", "0.0.0.0", "--port", "8000"]
