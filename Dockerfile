# One image for the API (uvicorn) and the Celery worker; docker-compose.yml picks the command.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first, from the runtime lock alone (the versions the tests ran with, every file's hash checked):
# this layer is rebuilt only when the lock changes, not on every code change. scripts/lock refreshes the lock.
COPY requirements/runtime.txt ./requirements.txt
RUN pip install --require-hashes --requirement requirements.txt

COPY api ./api
COPY shared ./shared
COPY worker ./worker

# Never run as root: a task's code runs with these rights.
RUN useradd --system --uid 10001 --create-home --home-dir /home/app --shell /usr/sbin/nologin app
USER 10001:10001

EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
