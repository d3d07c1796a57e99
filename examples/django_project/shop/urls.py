"""URLs of the example project."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("report/<str:region>/", views.report, name="report"),
    path("async-report/<str:region>/", views.async_report, name="async-report"),
    path("visits/", views.visits, name="visits"),
    path("page/", views.page, name="page"),
    path("prices/<str:category>/", views.prices, name="prices"),
]
