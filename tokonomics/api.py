"""The REST API under /api/v1/ (CONTRACT §5): one router per app, account-scoped management tokens.

Every answer is JSON, errors included: `{"detail": "…"}`, plus `errors` (by field) for validation errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as ModelValidationError
from django.db import DataError, IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, re_path
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as RequestValidationError
from ninja.security import HttpBearer

from alerts.api import router as alerts_router
from billing.accounts.management_tokens import management_token_get_active, management_token_touch
from billing.api import router as billing_router
from billing.models import ManagementToken
from proxy.api import router as proxy_router

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHORIZED = (
    "A valid management token is required: send Authorization: Bearer mt_…. "
    "Create one with `python manage.py createmanagementtoken --account SLUG --name NAME`."
)
READ_ONLY = "This management token is read-only (viewer). Use an admin token to make changes."


class ManagementTokenAuth(HttpBearer):
    """`Authorization: Bearer mt_…`: the token's account scopes every query; viewer tokens may only read."""

    def authenticate(self, request: HttpRequest, token: str) -> ManagementToken | None:
        found = management_token_get_active(plaintext=token.strip())
        if found is None:
            return None
        if found.read_only and request.method not in SAFE_METHODS:
            raise HttpError(403, READ_ONLY)
        management_token_touch(token=found)
        return found


class TokonomicsAPI(NinjaAPI):
    @property
    def urls(self) -> tuple[list[URLPattern | URLResolver], str, str]:
        """Ninja's routes, their plain-text 405s made JSON, then a JSON 404 for every other path under /api/v1/."""
        patterns, app_name, namespace = super().urls
        wrapped: list[URLPattern | URLResolver] = [
            URLPattern(p.pattern, _json_method_not_allowed(p.callback), p.default_args, p.name)
            if isinstance(p, URLPattern)
            else p
            for p in patterns
        ]
        return [*wrapped, re_path(r"", _unknown_path)], app_name, namespace


api = TokonomicsAPI(
    title="Tokonomics",
    version="1",
    description="Manage the keys, provider endpoints, budgets and alerts of one account, and read its usage. "
    "Authenticate with an account-scoped management token: `Authorization: Bearer mt_…`.",
    urls_namespace="api",
    auth=ManagementTokenAuth(),
)
api.add_router("", proxy_router)
api.add_router("", billing_router)
api.add_router("", alerts_router)


def _json_method_not_allowed(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code != 405 or response.get("Content-Type", "").startswith("application/json"):
            return response
        allowed = response["Allow"]
        answer = api.create_response(request, {"detail": f"Method {request.method} not allowed here; use {allowed}."},
                                     status=405)
        answer["Allow"] = allowed
        return answer

    return wrapper


def _unknown_path(request: HttpRequest) -> HttpResponse:
    return api.create_response(request, {"detail": f"No such endpoint: {request.path}. See /api/v1/docs."}, status=404)


def _field_path(loc: tuple[str | int, ...] | list[str | int]) -> str:
    # ("body", "payload", "limit_usd") → "limit_usd"; ("query", "since") → "since"
    parts = [str(part) for part in loc if part not in ("body", "payload", "query", "path")]
    return ".".join(parts) or "body"


@api.exception_handler(RequestValidationError)
def on_request_validation_error(request: HttpRequest, exc: RequestValidationError) -> HttpResponse:
    errors: list[dict[str, Any]] = [
        {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")).removeprefix("Value error, ")}
        for error in exc.errors
    ]
    detail = "; ".join(f"{_field_path(error['loc'])}: {error['msg']}" for error in errors)
    return api.create_response(request, {"detail": detail, "errors": errors}, status=422)


@api.exception_handler(ModelValidationError)
def on_model_validation_error(request: HttpRequest, exc: ModelValidationError) -> HttpResponse:
    """Raised by services. A clash with an existing object (code `unique`) is a 409, anything else a 422."""
    by_field = exc.error_dict if hasattr(exc, "error_dict") else {"__all__": exc.error_list}
    errors: list[dict[str, Any]] = [
        {"loc": [] if name == "__all__" else [name], "msg": " ".join(error.messages), "code": error.code}
        for name, field_errors in by_field.items()
        for error in field_errors
    ]
    detail = "; ".join(f"{_field_path(error['loc'])}: {error['msg']}" for error in errors)
    status = 409 if any(error["code"] == "unique" for error in errors) else 422
    return api.create_response(
        request, {"detail": detail, "errors": [{"loc": e["loc"], "msg": e["msg"]} for e in errors]}, status=status
    )


@api.exception_handler(AuthenticationError)
def on_authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = api.create_response(request, {"detail": UNAUTHORIZED}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="tokonomics"'
    return response


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    # Objects of other accounts are "not found" too: never say whether an id exists elsewhere.
    return api.create_response(request, {"detail": str(exc) or "Not found."}, status=404)


@api.exception_handler(PermissionDenied)
def on_permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "Not allowed."}, status=403)


@api.exception_handler(IntegrityError)
def on_integrity_error(request: HttpRequest, exc: IntegrityError) -> HttpResponse:
    # Services check uniqueness first; this is the race where another request won in between.
    return api.create_response(
        request, {"detail": "This conflicts with an object created at the same time; retry."}, status=409
    )


@api.exception_handler(DataError)
def on_data_error(request: HttpRequest, exc: DataError) -> HttpResponse:
    log.warning("database rejected a value on %s %s: %s", request.method, request.path, exc)
    return api.create_response(request, {"detail": "A value is out of the range the database accepts."}, status=422)


@api.exception_handler(Exception)
def on_unexpected_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return api.create_response(request, {"detail": "Internal server error. It has been logged."}, status=500)
