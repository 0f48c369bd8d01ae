"""Config text for masters with a queue-fed group (tests.apps.queued behind both groups)."""

from __future__ import annotations

from tests.helpers.master import config_text

APP = "tests.apps.queued:app"


def web_group(**keys: object) -> str:
    """The default group: serves /fast itself and relays the queued routes."""
    lines = [
        "[groups.web]",
        f'app = "{APP}"',
        'listen = "http://127.0.0.1:0"',
        "count = 1",
        # The burst's waiting requests are requests in progress of this group.
        "max_requests_in_progress = 2000",
        *(f"{k} = {v}" for k, v in keys.items()),
    ]
    return "\n".join(lines) + "\n"


def queue_group(**keys: object) -> str:
    """The queue-fed group `report`: /work, /long, /stream, /nap and /crash."""
    values: dict[str, object] = {
        "count": 2,
        "reply_timeout": 30.0,
        "visibility_timeout": 2.0,
        **keys,
    }
    lines = [
        "[groups.report]",
        f'app = "{APP}"',
        "queue = true",
        'routes = ["/work", "/long", "/stream", "/crash", "/nap"]',
        *(f"{k} = {v}" for k, v in values.items()),
    ]
    return "\n".join(lines) + "\n"


def queue_config(url: str, groups: str, consume: bool = True) -> str:
    table = f'[queue]\nurl = "{url}"\nconsume = {"true" if consume else "false"}\n'
    return config_text(table + groups)
