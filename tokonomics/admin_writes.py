"""A ModelAdmin whose saves and deletes call the app's audited services, with the staff user as actor.

The operator admin would otherwise write rows directly and leave no trace in the account's audit log. Each
admin built on `ServiceWritesAdmin` says, in `service_create` / `service_update` / `service_delete`, which
service a form maps to; a service's refusal (ValidationError, PermissionDenied) shows on the form again,
as the web app shows it, instead of a server error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from tokonomics.audit import Actor
from tokonomics.validation import form_errors_from

REFUSAL_ATTRIBUTE = "_tokonomics_service_refusal"
_ABSENT = object()
_M = TypeVar("_M", bound=models.Model)


class ServiceRefusal(Exception):
    """A service refused the admin's write: carried out of save_model, past the view's transaction, which
    rolls back."""

    def __init__(self, error: ValidationError | PermissionDenied) -> None:
        super().__init__(str(error))
        self.error = error if isinstance(error, ValidationError) else ValidationError(str(error))


def _form_values(form: forms.ModelForm) -> dict[str, Any]:
    """The cleaned data, with an emptied list field (allowed models, thresholds, emails) as the empty list the
    services take, not the None a blank JSON field cleans to."""
    data = dict(form.cleaned_data)
    model_meta = form._meta.model._meta
    for name, field in form.fields.items():
        if isinstance(field, forms.JSONField) and data.get(name, _ABSENT) is None and (
                model_meta.get_field(name).default is list):
            data[name] = []
    return data


def admin_actor(request: HttpRequest) -> Actor:
    user = request.user
    assert isinstance(user, User), "the admin site lets signed-in staff in only"
    return Actor.of_user(user)


class ServiceWritesAdmin(admin.ModelAdmin, Generic[_M]):
    """Subclasses implement the three service hooks; `create_only_fields` (the account, and what names the
    object in its account) are read-only on a change page, since no service moves an object."""

    create_only_fields: Sequence[str] = ("account",)

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> _M:
        """Create through the service from the form's cleaned data; return the new row."""
        raise NotImplementedError

    def service_update(self, request: HttpRequest, stored: _M, changes: dict[str, Any]) -> None:
        """Change `stored` (the row as in the database) through the service; `changes` holds only the form's
        changed fields, never empty."""
        raise NotImplementedError

    def service_delete(self, request: HttpRequest, obj: _M) -> None:
        raise NotImplementedError

    def get_readonly_fields(self, request: HttpRequest, obj: _M | None = None) -> list[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            readonly += [name for name in self.create_only_fields if name not in readonly]
        return readonly

    def get_form(self, request: HttpRequest, obj: _M | None = None, change: bool = False,
                 **kwargs: Any) -> type[forms.ModelForm]:
        form: type[forms.ModelForm] = super().get_form(request, obj, change, **kwargs)
        found: ValidationError | None = getattr(request, REFUSAL_ATTRIBUTE, None)
        if found is None:
            return form
        refusal = found

        class RefusedForm(form):  # type: ignore[valid-type,misc]
            def clean(self) -> dict[str, Any]:
                data: dict[str, Any] = super().clean()
                form_errors_from(self, refusal)
                return data

        return RefusedForm

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefusal as refusal:
            # Nothing was written (the view's transaction rolled back): the same POST again, now with the
            # service's reason on the form.
            setattr(request, REFUSAL_ATTRIBUTE, refusal.error)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: _M, form: forms.ModelForm, change: bool) -> None:
        data = _form_values(form)
        try:
            if change:
                # `obj` already carries the form's values; the service needs the row as stored, for `before`.
                stored = type(obj)._default_manager.get(pk=obj.pk)
                # A form may flag a field that kept its value (a JSON list typed again): only real changes go on.
                changes = {name: data[name] for name in form.changed_data
                           if name in data and getattr(stored, name, _ABSENT) != data[name]}
                if changes:
                    self.service_update(request, stored, changes)
            else:
                obj.pk = self.service_create(request, data).pk
        except (ValidationError, PermissionDenied) as error:
            raise ServiceRefusal(error) from error
        # The admin's own log, redirect and messages use `obj`: make it the row the service wrote.
        obj.refresh_from_db()
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        # Many-to-many fields (channels) went through the service with the rest; form.save_m2m() is skipped.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: _M) -> None:
        try:
            self.service_delete(request, obj)
        except (ValidationError, PermissionDenied) as error:
            raise ServiceRefusal(error) from error

    def delete_view(self, request: HttpRequest, object_id: str,
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceRefusal as refusal:
            self.message_user(request, " ".join(refusal.error.messages), level=messages.ERROR)
            meta = self.opts
            return HttpResponseRedirect(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[object_id]))

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[_M]) -> None:
        # One service call per row, so each deletion is audited in its own account.
        for obj in queryset:
            try:
                self.service_delete(request, obj)
            except (ValidationError, PermissionDenied) as error:
                self.message_user(request, f"{obj}: {' '.join(ServiceRefusal(error).error.messages)}",
                                  level=messages.ERROR)
