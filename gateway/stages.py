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
    from .applayer.stage import AppLayerStage

    stages.append(AppLayerStage(config))
    if signatures is not None and signatures.rule_files:
        from .ids.rules import RuleFileError
        from .ids.stage import build_ids_stage
        from .signatures import SignatureError

        try:
            stages.append(build_ids_stage(config, signatures.rule_files, ips=ips))
        except RuleFileError as e:
            raise SignatureError(str(e)) from None
    return stages
