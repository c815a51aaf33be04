"""`outcrop events`: the configured rules, and a live tail of state-change events."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from outcrop.cli.common import (
    EndpointOpt,
    OutputOpt,
    ProfileOpt,
    RegionOpt,
    app,
    build_settings,
    connect,
    fail,
    out,
)

events_app = typer.Typer(no_args_is_help=True, help="State-change events: rules and live tail.")
app.add_typer(events_app, name="events")


@events_app.command("rules")
def rules(output: OutputOpt = "table") -> None:
    """Show the event rules and targets this server is configured with (secrets masked)."""
    from outcrop.events.rules import RulesError, load_rules

    settings = build_settings()
    try:
        rule_set = load_rules(
            settings.event_rules,
            settings.event_webhook_url,
            settings.event_webhook_secret,
            settings.allow_private_targets,
        )
    except RulesError as exc:
        fail(str(exc))
    rows: list[dict[str, Any]] = [
        {"name": r.name, "pattern": r.raw_pattern, "targets": r.target_specs}
        for r in rule_set.rules
    ]
    if output == "json":
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print(
            "no event rules configured (set OUTCROP_EVENT_RULES or OUTCROP_EVENT_WEBHOOK_URL)"
        )
        return
    table = Table("rule", "pattern", "targets")
    for row in rows:
        specs: list[dict[str, Any]] = row["targets"]
        targets = ", ".join(
            f"{t.get('type')}:{t.get('url') or t.get('path') or t.get('event_bus_name', '')}"
            for t in specs
        )
        table.add_row(str(row["name"]), json.dumps(row["pattern"]), targets)
    out.print(table)


@events_app.command("tail")
def tail(
    job: Annotated[str | None, typer.Option("--job", help="Only this job (id or ARN)")] = None,
    since: Annotated[
        int, typer.Option(help="Start after this event sequence (0: from the beginning)")
    ] = 0,
    endpoint_url: EndpointOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    output: OutputOpt = "table",
) -> None:
    """Follow state-change events as they happen (Ctrl-C to stop)."""
    from outcrop.client import ClientSetupError

    connection = connect(endpoint_url, profile, region)
    params = {"after": str(since)}
    if job:
        params["job"] = job
    try:
        for event in connection.stream_events(params):
            if output == "json":
                print(json.dumps(event), flush=True)
            else:
                detail = event["detail"]
                out.print(
                    f"{event['time']}  {detail['batchJobName']:<30} {detail['status']:<18} {detail['batchJobArn']}"
                )
    except ClientSetupError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
