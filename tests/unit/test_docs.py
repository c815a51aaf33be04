"""Docs that must track the code: every setting is documented."""

from __future__ import annotations

from pathlib import Path

from outcrop.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{name}`" not in text]
    assert missing == [], f"settings missing from docs/configuration.md: {missing}"
