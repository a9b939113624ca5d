"""Unmanaged models on Kanvaro's ``tasks`` and ``task_assignees`` (Django never alters them)."""

from __future__ import annotations

from typing import Any

from django.db import models


class Task(models.Model):
    id = models.UUIDField(primary_key=True)
    tenant_id = models.UUIDField()
    project_id = models.UUIDField()
    title = models.CharField(max_length=200)
    description = models.TextField()
    priority = models.CharField(max_length=10)
    status = models.CharField(max_length=20)
    due_date = models.DateField(null=True)
    version = models.IntegerField()
    created_by = models.UUIDField(null=True)
    updated_by = models.UUIDField(null=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "tasks"


class TaskAssignee(models.Model):
    id = models.UUIDField(primary_key=True)
    tenant_id = models.UUIDField()
    task_id = models.UUIDField()
    user_id = models.UUIDField()

    class Meta:
        managed = False
        db_table = "task_assignees"


class KanvaroTablesRouter:
    """This app's models live in Kanvaro's database; auth and the rest in ``default``."""

    app_label = "drf"

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        return "kanvaro" if model._meta.app_label == self.app_label else None

    db_for_write = db_for_read

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == "default" and app_label != self.app_label
