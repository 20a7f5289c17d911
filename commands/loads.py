"""Loading the registry's aggregates in a handler: the model or the version, which must exist."""

from __future__ import annotations

from commands.deps import Deps
from domain.registry import ModelVersion, RegisteredModel, model_id, version_id


def load_model(deps: Deps, name: str) -> RegisteredModel:
    model = deps.uow.get(RegisteredModel, model_id(name))
    model.check_exists(name)
    return model


def load_version(deps: Deps, model_name: str, version: str) -> ModelVersion:
    mv = deps.uow.get(ModelVersion, version_id(model_name, version))
    mv.check_exists(model_name, version)
    return mv
