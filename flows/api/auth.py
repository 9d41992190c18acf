"""Who may call: bearer tokens checked against SHA-256 hashes, and a per-tenant rate.

The configuration holds only each token's SHA-256 hex digest, so a leaked
``qhopper.toml`` leaks no token. A presented token is hashed and compared with every
tenant's digest in constant time (``hmac.compare_digest``), all of them each time, so the
time taken says nothing about which tenant or how many characters matched.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import threading
import time
from dataclasses import dataclass

from pipeline.config import ApiSettings
from pipeline.errors import ConfigError
from pipeline.kinds.base import DEFAULT_TENANT

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A token mapped to the tenant of problems that name none would read every problem
# submitted with `qhopper submit`, keys and file names included.
RESERVED = frozenset({DEFAULT_TENANT})
_DIGEST = re.compile(r"[0-9a-f]{64}")


class Tenants:
    """The configured tenants; :meth:`identify` maps an Authorization header to one."""

    def __init__(self, digests: dict[str, str]) -> None:
        for name, digest in digests.items():
            if not _NAME.fullmatch(name):
                raise ConfigError(
                    f"api.tenants: tenant name {name!r} must be 1-64 letters, digits, '_', '.', '-'"
                )
            if name in RESERVED:
                raise ConfigError(
                    f"api.tenants: the name {name!r} is reserved: it is the tenant of every "
                    "problem submitted without one (qhopper submit), which its token could "
                    "read; give this tenant another name"
                )
            if not _DIGEST.fullmatch(digest):
                raise ConfigError(
                    f"api.tenants.{name}: expected the SHA-256 hex digest of its token "
                    "(64 lower-case hex digits)"
                )
        self._digests = [(name, bytes.fromhex(d)) for name, d in digests.items()]

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, authorization: str | None) -> str | None:
        """The tenant whose token ``authorization`` ("Bearer <token>") carries, else None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: str | None = None
        for name, digest in self._digests:  # no early exit: the same work whoever matches
            if hmac.compare_digest(presented, digest):
                found = name
        return found


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per tenant: ``burst`` requests at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, api: ApiSettings) -> RateLimiter:
        return cls(api.rate_per_minute, api.burst)

    def take(self, tenant: str) -> float:
        """0 when ``tenant`` may go on; else the seconds until it may (for Retry-After)."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(tenant, _Bucket(self.burst, now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate


def retry_after(seconds: float) -> str:
    """Retry-After in whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))
