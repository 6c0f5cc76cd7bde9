"""Builds the ordered stage list both drivers hand to the Inspector.

Order (DESIGN.md): firewall -> streams/app-layer -> ids -> web/dns filter -> file scan -> mail filter.
A stage is added here and nowhere else.
"""
from __future__ import annotations

from .config import Config
from .pipeline import Stage
from .signatures import SignatureSet


def build_stages(config: Config, signatures: SignatureSet | None = None, ips: bool = False) -> list[Stage]:
    from .firewall import FirewallStage
    from .stream import StreamStage

    stages: list[Stage] = [FirewallStage(config)]
    stages.append(StreamStage(config.stream))
    return stages
