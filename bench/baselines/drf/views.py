"""One read: the task row and its assignee ids, in the JSON shape of Kanvaro's ``TaskOut``."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.generics import RetrieveAPIView

from bench.baselines.drf.models import Task, TaskAssignee


class TaskSerializer(serializers.ModelSerializer):
    projectId = serializers.UUIDField(source="project_id")
    dueDate = serializers.DateField(source="due_date")
    assigneeIds = serializers.SerializerMethodField()
    createdBy = serializers.UUIDField(source="created_by")
    updatedBy = serializers.UUIDField(source="updated_by")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Task
        fields = [
            "id",
            "projectId",
            "title",
            "description",
            "priority",
            "status",
            "dueDate",
            "assigneeIds",
            "createdBy",
            "updatedBy",
            "createdAt",
            "updatedAt",
            "version",
        ]

    def get_assigneeIds(self, task: Task) -> list[Any]:
        return [
            str(u)
            for u in TaskAssignee.objects.filter(task_id=task.id)
            .order_by("user_id")
            .values_list("user_id", flat=True)
        ]


class TaskDetail(RetrieveAPIView):
    queryset = Task.objects.all()
    serializer_class = TaskSerializer
