"""Translate server URLs into Airflow's JSON connection form.

Operators configure the loader with plain URLs (``TICKSTOCK_POSTGRES_URL``,
``TICKSTOCK_REDIS_URL``); Airflow wants connections. The embedded dev services and the compose
init container both translate through these two functions, so a URL means the same everywhere.
The JSON form (not an Airflow URI) is used because a unix-socket directory in ``host`` would
otherwise need double URL-encoding.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_DATABASE = "tickstock"


def postgres_connection(url: str) -> dict[str, object]:
    """Return the connection for a libpq URL (``postgresql://user:pw@host:port/db?sslmode=...``).

    ``?host=/socket/dir`` (how the embedded server is addressed) becomes ``host``; other query
    parameters become extras.
    """
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.pop("host", None) or parts.hostname or "localhost"
    conn: dict[str, object] = {
        "conn_type": "postgres",
        "host": unquote(host),
        "login": unquote(parts.username or "postgres"),
        "schema": unquote(parts.path.lstrip("/")) or DEFAULT_DATABASE,
    }
    if parts.password:
        conn["password"] = unquote(parts.password)
    if parts.port:
        conn["port"] = parts.port
    if query:
        conn["extra"] = query
    return conn


def redis_connection(url: str) -> dict[str, object]:
    """Return the connection for a ``redis://[user:pw@]host:port/db`` (or ``rediss://``) URL."""
    parts = urlsplit(url)
    extra: dict[str, object] = {"db": int(parts.path.lstrip("/") or 0)}
    if parts.scheme == "rediss":
        extra["ssl"] = True
    conn: dict[str, object] = {
        "conn_type": "redis",
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
        "extra": extra,
    }
    if parts.username:
        conn["login"] = unquote(parts.username)
    if parts.password:
        conn["password"] = unquote(parts.password)
    return conn
