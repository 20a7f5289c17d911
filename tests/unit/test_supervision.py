"""The supervisor's configuration: every service restarts by itself, with backoff, in the order
that lets dependencies come first and go last."""

from __future__ import annotations

import configparser
from pathlib import Path

from config.settings import Settings
from infra import supervisor
from veritas import services


def _parsed(s: Settings) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read_string(supervisor.config_text(s, services.programs(s)))
    return cfg


def test_every_service_and_the_embedded_infrastructure_is_supervised(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path, command_handlers=2)
    cfg = _parsed(s)
    programs = {k.removeprefix("program:") for k in cfg.sections() if k.startswith("program:")}
    assert programs == {
        "kafka",
        "postgres",
        "command-handler",
        "command-handler-1",
        "relay",
        "projector",
        "training-orchestrator",
        "training-steps",
        "drift-monitor",
        "retraining-orchestrator",
        "api",
        "deployment-orchestrator",
        "serving-controller",
    }
    for name in programs:
        p = cfg[f"program:{name}"]
        assert p["autorestart"] == "true"  # a crash is restarted at once
        assert int(p["startretries"]) >= 10  # a failing start is retried with backoff
        assert p["stopasgroup"] == p["killasgroup"] == "true"
        assert p["autostart"] == "false"  # `veritas up` starts them, in order
    prio = {n: int(cfg[f"program:{n}"]["priority"]) for n in programs}
    assert prio["kafka"] < prio["relay"] < prio["api"] and prio["postgres"] < prio["projector"]
    assert cfg["program:postgres"]["stopsignal"] == "INT"  # fast shutdown
    assert cfg["program:kafka"]["command"].endswith("kafka.sh run")  # foreground, exec'd
    assert cfg["unix_http_server"]["file"] == str(supervisor.socket_path(s))


def test_external_kafka_and_postgres_are_not_supervised(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path, kafka_embedded=False, database_url="postgresql://x@h/db")
    names = [p.name for p in services.programs(s)]
    assert "kafka" not in names and "postgres" not in names and "relay" in names


def test_a_long_socket_path_falls_back_to_a_short_one(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    path = supervisor.socket_path(Settings(var_dir=deep))
    assert len(str(path)) < 100 and path.name.startswith("veritas-")
    assert supervisor.socket_path(Settings(var_dir=deep)) == path  # stable


def test_no_supervisor_means_no_process_information(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path)
    assert supervisor.running(s) is False
    assert supervisor.all_info(s) == {}
    assert supervisor.info(s, "relay").state == "UNKNOWN"
