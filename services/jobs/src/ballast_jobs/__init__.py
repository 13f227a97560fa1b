"""Ballast background jobs (Celery workers)."""
