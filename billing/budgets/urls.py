from django.urls import path

from billing.budgets import views

urlpatterns = [
    path("budgets/", views.budget_list, name="budget_list"),
    path("budgets/how-reservations-work", views.budget_docs, name="budget_docs"),
    path("budgets/new", views.budget_save, name="budget_create"),
    path("budgets/<int:budget_id>", views.budget_save, name="budget_update"),
    path("budgets/<int:budget_id>/delete", views.budget_delete, name="budget_delete"),
]
