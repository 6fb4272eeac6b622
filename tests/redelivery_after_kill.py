"""When does a message come back after its worker is SIGKILLed before the task ran? Run it as below.

A worker (late acks, one process, prefetch 2) runs a long task and holds the next message, received but not
started; the worker is SIGKILLed; a second worker starts (at once, or `--later` seconds after); we time when
the held message runs there. On Redis kombu keeps the held message in its `unacked` hash and puts it back only
when a consumer's periodic scan finds it older than `visibility_timeout`; on RabbitMQ the broker requeues it
as soon as the dead worker's connection closes.

    python -m tests.redelivery_after_kill redis --visibility 8 --interval 1 --throttle 1
    python -m tests.redelivery_after_kill redis --visibility 8 --later 10      # kombu's default scan periods
    python -m tests.redelivery_after_kill rabbitmq
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from celery import Celery

from tests.processes import Proc, spawn, start_redis, wait_until
from tests.topologies import rabbitmq_vhost


@contextlib.contextmanager
def broker(kind: str) -> Iterator[str]:
    if kind == "rabbitmq":
        with rabbitmq_vhost("bgt-redelivery") as url:
            yield url
        return
    server = start_redis()
    try:
        yield str(server.extra["url"])
    finally:
        server.stop()


def worker(name: str, env: dict[str, str], queues: str) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", "tests.probe_celery_app", "worker", "--concurrency", "1"]
    argv += ["-Q", queues, "--loglevel", "INFO", "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle"]
    proc = spawn(name, argv, env)
    wait_until(lambda: " ready." in proc.log(), timeout=60, what=f"worker {name}")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["redis", "rabbitmq"])
    parser.add_argument("--visibility", type=float, help="kombu's visibility_timeout (Redis only)")
    parser.add_argument("--interval", type=float, help="kombu's unacked_restore_interval (Redis only)")
    parser.add_argument("--throttle", type=int, help="kombu's unacked_restore_throttle (Redis only)")
    parser.add_argument("--later", type=float, default=0, help="start the second worker this long after the kill")
    parser.add_argument("--running", action="store_true", help="start the second worker before the kill")
    parser.add_argument("--wait", type=float, default=150, help="give up after this long")
    args = parser.parse_args()
    options = {"visibility_timeout": args.visibility, "unacked_restore_interval": args.interval}
    options |= {"unacked_restore_throttle": args.throttle}
    marks = Path(tempfile.mkdtemp(prefix="bgt-redelivery-")) / "marks.jsonl"
    with broker(args.kind) as url, contextlib.ExitStack() as started_here:
        env = {"BROKER_URL": url, "MARK_FILE": str(marks)}
        env["TRANSPORT_OPTIONS"] = json.dumps({k: v for k, v in options.items() if v is not None})

        def start(name: str, queues: str) -> Proc:
            proc = worker(name, env, queues)
            started_here.callback(proc.stop)  # whatever fails later, no worker outlives the run
            return proc

        first = start("first", "celery,blocking")  # the second worker does not take the long task
        client = Celery("driver", broker=url)
        client.conf.broker_transport_options = json.loads(env["TRANSPORT_OPTIONS"])
        client.send_task("block", args=[600], queue="blocking")
        wait_until(lambda: "Task block[" in first.log(), timeout=30, what="the first worker to start the long task")
        client.send_task("mark", args=["held"])
        wait_until(lambda: "Task mark[" in first.log(), timeout=30, what="the first worker to receive the mark task")
        received = time.time()
        second = start("second", "celery") if args.running else None  # starts while the message is held
        ready = time.time()
        first.kill_group()
        killed = time.time()
        print(f"{args.kind}: the first worker received the message, SIGKILLed {killed - received:.2f} s later")
        if args.kind == "redis":
            with redis.Redis.from_url(url) as r:
                print("  kombu's unacked hash holds", r.hlen("unacked"), "messages;", "queue length", r.llen("celery"))
        if second is None:
            time.sleep(args.later)
            second = start("second", "celery")
            ready = time.time()
        wait_until(marks.exists, timeout=args.wait, what="the held message to run again", interval=0.2)
        ran = json.loads(marks.read_text().splitlines()[0])
        print(f"  the second worker was ready {ready - killed:.2f} s after the kill (< 0: before it)")
        print(f"  the held message ran {ran['at'] - killed:.2f} s after the kill, {ran['at'] - received:.2f} s")
        print(f"  after its first delivery, {ran['at'] - ready:.1f} s after the second worker was ready: {ran}")


if __name__ == "__main__":
    main()
