"""Celery workers and the MODNet runtime; imports torch, never Flask."""
