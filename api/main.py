"""ASGI entry point: `uvicorn api.main:app`."""

from api.app import create_app
from infra import logs
from veritas.bootstrap import bootstrap

_container = bootstrap()
logs.configure("api", _container.settings.log_level)
app = create_app(_container)
