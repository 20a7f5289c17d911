# The Veritas services (command handler, relay, projector, API) for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY veritas veritas
COPY commands commands
COPY events events
COPY domain domain
COPY projections projections
COPY sagas sagas
COPY workers workers
COPY api api
COPY schemas schemas
RUN pip install --no-cache-dir .
ENV VERITAS_KAFKA_EMBEDDED=false VERITAS_API_HOST=0.0.0.0 PYTHONUNBUFFERED=1
CMD ["veritas", "--help"]
