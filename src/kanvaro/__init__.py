"""Kanvaro: a self-hosted, multi-tenant project-management backend."""

__version__ = "0.1.0"
