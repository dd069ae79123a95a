"""`quiver.connect`: the same `query`/`execute`/`Rows` API as an embedded
database, against `quiver serve` over HTTP (its JSON API)."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from typing import Any, Dict, List, Optional

from ._native import EngineError, Error, QueryError, QuerySyntaxError, StorageError
from ._rows import Rows


def _error(status: int, body: Dict[str, Any]) -> Error:
    """The exception an embedded database raises for the same failure, with
    ``status`` (HTTP) and ``kind`` (the server's) added."""
    e = body.get("error") or {}
    kind, message = e.get("kind", "internal"), e.get("message", f"HTTP {status}")
    cls = {"syntax": QuerySyntaxError, "semantic": QuerySyntaxError, "runtime": QueryError,
           "row_cap": QueryError, "timeout": QueryError, "storage": StorageError,
           "engine": EngineError}.get(kind, Error)
    err = cls(message)
    if isinstance(err, QuerySyntaxError):
        err.line, err.column = e.get("line"), e.get("column")
    setattr(err, "status", status)
    setattr(err, "kind", kind)
    return err


class Client:
    """A connection to `quiver serve` (one keep-alive HTTP connection, used
    by one request at a time; open one client per thread for parallel
    queries). Rows come back as `Rows`, errors as the `quiver.Error`
    subclasses an embedded database raises, with ``status`` and ``kind``."""

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 120.0):
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"connect: {url!r} is not an http://host:port URL")
        self._conn = http.client.HTTPConnection(u.hostname, u.port or 7474, timeout=timeout)
        self._headers = {"Content-Type": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._lock = threading.Lock()
        self.url = f"http://{u.hostname}:{u.port or 7474}"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"quiver.Client({self.url!r})"

    def _request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        with self._lock:
            try:
                self._conn.request(method, path, body=data, headers=self._headers)
                r = self._conn.getresponse()
                text = r.read()
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()  # a dropped keep-alive connection: once more on a new one
                self._conn.request(method, path, body=data, headers=self._headers)
                r = self._conn.getresponse()
                text = r.read()
        reply = json.loads(text)
        if r.status != 200:
            raise _error(r.status, reply)
        return reply

    def query(self, text: str, params: Optional[Dict[str, Any]] = None) -> Rows:
        """Runs `;`-separated statements on the server and returns the last
        one's rows, as `Database.query`."""
        reply = self._request("POST", "/api/query", {"query": text, "params": params or {}})
        return Rows(reply["columns"], [tuple(r) for r in reply["rows"]])

    def prepare(self, text: str) -> str:
        """The statement itself: the server parses each request."""
        return text

    def execute(self, prepared: str, params: Optional[Dict[str, Any]] = None) -> Rows:
        """`query` of a statement from `prepare` (or any text) with `params`."""
        return self.query(prepared, params)

    def execute_many(self, text: str, rows: List[Dict[str, Any]]) -> Rows:
        """Runs `text` once per row as one statement: `UNWIND $rows AS row` then `text`."""
        return self.query(f"UNWIND $rows AS row {text}", {"rows": list(rows)})

    def stats(self) -> Dict[str, Any]:
        """Counts per node type and relation, as `Database.stats`."""
        return self._request("GET", "/api/stats")

    def models(self) -> List[Dict[str, Any]]:
        """The stored models, as `Database.models`."""
        return self._request("GET", "/api/models")

    def close(self) -> None:
        """Closes the connection."""
        self._conn.close()


def connect(url: str, token: Optional[str] = None, timeout: float = 120.0) -> Client:
    """A client of `quiver serve` at ``url`` (``http://127.0.0.1:7474``)
    with the API of `quiver.open`: ``query``, ``prepare``/``execute``,
    ``execute_many``, `Rows`, the same exception classes. ``token`` is the
    server's ``--token-file`` content.

        with quiver.connect("http://127.0.0.1:7474") as db:
            db.query("MATCH (u:User {key: $k})-->(v) RETURN v.key", {"k": "u1"}).to_pandas()
    """
    return Client(url, token, timeout)
