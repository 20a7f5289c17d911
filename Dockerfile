# Every Veritas service for docker-compose.yml: the core (command handlers, relay, projector, API),
# the sagas (training, retraining, deployment), the training steps (torch), the drift monitor
# (Evidently) and the serving controller (Ray Serve). One image; each service is one command.
FROM python:3.11-slim
WORKDIR /app
COPY . .
# torch from its CPU index: the default wheel brings CUDA (several GB) that a CPU host never uses.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu '.[ml]'
ENV VERITAS_KAFKA_EMBEDDED=false VERITAS_API_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
CMD ["veritas", "--help"]
