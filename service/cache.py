"""User-embedding cache, keyed by model version + user id so a new model never serves a stale vector.

`LruCache` (in-process, bounded, TTL) is the default; `RedisCache` is used when REDIS_URL is set.
Both also remember "unknown user" answers. A cache never fails a request: `RedisCache` turns Redis
errors and timeouts into misses, logs a warning, and tries Redis again after a short cooldown.
Values are compact: one flag byte and the float32 vector (`CachedEmbedding.to_bytes`), read with
one MGET per request. Only `flush` (an admin action) raises when Redis does not answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "vecf"
USERS, HISTORIES = "emb", "hist"  # key spaces: states of known user ids, and of folded-in histories
FLUSH_BATCH = 500  # keys per SCAN step and per UNLINK of RedisCache.flush
_KNOWN, _UNKNOWN = b"\x01", b"\x00"


@dataclass(frozen=True)
class CachedEmbedding:
    vector: np.ndarray  # float32 [D]
    known: bool

    def to_bytes(self) -> bytes:
        """1 flag byte, then the vector as little-endian float32."""
        flag = _KNOWN if self.known else _UNKNOWN
        return flag + np.asarray(self.vector, dtype="<f4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedEmbedding:
        flag, body = data[:1], data[1:]
        if flag not in (_KNOWN, _UNKNOWN) or len(body) % 4:
            raise ValueError(f"not a cached embedding: {data[:16]!r}...")
        return cls(np.frombuffer(body, dtype="<f4").astype(np.float32), flag == _KNOWN)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0  # failed cache calls (each answered as all misses)
    bypassed: int = 0  # calls skipped while cooling down after an error


class EmbeddingCache(Protocol):
    kind: str
    stats: CacheStats

    async def get_many(
        self, version: int, user_ids: Sequence[str], space: str = USERS
    ) -> list[CachedEmbedding | None]: ...

    async def put_many(self, version: int, entries: Mapping[str, CachedEmbedding], space: str = USERS) -> None: ...

    async def ping(self) -> bool: ...

    async def flush(self) -> int:
        """Drop every cached embedding, all versions; returns how many. Unlike lookups, it raises on errors."""

    async def aclose(self) -> None: ...


def cache_key(version: int, user_id: str, space: str = USERS) -> str:
    return f"{KEY_PREFIX}:v{version}:{space}:{user_id}"


def history_id(history: Sequence[str]) -> str:
    """The cache id of a shopper's history: a hash of its item ids in order (the order matters: the
    newest items fill the repeat slots)."""
    return hashlib.sha256(json.dumps(list(history), separators=(",", ":")).encode("utf-8")).hexdigest()


class LruCache:
    """In-process: at most `size` entries, each for `ttl_s` seconds, least recently used evicted first."""

    kind = "lru"

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._size, self._ttl_s, self._clock = size, ttl_s, clock
        self._entries: OrderedDict[tuple[int, str, str], tuple[float, CachedEmbedding]] = OrderedDict()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, version: int, user_ids: Sequence[str], space: str = USERS) -> list[CachedEmbedding | None]:
        now = self._clock()
        found: list[CachedEmbedding | None] = []
        for user_id in user_ids:
            key = (version, space, user_id)
            expires, entry = self._entries.get(key, (0.0, None))
            if entry is not None and expires <= now:
                del self._entries[key]
                entry = None
            if entry is not None:
                self._entries.move_to_end(key)
            found.append(entry)
        self.stats.hits += sum(e is not None for e in found)
        self.stats.misses += sum(e is None for e in found)
        return found

    async def put_many(self, version: int, entries: Mapping[str, CachedEmbedding], space: str = USERS) -> None:
        expires = self._clock() + self._ttl_s
        for user_id, entry in entries.items():
            self._entries[(version, space, user_id)] = (expires, entry)
            self._entries.move_to_end((version, space, user_id))
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    async def ping(self) -> bool:
        return True

    async def flush(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        return count

    async def aclose(self) -> None:
        self._entries.clear()


class RedisCache:
    """Redis: one MGET per lookup, pipelined SETs with a TTL; errors become misses, never exceptions."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: float,
        timeout_s: float = 0.05,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # One immediate retry lets a pooled connection that died with a restarted server reconnect.
        self._client = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1)
        )
        self.url = url
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._deadline_s = 4 * timeout_s  # connect + read, twice
        self._cooldown_s, self._clock = cooldown_s, clock
        self._retry_at = 0.0
        self._healthy = True
        self.stats = CacheStats()

    async def get_many(self, version: int, user_ids: Sequence[str], space: str = USERS) -> list[CachedEmbedding | None]:
        found: list[CachedEmbedding | None] = [None] * len(user_ids)
        if user_ids and self._usable():
            try:
                async with asyncio.timeout(self._deadline_s):
                    values = await self._client.mget([cache_key(version, u, space) for u in user_ids])
                found = [self._decode(u, v) for u, v in zip(user_ids, values, strict=True)]
                self._succeeded()
            except (RedisError, OSError) as error:
                self._failed("MGET", error)
        self.stats.hits += sum(e is not None for e in found)
        self.stats.misses += sum(e is None for e in found)
        return found

    async def put_many(self, version: int, entries: Mapping[str, CachedEmbedding], space: str = USERS) -> None:
        if not entries or not self._usable():
            return
        try:
            async with asyncio.timeout(self._deadline_s):
                async with self._client.pipeline(transaction=False) as pipe:
                    for user_id, entry in entries.items():
                        pipe.set(cache_key(version, user_id, space), entry.to_bytes(), px=self._ttl_ms)
                    await pipe.execute()
            self._succeeded()
        except (RedisError, OSError) as error:
            self._failed("SET", error)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._deadline_s):
                await self._client.ping()
        except (RedisError, OSError):
            return False
        self._succeeded()
        return True

    async def flush(self) -> int:
        """UNLINKs this gateway's keys (`vecf:*`) in batches found by SCAN; other keys in the database stay."""
        deleted, batch = 0, []
        async for key in self._client.scan_iter(match=f"{KEY_PREFIX}:*", count=FLUSH_BATCH):
            batch.append(key)
            if len(batch) == FLUSH_BATCH:
                deleted += await self._client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self._client.unlink(*batch)
        return deleted

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def _decode(user_id: str, value: bytes | None) -> CachedEmbedding | None:
        """A corrupt value is a miss (and gets overwritten); it does not take the whole cache down."""
        if value is None:
            return None
        try:
            return CachedEmbedding.from_bytes(value)
        except ValueError as error:
            log.warning("ignoring a corrupt cache entry for user %r: %s", user_id, error)
            return None

    def _usable(self) -> bool:
        if self._clock() >= self._retry_at:
            return True
        self.stats.bypassed += 1
        return False

    def _succeeded(self) -> None:
        if not self._healthy:
            log.warning("Redis cache at %s is back", self.url)
        self._healthy = True

    def _failed(self, what: str, error: Exception) -> None:
        self.stats.errors += 1
        self._retry_at = self._clock() + self._cooldown_s
        if self._healthy:
            log.warning(
                "Redis cache %s failed (%s: %s); bypassing the cache until it answers again",
                what,
                type(error).__name__,
                error,
            )
        self._healthy = False


def stats_dict(cache: EmbeddingCache) -> dict[str, int | str]:
    return {"kind": cache.kind, **asdict(cache.stats)}


def create_cache(settings: Settings) -> EmbeddingCache:
    """Redis when `settings.redis_url` is set, else the in-process LRU."""
    if settings.redis_url:
        return RedisCache(settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_s, settings.redis_cooldown_s)
    return LruCache(settings.cache_size, settings.cache_ttl_s)
