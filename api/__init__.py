"""Entrypoint: the FastAPI application, one router per resource, over the read models."""
