"""`gateway` console script. Each subcommand imports its module lazily so `gateway --help` stays fast and a
missing optional part (e.g. NFQUEUE bindings on a laptop) only affects the command that needs it."""
from __future__ import annotations

import argparse
import importlib
import sys


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="gateway TOML config (default: config/gateway.toml)")
    p.add_argument("--signatures", metavar="DIR", help="signature set directory (default: signatures/)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gateway", description="Clinic UTM gateway")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run inline: install NFQUEUE rules, one worker per queue")
    _add_common(p)
    p.add_argument("--queues", type=int, help="override gateway.queues")
    p.set_defaults(target="gateway.inline.supervisor:main")

    p = sub.add_parser("replay", help="run pcap files through the same pipeline, write EVE JSON")
    _add_common(p)
    p.add_argument("pcaps", nargs="+", metavar="PCAP")
    p.add_argument("--rules", action="append", metavar="FILE",
                   help="load exactly these Suricata rule files instead of the set's (repeatable)")
    p.add_argument("--ips", action="store_true", help="act on drop/reject rules (simulated IPS)")
    p.add_argument("--eve", metavar="PATH", default="-", help="EVE JSON output (default: stdout)")
    p.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    p.set_defaults(target="gateway.replay:main")

    p = sub.add_parser("lab", help="network-namespace lab: client, gateway, server")
    p.add_argument("--prefix", help="namespace name prefix (default: $GATEWAY_LAB_PREFIX or 'lab')")
    lab = p.add_subparsers(dest="lab_command", required=True)
    q = lab.add_parser("up", help="create the namespaces, veths and routes")
    q.add_argument("--json", action="store_true", help="print namespace names and addresses as JSON")
    lab.add_parser("down", help="remove everything `lab up` created")
    q = lab.add_parser("demo", help="lab up, gateway inline, real traffic, report, lab down")
    _add_common(q)
    p.set_defaults(target="gateway.lab:main")

    p = sub.add_parser("rules", help="Suricata rule tools")
    rules = p.add_subparsers(dest="rules_command", required=True)
    q = rules.add_parser("check", help="load rule files, report loaded/rejected and why")
    q.add_argument("files", nargs="+", metavar="FILE")
    q.add_argument("--json", action="store_true")
    q.add_argument("--config", "-c", metavar="FILE", help="config providing rule variables")
    p.set_defaults(target="gateway.ids.check:main")

    p = sub.add_parser("config", help="validate or show a config")
    cfg = p.add_subparsers(dest="config_command", required=True)
    q = cfg.add_parser("check", help="validate a config file")
    q.add_argument("file", nargs="?")
    q = cfg.add_parser("show", help="print the effective config as JSON")
    q.add_argument("file", nargs="?")
    p.set_defaults(target="gateway.cli:config_main")
    return ap


def config_main(args: argparse.Namespace) -> int:
    import json

    from . import config

    try:
        cfg = config.load(args.file)
    except config.ConfigError as e:
        print(f"gateway: config refused: {e}", file=sys.stderr)
        return 2
    if args.config_command == "show":
        print(json.dumps(config.as_dict(cfg), indent=2))
    else:
        print(f"{cfg.source}: ok ({len(cfg.firewall.zones)} zones, {len(cfg.firewall.rules)} firewall rules)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, _, func = args.target.partition(":")
    try:
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except KeyboardInterrupt:
        return 130
