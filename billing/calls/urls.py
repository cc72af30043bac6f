from django.urls import path

from billing.calls import views

urlpatterns = [
    path("calls/", views.call_list_view, name="call_list"),
    path("calls/<int:call_id>/", views.call_detail_view, name="call_detail"),
    path("calls/export.<str:kind>", views.call_export_view, name="call_export"),
]
