"""The two ways people write "start a job from FastAPI" today, as the benchmark's baselines.

Both are deliberately written the way blog posts and project templates write them, not tuned:
- `blog`: `BackgroundTasks.add_task` and a module-level dict keyed by task id (one process only);
- `template_api` + `template_worker`: POST calls `.delay()` from a `def` endpoint, GET reads `AsyncResult`
  from Celery's Redis result backend.
"""
