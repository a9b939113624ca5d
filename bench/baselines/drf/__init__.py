"""Baseline 2: Django REST Framework + SimpleJWT reading Kanvaro's ``tasks`` tables.

Unmanaged models on Kanvaro's database (read as a role row-level security does not bind); the
users SimpleJWT loads live in Django's own ``auth_user`` table, in a database of their own
on the same server. Served by gunicorn with one sync worker (``bench/run`` starts it).
"""
