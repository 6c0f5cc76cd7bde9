"""IDS/IPS: Suricata-language rules. Public API for the detection engine:

    from gateway.ids import Variables, load_rules, parse_rule, RuleError

    variables = Variables.from_config(config)           # Suricata's default vars + Config.vars
    ruleset = load_rules(paths, variables)               # -> RuleSet(rules: list[Rule], rejected: list[Rejection])
    rule = parse_rule(text, variables, file=..., line=...)  # -> Rule, or raises RuleError(reason)

Modules: rules.py (tokenizer/parser, file loading), model.py (the Rule model: read its docstring first),
keywords.py (keyword table and buffer table), vars.py (address/port variables and matchers),
classification.py (classification.config), check.py (`gateway rules check`).
"""
from .model import Rejection, Rule, RuleError, RuleSet
from .rules import RuleFileError, load_rules, parse_rule
from .vars import AddressGroup, PortGroup, VarError, Variables

__all__ = [
           "AddressGroup",
           "PortGroup",
           "Rejection",
           "Rule",
           "RuleError",
           "RuleFileError",
           "RuleSet",
           "VarError",
           "Variables",
           "load_rules",
           "parse_rule",
]
