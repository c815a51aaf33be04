"""Event rules: EventBridge patterns and their targets, from a TOML file and the webhook shortcut."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outcrop.events.patterns import EventPattern, PatternError, compile_pattern
from outcrop.events.targets import EventBridgeTarget, LogTarget, Target, WebhookTarget
from outcrop.netguard import ForbiddenAddress

DEFAULT_WEBHOOK_RULE = "outcrop-webhook"
ALL_OUTCROP_EVENTS = {
    "source": ["aws.bedrock"],
    "detail-type": ["Batch Inference Job State Change"],
}


class RulesError(ValueError):
    """The rules file is unreadable or a rule or target is invalid."""


@dataclass
class Rule:
    name: str
    pattern: EventPattern
    raw_pattern: dict[str, Any]
    targets: list[Target] = field(default_factory=list)
    target_specs: list[dict[str, Any]] = field(default_factory=list)


class RuleSet:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._targets = {t.name: t for rule in rules for t in rule.targets}

    def targets_for(self, event: dict[str, Any]) -> list[str]:
        return [t.name for rule in self.rules if rule.pattern.matches(event) for t in rule.targets]

    def target(self, name: str) -> Target | None:
        return self._targets.get(name)

    async def aclose(self) -> None:
        for target in self._targets.values():
            await target.aclose()


def _target(
    rule: str, index: int, spec: Any, base_dir: Path, allow_private: bool, timeout_s: float
) -> Target:
    where = f"rule {rule!r} target {index}"
    if not isinstance(spec, dict):
        raise RulesError(f"{where}: must be a table")
    kind = spec.get("type")
    name = f"{rule}/{spec.get('name') or index}"
    try:
        if kind == "webhook":
            url = spec.get("url")
            if not isinstance(url, str):
                raise RulesError(f"{where}: webhook needs a url")
            secret = spec.get("secret")
            if secret is not None and (
                not isinstance(secret, str) or not secret.startswith("whsec_")
            ):
                raise RulesError(f"{where}: secret must be a 'whsec_...' string")
            return WebhookTarget(name, url, secret, float(spec.get("timeout_s", 10)), allow_private)
        if kind == "eventbridge":
            return EventBridgeTarget(name, spec)
        if kind == "log":
            path = spec.get("path")
            if not isinstance(path, str):
                raise RulesError(f"{where}: log needs a path")
            return LogTarget(name, (base_dir / path).resolve())
    except ForbiddenAddress as exc:
        raise RulesError(f"{where}: {exc}") from None
    raise RulesError(f"{where}: unknown type {kind!r} (webhook, eventbridge or log)")


def load_rules(
    path: Path | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    allow_private: bool,
    timeout_s: float = 10.0,
) -> RuleSet:
    rules: list[Rule] = []
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RulesError(f"cannot read event rules {path}: {exc}") from None
        for i, raw in enumerate(data.get("rules", [])):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise RulesError(f"{path}: rules[{i}] needs a name")
            name = raw["name"]
            pattern_spec = raw.get("pattern", ALL_OUTCROP_EVENTS)
            try:
                pattern = compile_pattern(pattern_spec)
            except PatternError as exc:
                raise RulesError(f"rule {name!r}: {exc}") from None
            specs = raw.get("targets", [])
            targets = [
                _target(name, j, spec, path.parent, allow_private, timeout_s)
                for j, spec in enumerate(specs)
            ]
            rules.append(Rule(name, pattern, pattern_spec, targets, [_public(s) for s in specs]))
    if webhook_url:
        spec = {"type": "webhook", "url": webhook_url, "secret": webhook_secret}
        target = _target(DEFAULT_WEBHOOK_RULE, 0, spec, Path.cwd(), allow_private, timeout_s)
        rules.append(
            Rule(
                DEFAULT_WEBHOOK_RULE,
                compile_pattern(ALL_OUTCROP_EVENTS),
                ALL_OUTCROP_EVENTS,
                [target],
                [_public(spec)],
            )
        )
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise RulesError("rule names must be unique")
    return RuleSet(rules)


def _public(spec: dict[str, Any]) -> dict[str, Any]:
    """A target's settings fit to show: secrets masked."""
    return {k: ("****" if "secret" in k and v else v) for k, v in spec.items()}
