"""[queue] and queue-fed groups in config.toml: the rules the settings metadata cannot say."""

from __future__ import annotations

from pathlib import Path

import pytest

from aioworker.config import ConfigError, load

WEB = """
[groups.web]
app = "examples.app:app"
listen = "http://127.0.0.1:8000"
"""
QUEUE = '\n[queue]\nurl = "redis://127.0.0.1:6379/0"\n'


def report(**keys: str) -> str:
    values = {"app": '"examples.app:app"', "queue": "true", "routes": '["/report"]', **keys}
    return "\n[groups.report]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            WEB + report(),
            "groups.report.queue: needs [queue] url",
            id="queue-without-url",
        ),
        pytest.param(
            WEB + QUEUE + report(listen='"http://127.0.0.1:9000"'),
            "groups.report.listen: a queue-fed group has no listen or main",
            id="queue-with-listen",
        ),
        pytest.param(
            WEB + QUEUE + report(app='""', main='"examples.app:main"'),
            "groups.report.main: a queue-fed group has no listen or main",
            id="queue-with-main",
        ),
        pytest.param(
            WEB + QUEUE + report(app='""'),
            "groups.report.app: required for a queue-fed group",
            id="queue-without-app",
        ),
        pytest.param(
            WEB + QUEUE + report(routes="[]"),
            "groups.report.routes: a queue-fed group needs routes other than '/'",
            id="queue-without-routes",
        ),
        pytest.param(
            WEB + QUEUE + report(routes='["/"]'),
            "groups.report.routes: a queue-fed group needs routes other than '/'",
            id="queue-on-every-path",
        ),
        pytest.param(
            WEB + QUEUE + report(reply_timeout="0"),
            "groups.report.reply_timeout: must be more than 0 seconds",
            id="reply-timeout-zero",
        ),
        pytest.param(
            WEB + QUEUE + report(queue_max="0"),
            "groups.report.queue_max: must be at least 1",
            id="queue-max-zero",
        ),
        pytest.param(
            WEB + QUEUE + report(max_attempts="0"),
            "groups.report.max_attempts: must be at least 1",
            id="max-attempts-zero",
        ),
        pytest.param(
            WEB + "request_timeout = 20.0\n" + QUEUE + report(reply_timeout="20"),
            "groups.report.reply_timeout: must be less than groups.web.request_timeout (20s)",
            id="reply-timeout-past-request-timeout",
        ),
        pytest.param(
            WEB + QUEUE + report(queue="1"),
            "groups.report.queue: expected true or false, got 1",
            id="queue-not-bool",
        ),
        pytest.param(
            WEB + '\n[queue]\nurl = "http://127.0.0.1:6379"\n' + report(),
            "queue.url: 'http://127.0.0.1:6379' is not redis://HOST:PORT/DB",
            id="url-not-redis",
        ),
        pytest.param(
            WEB + QUEUE + "urll = 'x'\n" + report(),
            "queue.urll: unknown key; did you mean url?",
            id="misspelt-queue-key",
        ),
    ],
)
def test_bad_queue_configs_name_file_table_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path.resolve()}: {message}"), str(caught.value)


def test_a_queue_fed_group_loads_without_listen(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(WEB + QUEUE + "consume = false\n" + report(reply_timeout="1.5"))
    config = load(path)
    group = config.group("report")
    assert (group.queue, group.listen, group.reply_timeout) == (True, "", 1.5)
    assert config.queue.url == "redis://127.0.0.1:6379/0"
    assert config.queue.consume is False
    assert config.default_group is not None
    assert config.default_group.name == "web"


def test_the_example_config_loads() -> None:
    config = load(Path(__file__).resolve().parents[2] / "examples" / "queue.toml")
    assert [g.name for g in config.groups if g.queue] == ["report"]
