"""Code both the API and the Celery worker import: task interface, registry, status store, settings."""
