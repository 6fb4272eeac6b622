"""The Celery side: `celery -A worker.celery_app worker` runs registered tasks through the shared runner."""
