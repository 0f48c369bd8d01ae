"""config.toml: every error names the file, the table and the key; good files load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aioworker.config import (
    Config,
    ConfigError,
    GroupSettings,
    HttpSettings,
    MetricsSettings,
    ServerSettings,
    load,
    parse_listen,
    validate,
)

ROOT = Path(__file__).resolve().parents[2]

WEB = """
[groups.web]
app = "examples.app:app"
listen = "http://127.0.0.1:8000"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "groups: no groups defined", id="no-groups"),
        pytest.param("[groups.web\n", "invalid TOML", id="bad-toml"),
        pytest.param(
            WEB + "cout = 2\n",
            "groups.web.cout: unknown key; did you mean count?",
            id="misspelt-group-key",
        ),
        pytest.param(
            "[server]\npidfile = 'x'\n" + WEB,
            "server.pidfile: unknown key; did you mean pid_file?",
            id="misspelt-server-key",
        ),
        pytest.param(
            "[sever]\n" + WEB, "sever: unknown key; did you mean server?", id="misspelt-table"
        ),
        pytest.param(
            WEB + "count = 'two'\n",
            "groups.web.count: expected an integer, got 'two'",
            id="count-not-int",
        ),
        pytest.param(
            WEB + "count = true\n",
            "groups.web.count: expected an integer, got True",
            id="count-bool",
        ),
        pytest.param(
            WEB + "count = -1\n",
            "groups.web.count: must be 0 (one per CPU) or more",
            id="count-negative",
        ),
        pytest.param(
            WEB + "reuse_port = 1\n",
            "groups.web.reuse_port: expected true or false",
            id="reuse-port-not-bool",
        ),
        pytest.param(
            WEB.replace("8000", "70000"),
            "groups.web.listen: 'http://127.0.0.1:70000': port 70000 is out of range",
            id="port-out-of-range",
        ),
        pytest.param(
            WEB.replace("http://127.0.0.1:8000", "127.0.0.1:8000"),
            "groups.web.listen: '127.0.0.1:8000' is neither http://HOST:PORT, "
            "https://HOST:PORT nor unix:PATH",
            id="listen-without-scheme",
        ),
        pytest.param(
            WEB.replace("http://127.0.0.1:8000", "http://127.0.0.1"),
            "groups.web.listen: 'http://127.0.0.1' has no port",
            id="listen-no-port",
        ),
        pytest.param(
            WEB + WEB.replace("web", "task"),
            "groups.task.listen: http://127.0.0.1:8000 is also used by groups.web",
            id="two-groups-one-port",
        ),
        pytest.param(
            WEB.replace('app = "examples.app:app"', 'app = "examples.app"'),
            "groups.web.app: 'examples.app' must be 'pkg.module:attribute'",
            id="app-without-attribute",
        ),
        pytest.param(
            "[groups.web]\nlisten = 'http://127.0.0.1:8000'\n",
            "groups.web.app: required when listen is set",
            id="listen-without-app",
        ),
        pytest.param(
            "[groups.web]\ncount = 1\n",
            "groups.web: needs listen and app",
            id="neither-listen-nor-main",
        ),
        pytest.param(
            WEB + "main = 'jobs:run'\n",
            "groups.web.main: a group has either listen (with app) or main",
            id="listen-and-main",
        ),
        pytest.param(
            WEB + "timeout = -1\n",
            "groups.web.timeout: must be 0 (off) or more",
            id="negative-timeout",
        ),
        pytest.param(
            WEB + "start_timeout = 0\n",
            "groups.web.start_timeout: must be more than 0 seconds",
            id="zero-start-timeout",
        ),
        pytest.param(
            WEB + "max_requests = -5\n",
            "groups.web.max_requests: must be 0 (off) or more",
            id="negative-max-requests",
        ),
        pytest.param(
            WEB + "routes = ['task']\n",
            "groups.web.routes: 'task' must start with '/'",
            id="route-without-slash",
        ),
        pytest.param(
            WEB + "routes = [1]\n",
            "groups.web.routes: expected a list of strings",
            id="route-not-string",
        ),
        pytest.param(
            WEB + "env = 'A=1'\n",
            'groups.web.env: expected a table of NAME = "value"',
            id="env-not-table",
        ),
        pytest.param(
            WEB + "[groups.web.env]\nA = [1]\n",
            "groups.web.env.A: expected a string",
            id="env-value-list",
        ),
        pytest.param(
            WEB + "hosts = ['app1']\n",
            "groups.web.hosts: 'app1' is not HOST:PORT",
            id="host-without-port",
        ),
        pytest.param(
            "[server]\nlog_level = 'loud'\n" + WEB,
            "server.log_level: 'loud' is not a log level; use one of debug, info, warning, "
            "error, critical",
            id="bad-log-level",
        ),
        pytest.param(
            WEB + "max_requests_jitter = -1\n",
            "groups.web.max_requests_jitter: must not be negative",
            id="negative-jitter",
        ),
        pytest.param(
            "[server]\nbody_timeout = -0.5\n" + WEB,
            "server.body_timeout: must not be negative",
            id="negative-body-timeout",
        ),
        pytest.param(
            "[server]\nkeepalive_timeout = 0\n" + WEB,
            "server.keepalive_timeout: must be more than 0 seconds",
            id="zero-keepalive",
        ),
        pytest.param(
            WEB + "max_headers = 0\n",
            "groups.web.max_headers: must be at least 1",
            id="zero-max-headers",
        ),
        pytest.param(
            WEB + "header_timeout = 'soon'\n",
            "groups.web.header_timeout: expected a number of seconds",
            id="timeout-text",
        ),
        pytest.param(
            WEB + "forwarded_allow_ips = ['10.0.0.300']\n",
            "groups.web.forwarded_allow_ips: '10.0.0.300' is not an address or CIDR",
            id="bad-trusted-proxy",
        ),
        pytest.param(
            WEB + "access_log_format = '%(client)s %(agent)s'\n",
            "groups.web.access_log_format: unknown field 'agent'; fields: client,",
            id="access-format-unknown-field",
        ),
        pytest.param(
            "[server]\naccess_log_format = '{status} {bytes}'\n" + WEB,
            "server.access_log_format: unknown field 'bytes'",
            id="access-format-unknown-brace-field",
        ),
        pytest.param(
            WEB + "access_log_format = 'fancy'\n",
            "groups.web.access_log_format: 'fancy' is neither default, common, combined nor",
            id="access-format-unknown-name",
        ),
        pytest.param(
            WEB + "access_log_format = '%(status)d'\n",
            "groups.web.access_log_format: '%(status)d' does not format",
            id="access-format-number-spec",
        ),
        pytest.param(
            WEB + "access_log_format = '{} {status}'\n",
            "groups.web.access_log_format: '{} {status}': every {} needs a field name",
            id="access-format-positional",
        ),
        pytest.param(
            "[metrics]\nlisten = 'localhost:9100'\n" + WEB,
            "metrics.listen: 'localhost:9100' is neither",
            id="bad-metrics-listen",
        ),
        pytest.param(
            "[metrics]\nlisten = 'http://127.0.0.1:8000'\n" + WEB,
            "metrics.listen: http://127.0.0.1:8000 is also used by groups.web",
            id="metrics-on-a-group-port",
        ),
        pytest.param("groups = 3\n", "groups: must be a table", id="groups-not-table"),
        pytest.param(
            "[groups]\nweb = 3\n",
            "groups.web: must be a table, as in [groups.web]",
            id="group-not-table",
        ),
    ],
)
def test_config_errors_name_file_table_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load(tmp_path / "nope.toml")


def test_shipped_config_loads_with_a_web_and_a_task_group() -> None:
    config = load(ROOT / "config.toml")
    assert [g.name for g in config.groups] == ["web", "task"]
    web, task = config.groups
    assert config.default_group is web
    assert task.routes == ("/task",)
    assert task.http.request_timeout == 300.0
    assert web.http.request_timeout == config.server.http.request_timeout


def test_shipped_config_documents_every_key_with_its_default() -> None:
    text = (ROOT / "config.toml").read_text()
    fields = [
        *dataclasses.fields(HttpSettings),
        *dataclasses.fields(GroupSettings),
        *dataclasses.fields(ServerSettings),
        *dataclasses.fields(MetricsSettings),
    ]
    for f in fields:
        if f.name in ("name", "http"):
            continue
        documented = f"{f.name} =" in text or f".{f.name}]" in text
        assert documented, f"config.toml does not mention {f.name}"
    config = load(ROOT / "config.toml")
    # [server] shows every key at its default value.
    assert config.server == ServerSettings()
    assert config.metrics == MetricsSettings()
    # In the groups, every line that sets another value gives the default in its comment.
    default = GroupSettings()
    for group in config.groups:
        table = text.split(f"[groups.{group.name}]\n")[1].split("\n\n")[0]
        lines = {line.split(" = ")[0]: line for line in table.splitlines() if " = " in line}
        for f in [*dataclasses.fields(GroupSettings), *dataclasses.fields(HttpSettings)]:
            if f.name in ("name", "http"):
                continue
            owner = group.http if f in dataclasses.fields(HttpSettings) else group
            base = default.http if owner is group.http else default
            if getattr(owner, f.name) != getattr(base, f.name):
                assert "(default " in lines[f.name], lines[f.name]


def test_server_limits_are_inherited_and_overridable_per_group(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[server]\nmax_body_bytes = 10\n" + WEB + "\n[groups.task]\n"
        "app = 'examples.app:app'\nlisten = 'unix:/tmp/x.sock'\nmax_body_bytes = 20\n",
    )
    config = load(path)
    assert config.group("web").http.max_body_bytes == 10
    assert config.group("task").http.max_body_bytes == 20
    assert config.group("task").address == parse_listen("unix:/tmp/x.sock")
    assert config.pid_path == tmp_path / "aioworker.pid"


def test_port_zero_may_repeat_and_env_values_become_strings(tmp_path: Path) -> None:
    two = WEB.replace("8000", "0") + WEB.replace("web", "task").replace("8000", "0")
    config = load(write(tmp_path, two + "[groups.task.env]\nDEBUG = true\nN = 3\n"))
    assert config.group("task").env == (("DEBUG", "true"), ("N", "3"))


def test_single_builds_one_validated_group() -> None:
    config = Config.single("examples.app:app", "http://127.0.0.1:0", 3)
    assert config.groups[0].workers == 3
    with pytest.raises(ConfigError, match=r"groups\.web\.listen"):
        Config.single("examples.app:app", "nowhere")


def test_readme_embedding_example_config_is_valid() -> None:
    http = HttpSettings(graceful_timeout=10.0)
    config = Config(
        server=ServerSettings(pid_file="/run/myproject.pid", http=http),
        groups=(
            GroupSettings(name="web", app="m.asgi:app", listen="http://0.0.0.0:8000", http=http),
            GroupSettings(
                name="task",
                app="m.asgi:app",
                listen="http://0.0.0.0:8001",
                routes=("/task",),
                count=2,
                http=http,
            ),
        ),
    )
    validate(config)
    assert config.default_group is config.groups[0]
    with pytest.raises(ConfigError, match=r"<config>: groups: no groups defined"):
        validate(Config())


def test_public_api_of_the_package() -> None:
    import aioworker
    import aioworker.cli.commands  # imports the master's modules: must not shadow aioworker.run
    import aioworker.http.server
    import aioworker.supervisor.runner

    assert aioworker.__version__ == "0.1.0"
    assert aioworker.load_config is load
    assert aioworker.Config is Config
    assert aioworker.ConfigError is ConfigError
    assert aioworker.run is aioworker.launch.run
    assert aioworker.Server is aioworker.http.server.Server
    assert aioworker.serve is aioworker.http.server.serve
    assert aioworker.start_server is aioworker.http.server.start_server
    assert aioworker.run_app is aioworker.http.server.run
    for name in aioworker.__all__:
        assert getattr(aioworker, name) is not None
