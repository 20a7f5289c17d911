"""ASGI entry point: `uvicorn api.main:app`."""

from api import training_metrics
from api.app import create_app
from infra import logs
from veritas.bootstrap import bootstrap

_container = bootstrap()
logs.configure("api", _container.settings.log_level)
training_metrics.register(_container)  # the process's registry: once, here
app = create_app(_container)
