"""One error shape for the whole API: {"error": "<sentence>", "details": {...}}."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from optio.lifecycle import TransitionError


class ApiError(exceptions.APIException):
    """Raise from a view for a specific status with a sentence and optional details."""

    def __init__(self, message: str, status_code: int = 400, details: dict | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.details = details or {}


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            msg = _first_message(value)
            return msg if field in ("non_field_errors", "detail") else f"{field}: {msg}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"error": "The request body is too large.", "details": {}}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
    if isinstance(exc, TransitionError):
        return Response(
            {"error": str(exc), "details": {"from": exc.from_state, "to": exc.to, "allowed": exc.allowed}},
            status=status.HTTP_409_CONFLICT,
        )
    response = drf_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        response.data = {"error": str(exc.detail), "details": exc.details}
    elif isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"error": _sentence("Invalid input. " + _first_message(details)), "details": details}
    elif isinstance(exc, exceptions.ParseError):
        response.data = {"error": _sentence(f"The request body could not be parsed: {exc.detail}"), "details": {}}
    elif isinstance(exc, exceptions.NotAuthenticated):
        response.data = {
            "error": "This endpoint needs an API token: send 'Authorization: Bearer <token>'.",
            "details": {},
        }
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        response.data = {"error": _sentence(str(detail)), "details": {}}
    return response


def json_error(message: str, status_code: int, details: dict | None = None) -> JsonResponse:
    return JsonResponse({"error": message, "details": details or {}}, status=status_code)


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "A sentence a person can act on."},
        "details": {"type": "object", "additionalProperties": True},
    },
    "required": ["error", "details"],
}


def document_error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: every operation may answer 4XX with the error shape."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components.setdefault("responses", {})["Error"] = {
        "description": 'Bad input, missing token, not found, conflict or too large: {"error", "details"}.',
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            # Specific 4xx codes an operation documents win; 4XX covers the rest (401, 404, 413 ...).
            responses.setdefault("4XX", {"$ref": "#/components/responses/Error"})
    return result
