"""Gateway configuration: environment variables (MODEL_DIR, PORT, ...) or `python -m service` options.

An empty variable counts as unset. `load_settings` reports bad values in one line naming the variables.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from model import explanation


class SettingsError(ValueError):
    """A setting's value is invalid; the message is one line naming each bad variable and its value."""


class Settings(BaseSettings):
    """Every field can be set by the environment variable of the same name in capitals."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    model_dir: Path | None = Field(
        None, description="an export base folder (highest numbered version wins) or one version folder"
    )
    model_backend: Literal["inprocess", "rest", "grpc"] = Field(
        "inprocess", description="inprocess: TensorFlow in this process; rest | grpc: a TF Serving server"
    )
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
    candidates: int | None = Field(
        None,
        ge=0,
        description="/recommend ranks this many candidates exactly, retrieved with one matrix product "
        "(two-stage ranking, the recommend_candidates signature; values below k count as k); 0: rank the whole "
        "catalog exactly (recommend). Unset: the model's own `candidates` in serving.json, the fewest that kept "
        "0.99 of the exact top 50 when it was exported (0 where none did, or for small catalogs)",
    )
    batch_rows: int | None = Field(
        None,
        ge=0,
        description="concurrent /recommend calls with the same k share one model call of at most this "
        "many users (a call starts at once while fewer than BATCH_CALLS are running; requests arriving meanwhile "
        "join the next one); 0: one model call per request. Unset: chosen with BATCH_CALLS when the first model "
        "loads, from its timed cost (service.batching.batching_for): 16 where a call's fixed cost dominates, 1 "
        "where it is nearly all per user (large catalogs; README, Batching); reloads keep the choice",
    )
    batch_calls: int | None = Field(
        None,
        ge=1,
        description="batched model calls of one kind running at once: more keeps more cores busy on "
        "compute-heavy calls (large catalogs), fewer makes larger batches where a call's fixed cost dominates. "
        "Unset: chosen with BATCH_ROWS when that is unset (1, 2 or 4), else 4 with BATCH_ROWS=1 and 2 otherwise",
    )
    heatmap_max_age_s: int = Field(
        300,
        ge=0,
        description="Cache-Control max-age of /explain/heatmap.png (private: per user); within a model "
        "version the PNG never changes, and a revalidation with its ETag is a 304 without a render",
    )
    render_workers: int = Field(
        1,
        ge=0,
        description="processes rendering /explain/heatmap.png beside the event loop (service.render); "
        "one keeps up with a 2-core gateway; 0: render on the gateway's own threads, where renders queue for "
        "the GIL under load",
    )
    tf_intra_op_threads: int | None = Field(
        None,
        ge=1,
        description="inprocess: threads one TensorFlow operation may use. Unset: 1 with two-stage ranking "
        "(CANDIDATES, or the model's own figure, > 0), whose calls are many small operations that cost more "
        "CPU split across threads than they gain (about 1.75 instead of 1.95 CPU ms per H&M call); TensorFlow's "
        "choice (every core) for exact ranking, whose one large call per request runs about 2x faster on 2 cores",
    )
    # /explain says when a map is no explanation (model.explanation); the page then shows the plain photo
    explain_min_concentration: float = Field(
        explanation.MIN_CONCENTRATION,
        ge=0,
        le=1,
        description="/explain calls a map informative only at this "
        "concentration or above (1 - its entropy / log(regions): 0 for a uniform map, 1 for one region); the "
        "default 0.1 marks maps with a normalised entropy above 0.9 as near uniform",
    )
    explain_min_visual_share: float = Field(
        explanation.MIN_VISUAL_SHARE,
        ge=0,
        le=1,
        description="/explain calls a map informative only where the "
        "photo carries at least this share of the score (|visual| / (|collaborative| + |visual|)); exports from "
        "before the attention signature returned the score's parts are judged on concentration alone",
    )
    # TF Serving (model_backend rest | grpc); the catalog still comes from the export under MODEL_DIR
    tfserving_rest_url: str = Field("http://127.0.0.1:8501", description="TF Serving's REST base URL")
    tfserving_grpc_target: str = Field("127.0.0.1:8500", description="TF Serving's gRPC host:port")
    tfserving_model_name: str | None = Field(None, description="unset: serving.json's model_name")
    tfserving_version: int | None = Field(
        None, ge=1, description="unset: the version folder the catalog comes from; must equal it"
    )
    tfserving_version_label: str | None = Field(
        None, description="e.g. stable: resolved to a version at startup, then pinned; excludes tfserving_version"
    )
    tfserving_timeout_s: float = Field(2.0, gt=0, description="deadline of one model call, its retries included")
    tfserving_retries: int = Field(2, ge=0, description="retries on connection errors, HTTP 503 and UNAVAILABLE")
    tfserving_backoff_s: float = Field(0.05, ge=0, description="delay before the first retry; doubles each retry")
    tfserving_pool_size: int = Field(16, ge=1, description="pooled REST connections (gRPC multiplexes one channel)")
    # operations: model reloads, admin endpoints, logs, shutdown
    model_poll_s: float = Field(10.0, ge=0, description="look for a new version under MODEL_DIR this often; 0: never")
    model_drain_s: float = Field(30.0, ge=0, description="a replaced model closes when its requests end, or after this")
    admin_token: str | None = Field(
        None, min_length=16, repr=False, description="bearer token of POST /admin/*; unset: admin endpoints are off"
    )
    log_format: Literal["json", "text"] = Field("json", description="json: one JSON object per line")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_timeout_s: int = Field(
        20, ge=0, description="uvicorn's timeout_graceful_shutdown: in-flight requests get this long after SIGTERM"
    )


def ranking_candidates(settings: Settings, exported: int) -> int:
    """The two-stage candidates /recommend ranks with: CANDIDATES, else the model's `exported` figure."""
    return exported if settings.candidates is None else settings.candidates


def error_line(error: ValidationError) -> str:
    """One line naming each bad variable (as the environment spells it), its value and what is wrong."""
    problems = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "SETTINGS"
        problems.append(f"{name}={item['input']!r}: {item['msg']}")
    return "invalid settings: " + "; ".join(problems)


def load_settings(**values: Any) -> Settings:
    """`Settings(**values)` (the environment fills the rest); SettingsError with `error_line` when invalid."""
    try:
        return Settings(**values)
    except ValidationError as error:
        raise SettingsError(error_line(error)) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
