"""`outcrop config show`: effective values, their sources, and masked secrets (real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SECRETS = ("hunter2", "root-secret-value", "webhook-secret-value")


def config_show(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("OUTCROP_")}
    return subprocess.run(
        [sys.executable, "-m", "outcrop", "config", "show", *args],
        env={**base, "COLUMNS": "200", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "outcrop.toml"
    path.write_text(
        'host = "0.0.0.0"\n'
        "port = 7000\n"
        'database_url = "postgresql+psycopg://bob:hunter2@db.internal:5432/outcrop"\n'
        'event_webhook_secret = "webhook-secret-value"\n'
        'limits_profile = "bedrock"\n'
    )
    return path


def test_each_value_has_its_source_and_secrets_are_masked(tmp_path: Path) -> None:
    env = {
        "OUTCROP_CONFIG": str(write_config(tmp_path)),
        "OUTCROP_PORT": "9001",  # the environment beats the file
        "OUTCROP_ROOT_SECRET_ACCESS_KEY": "root-secret-value",
    }
    done = config_show(tmp_path, "--data-dir", str(tmp_path / "d"), "--output", "json", **env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    settings = shown["settings"]
    assert shown["config_file"] == env["OUTCROP_CONFIG"]
    assert settings["data_dir"] == {"value": str(tmp_path / "d"), "source": "flag"}
    assert settings["port"] == {"value": 9001, "source": "env"}
    assert settings["host"] == {"value": "0.0.0.0", "source": "file"}
    assert settings["region"] == {"value": "us-east-1", "source": "default"}
    assert settings["max_records_per_job"] == {"value": 50_000, "source": "limits_profile"}
    assert settings["root_secret_access_key"] == {"value": "********", "source": "env"}
    assert settings["event_webhook_secret"]["value"] == "********"
    assert settings["database_url"]["value"] == (
        "postgresql+psycopg://bob:********@db.internal:5432/outcrop"
    )
    assert settings["s3_secret_access_key"] == {"value": None, "source": "default"}

    table = config_show(tmp_path, **env)
    assert table.returncode == 0, table.stderr
    assert "database_url" in table.stdout and "limits_profile" in table.stdout
    for secret in SECRETS:
        assert secret not in done.stdout and secret not in table.stdout


def test_an_invalid_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = config_show(tmp_path, OUTCROP_PORT="not-a-port")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "port" in done.stderr
