"""The local stack's process layout: command-handler instances, their names and metrics ports."""

from __future__ import annotations

from veritas import services
from veritas.settings import Settings
from workers.base import handler_name, metrics_port


def test_each_handler_instance_is_a_named_service_with_its_own_port() -> None:
    s = Settings(command_handlers=3, metrics_port_base=9100)
    names = list(services._commands(s))
    handlers = ["command-handler", "command-handler-1", "command-handler-2"]
    assert names == [*handlers, "relay", "projector", "api"]
    assert [services._commands(s)[h][-1] for h in handlers] == ["0", "1", "2"]
    ports = [metrics_port(s, n) for n in [*handlers, "relay", "projector"]]
    assert sorted(ports) == list(range(9100, 9105))  # distinct, next to each other
    assert handler_name(0) == "command-handler" and handler_name(4) == "command-handler-4"


def test_one_handler_is_a_valid_layout() -> None:
    s = Settings(command_handlers=1)
    assert [n for n in services._commands(s) if n.startswith("command-handler")] == [
        "command-handler"
    ]
