"""Celery plumbing: the app, the tasks, dispatch, the reconciler, the beat lock, the broker probe, roles."""
