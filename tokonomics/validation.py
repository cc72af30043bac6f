"""Validation helpers the services of every app share."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

# An account or provider slug: also the {provider} of a proxy path (proxy/paths.py repeats it as a compiled regex).
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


def ensure_unique(others: models.QuerySet, *, instance: models.Model, field: str, message: str) -> None:
    """Raise a `unique` ValidationError on `field` when `others` (minus `instance` itself) is not empty.

    Checked before saving so the caller gets a message naming the field, not an IntegrityError.
    """
    if instance.pk is not None:
        others = others.exclude(pk=instance.pk)
    if others.exists():
        raise ValidationError({field: ValidationError(message, code="unique")})


def validated_save(instance: models.Model, *, exclude: list[str] | None = None) -> None:
    """Run the model's field and clean() validation, then save. Uniqueness is checked by the caller."""
    instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    instance.save()


def form_errors_from(form: forms.BaseForm, error: ValidationError) -> None:
    """Show a service's ValidationError on the form: on its field when the form has one, else on top."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for field, problems in error.message_dict.items():
        form.add_error(field if field in form.fields else None, problems)


# An account's or endpoint's slug: it appears in URLs and Redis keys (proxy/paths.py matches the same).
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
SLUG_VALIDATOR = RegexValidator(SLUG_PATTERN, "Use lower-case letters, digits and dashes (max 63 characters).")
