"""Checks events against the official ``openai`` package's GA Realtime types."""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, ValidationError


def _models_by_type(union: Any) -> dict[str, type[BaseModel]]:
    """{"session.created": SessionCreatedEvent, …} from the package's (possibly annotated) union."""
    while typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    models: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        for literal in typing.get_args(model.model_fields["type"].annotation):
            models[literal] = model
    return models


@cache
def server_models() -> dict[str, type[BaseModel]]:
    return _models_by_type(RealtimeServerEvent)


@cache
def client_models() -> dict[str, type[BaseModel]]:
    return _models_by_type(RealtimeClientEvent)


def _problem(models: dict[str, type[BaseModel]], event: dict[str, Any]) -> str | None:
    model = models.get(event.get("type"))  # type: ignore[arg-type]
    if model is None:
        return f"unknown event type {event.get('type')!r}"
    try:
        model.model_validate(event)
    except ValidationError as exc:
        return f"{event['type']}: {exc.errors()}"
    return None


def server_event_problem(event: dict[str, Any]) -> str | None:
    """Why ``event`` is not a valid GA server event, or None if it is."""
    return _problem(server_models(), event)


def client_event_problem(event: dict[str, Any]) -> str | None:
    return _problem(client_models(), event)
