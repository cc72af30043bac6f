"""Pieces every router of the REST API shares: the caller's account, safe input types, error shapes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, cast

from django.db import models
from django.http import HttpRequest
from ninja import Field, Schema
from pydantic import AfterValidator, AwareDatetime, ConfigDict, StringConstraints, field_validator

from tokonomics.audit import Actor

if TYPE_CHECKING:
    from billing.models import Account, ManagementToken

# PostgreSQL text cannot hold NUL; a pattern also makes pydantic reject lone surrogates, which UTF-8 cannot encode.
PLAIN_TEXT = r"^[^\x00]*$"
MAX_BIGINT = 2**63 - 1


def plain_text(*, max_length: int, min_length: int = 0, pattern: str = PLAIN_TEXT) -> StringConstraints:
    """A stripped string the database can store, of bounded length: `Annotated[str, plain_text(...)]`."""
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length, pattern=pattern)


def _within_datetime_range(value: datetime) -> datetime:
    # A time zone offset can carry year 1 or 9999 past what Python's datetime (and so the ORM) can represent.
    if not 1 < value.year < 9999:
        raise ValueError("must be between the years 2 and 9998")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_within_datetime_range)]
ObjectId = Annotated[int, Field(ge=1, le=MAX_BIGINT)]


def decimal_string(value: Decimal) -> str:
    """Fixed-point, whatever the exponent: PostgreSQL's zero with nine places comes back as Decimal("0E-9")."""
    return f"{value:f}"


def field_decimal_string(obj: models.Model, field: str) -> str:
    """A DecimalField's value with the field's places, the same before and after a round trip to the database."""
    decimal_field = obj._meta.get_field(field)
    assert isinstance(decimal_field, models.DecimalField)
    places = decimal_field.decimal_places
    return decimal_string(Decimal(getattr(obj, field)).quantize(Decimal(1).scaleb(-places)))


class InSchema(Schema):
    """A request body: unknown fields are errors, so a misspelt field is never silently ignored."""

    model_config = ConfigDict(extra="forbid")


def not_null(*fields: str) -> Any:
    """For PATCH bodies: these fields may be left out, but not set to null."""

    def check(cls: type, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null; leave the field out to keep its current value")
        return value

    return field_validator(*fields)(check)


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, naming the field for validation errors.")


class FieldErrorOut(Schema):
    loc: list[str | int]
    msg: str


class ValidationErrorOut(ErrorOut):
    errors: list[FieldErrorOut] = []


ERROR_RESPONSES: dict[Any, type[Schema]] = {frozenset({400, 401, 403, 404, 409}): ErrorOut, 422: ValidationErrorOut}


def responses(success: dict[int, Any]) -> dict[Any, Any]:
    """A route's documented responses: its own successes plus the API's JSON error shape."""
    return {**success, **ERROR_RESPONSES}


def caller_token(request: HttpRequest) -> ManagementToken:
    # Set by the API's one authenticator (tokonomics/api.py), which accepts management tokens only.
    return cast("ManagementToken", request.auth)  # type: ignore[attr-defined]


def caller_account(request: HttpRequest) -> Account:
    """The account of the management token that authenticated this request: every query is scoped to it."""
    return caller_token(request).account



def caller_actor(request: HttpRequest) -> Actor:
    """The management token, as the audit log names who made a change through the API."""
    token = caller_token(request)
    return Actor.of_token(token_id=token.pk, name=token.name, prefix=token.prefix)
