"""What RabbitMQ's consumer_timeout does to a Celery worker with late acks: `python -m tests.rabbitmq_consumer_timeout`.

Runs the real service (a private Redis for the store, the API with EXECUTOR=celery, one worker) on a vhost of
its own, with the node's consumer_timeout lowered to 5 s and its channel tick to 1 s for as long as the worker
opens its channel and the timeout fires (a channel reads consumer_timeout when it opens, and checks it on each
tick, once a minute by default); both are put back as they were. Prints the worker's log, RabbitMQ's log lines
about the channel, the queue's counts over time and the task's record. Not part of the test suite: it changes
a setting of the whole RabbitMQ node for ~10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

from tests.live import get, submit, wait_finished
from tests.processes import start_api, start_redis, start_worker, wait_until
from tests.topologies import rabbit_env, rabbit_settings, rabbitmq_vhost, rabbitmqctl

RABBIT_LOG = Path("/var/log/rabbitmq/rabbit@localhost.log")


def queue_counts(vhost: str) -> str:
    return rabbitmqctl("list_queues", "-p", vhost, "name", "messages_ready", "messages_unacknowledged", "consumers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20, help="how long the task runs")
    parser.add_argument("--timeout-ms", type=int, default=5000, help="the consumer_timeout to try")
    parser.add_argument("--retry", action="store_true", help="with Celery's broker_channel_error_retry on")
    args = parser.parse_args()
    print("consumer_timeout before:", rabbit_env("consumer_timeout"), "tick:", rabbit_env("channel_tick_interval"))
    log_start = RABBIT_LOG.stat().st_size if RABBIT_LOG.exists() else 0
    redis = start_redis()
    with contextlib.ExitStack() as stack, rabbitmq_vhost("bgt-timeout") as broker:
        stack.callback(redis.stop)
        vhost = broker.rsplit("/", 1)[1]
        env = {"REDIS_URL": str(redis.extra["url"]), "CELERY_BROKER_URL": broker, "PROGRESS_INTERVAL": "0.5"}
        api = start_api({**env, "EXECUTOR": "celery"})
        stack.callback(api.stop)
        with rabbit_settings(consumer_timeout=args.timeout_ms, channel_tick_interval=1000):
            worker = start_worker(env, concurrency=1, app="tests.celery_channel_retry_app" if args.retry else None)
            stack.callback(worker.stop)
            started = time.monotonic()
            task_id = submit(str(api.extra["url"]), "sleep", {"seconds": args.seconds})["id"]
            wait_until(lambda: "PRECONDITION_FAILED" in worker.log() or "timed out" in worker.log(), timeout=90,
                       what="the consumer timeout to fire")  # fmt: skip
            print(f"channel closed {time.monotonic() - started:.1f} s after the task was sent")
            time.sleep(1)
        print("restored:", rabbit_env("consumer_timeout"), rabbit_env("channel_tick_interval"))
        for _ in range(4):
            counts = queue_counts(vhost).replace("\n", " | ")
            print(f"t={time.monotonic() - started:5.1f}s worker alive: {worker.alive()}; queue: {counts}")
            time.sleep(2)
        record = wait_finished(str(api.extra["url"]), task_id, timeout=args.seconds + 60)
        time.sleep(3)  # let the redelivered copy reach the worker and be refused
        print("record:", json.dumps({k: record[k] for k in ("state", "attempts", "worker", "error", "result")}))
        print("queue at the end:", queue_counts(vhost).replace("\n", " | "))
        print("record now:", get(str(api.extra["url"]), task_id)["state"], "; worker exit code:", worker.popen.poll())
        print("----- worker log -----\n" + worker.log())
    if RABBIT_LOG.exists():
        with RABBIT_LOG.open(errors="replace") as log:
            log.seek(log_start)
            lines = [line for line in log if "timed out" in line or "PRECONDITION" in line or "bgt-timeout" in line]
        print("----- RabbitMQ log -----\n" + "".join(lines[-20:]))


if __name__ == "__main__":
    main()
