"""The web console: server-rendered pages (Jinja2 + htmx) over the same store and API logic."""

from outcrop.console.app import console_routes

__all__ = ["console_routes"]
