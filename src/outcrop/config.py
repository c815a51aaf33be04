"""Settings: built once by the CLI from flags, OUTCROP_* environment variables and an optional TOML file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# The root credentials file in the data dir (written by the server, read by the CLI).
CREDENTIALS_FILE = "credentials.json"

# Bedrock's documented quotas (spec section 8), offered as the "bedrock" limits profile.
BEDROCK_LIMITS = {
    "max_records_per_file": 50_000,
    "max_records_per_job": 50_000,
    "max_bytes_per_file": 1024**3,
    "max_bytes_per_job": 5 * 1024**3,
    "min_records_per_job": 100,
}


class Settings(BaseSettings):
    """Every setting has an OUTCROP_<NAME> environment variable; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="OUTCROP_", extra="ignore")

    # Server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("./outcrop-data")
    database_url: str | None = None
    engine: bool = True  # run the engine in the API process (embedded default)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Identity
    region: str = Field("us-east-1", pattern=r"[a-z0-9-]{1,20}")
    account_id: str | None = Field(None, pattern=r"[0-9]{12}")
    root_access_key_id: str | None = None
    root_secret_access_key: str | None = None
    clock_skew_seconds: int = 900

    # Object storage
    storage: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str | None = None

    # Engine
    catalog: Path | None = None
    hour_seconds: float = Field(3600.0, gt=0)
    max_jobs_in_progress: int = Field(4, ge=1)
    max_jobs_per_model: int = Field(2, ge=1)
    shard_records: int = Field(1000, ge=1)
    max_shard_records: int = Field(10_000, ge=1)
    shard_concurrency: int = Field(4, ge=1)
    record_concurrency: int = Field(16, ge=1)
    lease_seconds: float = Field(15.0, gt=0)
    executor: Literal["local", "process", "ray"] = "local"
    process_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    ray_address: str | None = None
    ray_actors: int = Field(2, ge=1)
    ray_actor_cpus: float = Field(0.5, gt=0)
    progress_interval_s: float = Field(0.5, gt=0)
    manifest_interval_s: float = Field(5.0, gt=0)
    poll_interval_s: float = Field(0.2, gt=0)
    idle_poll_interval_s: float = Field(1.0, gt=0)  # the longest poll wait once idle
    storage_retry_s: float = Field(120.0, ge=0)  # 0: the first storage fault fails the job

    # Events
    event_rules: Path | None = None
    event_webhook_url: str | None = None
    event_webhook_secret: str | None = None
    event_retry_window_s: float = Field(86_400.0, gt=0)
    event_retry_base_s: float = Field(1.0, gt=0)
    event_retry_max_s: float = Field(300.0, gt=0)
    event_concurrency: int = Field(16, ge=1)
    allow_private_targets: bool = True

    # Validation limits ("generous" defaults; limits_profile="bedrock" applies Bedrock's quotas)
    limits_profile: Literal["generous", "bedrock"] = "generous"
    max_records_per_file: int = Field(10_000_000, ge=1)
    max_records_per_job: int = Field(50_000_000, ge=1)
    max_bytes_per_file: int = Field(50 * 1024**3, ge=1)
    max_bytes_per_job: int = Field(500 * 1024**3, ge=1)
    min_records_per_job: int = Field(1, ge=1)
    max_line_bytes: int = Field(16 * 1024**2, ge=1)

    # API
    rate_limit_rps: float = Field(100.0, ge=0)  # 0 disables the limit
    rate_limit_burst: int = Field(200, ge=1)
    max_request_bytes: int = Field(1024 * 1024, ge=1024)
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    max_active_jobs_per_account: int = Field(1000, ge=1)
    default_max_results: int = Field(1000, ge=1, le=1000)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_path = os.environ.get("OUTCROP_CONFIG")
        if config_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_path)))
        return tuple(sources)

    def model_post_init(self, context: Any, /) -> None:
        if self.limits_profile == "bedrock":
            for name, value in BEDROCK_LIMITS.items():
                if name not in self.model_fields_set:
                    object.__setattr__(self, name, value)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'outcrop.db').resolve()}"
