"""`python -m service --model EXPORT_DIR [--port 8000] [--host 127.0.0.1] [--redis-url URL]`.

Every option can also be set by environment variable (MODEL_DIR, PORT, HOST, REDIS_URL, IMAGE_ROOT,
CACHE_TTL_S, CACHE_SIZE); an option given on the command line wins.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.settings import Settings, SettingsError, load_settings


def parse_settings(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__.split("\n\n")[1])
    parser.add_argument("--model", dest="model_dir", type=Path, help="export base folder or a version folder")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--redis-url", help="cache user embeddings in Redis, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--image-root", type=Path, help="catalog image folder (default: serving.json's)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(**{name: value for name, value in vars(args).items() if value is not None})
    except SettingsError as error:
        parser.error(str(error))
    if settings.model_dir is None:
        parser.error("no model: pass --model EXPORT_DIR or set MODEL_DIR")
    return settings


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    from service.app import serve
    from service.catalog import find_version_dir

    try:  # the same lookup the first load makes: one line here instead of a startup traceback
        find_version_dir(settings.model_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"python -m service: error: MODEL_DIR={settings.model_dir}: {error}", file=sys.stderr)
        return 2

    serve(settings)  # JSON logs (LOG_FORMAT), our access log, timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
