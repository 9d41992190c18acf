"""Secrets kept out of what qhopper prints and logs: URL passwords and storage options.

``qhopper config``, error lines and logs show settings that may carry credentials: a
database URL with its password, an object store's options (an access key, a SAS token, a
connection string with an AccountKey, a passphrase, credentials inside an endpoint URL).
A URL keeps everything but its password (and query values that name a secret); a storage
option is shown only when its key is known to be harmless. That is an allow-list: an option
this module does not know is masked whatever its name, because a deny-list of words
("key", "secret", ...) let ``connection_string``, ``sas`` and ``auth`` through in clear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
# fsspec / s3fs / gcsfs / adlfs options that never hold a credential. Nested option groups
# (client_kwargs, config_kwargs, s3) are listed so their own harmless keys can show.
HARMLESS_OPTIONS = frozenset(
    {
        "anon",
        "use_ssl",
        "verify",
        "region",
        "region_name",
        "endpoint",
        "endpoint_url",
        "requester_pays",
        "version_aware",
        "default_block_size",
        "default_cache_type",
        "default_fill_cache",
        "cache_regions",
        "skip_instance_cache",
        "use_listings_cache",
        "listings_expiry_time",
        "max_concurrency",
        "fixed_upload_size",
        "addressing_style",
        "signature_version",
        "account_name",
        "project",
        "timeout",
        "connect_timeout",
        "read_timeout",
        "client_kwargs",
        "config_kwargs",
        "s3",
    }
)
# scheme://user:PASSWORD@ (the password runs to the authority's last '@').
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*):[^\s/?#]*@")
# ?password=...&sig=... (libpq reads a password from the query too; SAS tokens sign with sig)
_QUERY_SECRET = re.compile(
    r"(?i)(?P<name>[?&][^=&\s]*(?:pass|secret|token|sig|key|credential|auth)[^=&\s]*=)[^&\s#]*"
)


def redact_text(text: str) -> str:
    """``text`` with the password, and secret query values, of every URL in it masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['name']}{MASK}", text)


def masked_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Storage options fit to show: values of keys not known to be harmless are masked."""
    return {key: _masked(key, value) for key, value in options.items()}


def _masked(key: str, value: Any) -> Any:
    if key not in HARMLESS_OPTIONS:
        return MASK
    if isinstance(value, Mapping):
        return masked_options(value)
    if isinstance(value, str) and _carries_credentials(value):
        return MASK  # an endpoint is harmless only without credentials in it
    return value


def _carries_credentials(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return bool(parts.username or parts.password or parts.query)
    except ValueError:
        return True  # not a URL one can read: show nothing of it
