from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from .exposition import CONTENT_TYPE, metrics_authorized, metrics_text


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_authorized(request.headers.get("Authorization", "")):
        return HttpResponse("unauthorized\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": "Bearer"})
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE)
