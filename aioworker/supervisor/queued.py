"""The worker side of queue-fed groups: run the consumer, or wrap the default group's app.

A queue-fed group's worker has no listener: after lifespan startup it runs the group's
`Consumer` (aioworker/queue/consumer.py) until TERM, then lets the jobs in progress finish
within graceful_timeout (an unfinished job stays pending and another worker claims it after
`visibility_timeout`). The default group's workers wrap their app in the `QueueRelay`, which
sends the queue-fed groups' routes through Redis. Both import the queue layer (and with it
hiredis) lazily, here, so a config without queue-fed groups never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from aioworker.config import Config, GroupSettings
from aioworker.supervisor.hooks import WorkerContext, WorkerSpec
from aioworker.supervisor.process import BOOT_ERROR

__all__ = ["close_relay", "relay_app", "run_consumer"]

log = logging.getLogger("aioworker.worker")


def relay_app(config: Config, group: GroupSettings, app: Any) -> Any:
    """`app`, wrapped in the queue relay when `group` takes requests for queue-fed groups: the
    default group for all of them (and their Locations), another listening group for those
    whose routes it lists too (a front group that keeps a burst off the default group's
    workers); else `app` itself."""
    queued = [g for g in config.groups if g.queue]
    default = config.default_group
    if not queued or not group.listen:
        return app
    if default is None or default.name != group.name:
        queued = [g for g in queued if set(g.routes) & set(group.routes)]
        if not queued:
            return app
    from aioworker.queue.relay import queued_app

    return queued_app(app, queued, config.queue)


async def close_relay(app: Any) -> None:
    """Close the relay's Redis client once the default group's worker has drained."""
    relay = sys.modules.get("aioworker.queue.relay")  # loaded only if relay_app wrapped one
    if relay is not None and isinstance(app, relay.QueueRelay):
        await app.close()


async def run_consumer(
    spec: WorkerSpec,
    loop: asyncio.AbstractEventLoop,
    app: Any,
    stop: asyncio.Event,
    notify: Callable[[str], None],
    started: Callable[[WorkerContext], None],
) -> int:
    """A queue-fed worker: lifespan startup, pull and run jobs until `stop`, then drain."""
    from aioworker.http.lifespan import Lifespan
    from aioworker.queue.broker import Broker
    from aioworker.queue.consumer import Consumer

    group = spec.group
    lifespan = Lifespan(app, "auto")
    try:
        await lifespan.startup()
    except Exception as exc:
        log.error("worker %s[%d] failed to start: %s", group.name, spec.slot, exc)
        notify(f"error {exc}")
        return BOOT_ERROR
    broker = Broker(spec.config.queue.url, result_ttl=spec.config.queue.result_ttl)
    consumer = Consumer(app, group, broker)
    # The consumer stands where a server would: the hooks read its `state` counters.
    ctx = WorkerContext(spec, loop, consumer, notify)
    started(ctx)
    notify("ready")
    runners = loop.create_task(consumer.run())
    stopper = loop.create_task(stop.wait())
    await asyncio.wait({runners, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    consumer.stop()
    log.info(
        "draining group=%s slot=%d (%d job(s) running)", group.name, spec.slot, consumer.running
    )
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(runners, group.http.graceful_timeout)
    if runners.done() and not runners.cancelled() and runners.exception() is not None:
        log.error("queue consumer failed", exc_info=runners.exception())
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(lifespan.shutdown(), group.http.graceful_timeout or None)
    await broker.close()
    return 0
