"""Gateway configuration: environment variables (MODEL_DIR, PORT, ...) or `python -m service` options."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every field can be set by the environment variable of the same name in capitals."""

    model_config = SettingsConfigDict(extra="ignore")

    model_dir: Path | None = Field(
        None, description="an export base folder (highest numbered version wins) or one version folder"
    )
    model_backend: Literal["inprocess"] = "inprocess"
    image_root: Path | None = Field(None, description="overrides serving.json's image_root")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    redis_url: str | None = Field(None, description="redis://host:port/db; unset: in-process LRU cache")
    redis_timeout_s: float = Field(0.05, gt=0, description="socket timeout of every Redis call")
    redis_cooldown_s: float = Field(1.0, ge=0, description="after a Redis error, bypass it this long")
    redis_required: bool = Field(False, description="/readyz fails while Redis does not answer")
    cache_ttl_s: float = Field(3600.0, gt=0)
    cache_size: int = Field(100_000, ge=1, description="entries kept by the in-process LRU cache")
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with 503 responses")


@lru_cache
def get_settings() -> Settings:
    return Settings()
