from django.urls import path

from billing import views

urlpatterns = [
    path("", views.dashboard_view, name="dashboard"),
    path("breakdown/<str:dimension>.csv", views.breakdown_csv, name="breakdown_csv"),
    path("budgets/", views.budget_list, name="budget_list"),
    path("budgets/new", views.budget_save, name="budget_create"),
    path("budgets/<int:budget_id>", views.budget_save, name="budget_update"),
    path("budgets/<int:budget_id>/delete", views.budget_delete, name="budget_delete"),
]
