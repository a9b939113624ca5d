from django.urls import path

from bench.baselines.drf.views import TaskDetail

urlpatterns = [path("tasks/<uuid:pk>", TaskDetail.as_view())]
