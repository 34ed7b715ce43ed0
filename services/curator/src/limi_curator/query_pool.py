"""The query pool: queries with a status, published query sets, and what was emitted from them.

Queries are added all-or-nothing per import; a query whose content hash (normalized text, plus
workspace files when it has any) is already in the pool counts as a duplicate, and an id reused
with different content is an error naming the line it came from. A query set is a content hash
over its sorted (query id, content hash) pairs: publishing the same content under the same name
returns the existing set, other content gets the next version, and a published set never
changes. Emission bookkeeping (`emission_plan`, `mark_emitted`) lets the emitter send each
(set, query) once. It does not publish events (emitter.py does) and does not detect
near-duplicates (dedupe.py does).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterable

from google.protobuf import timestamp_pb2

from limi.query.v1 import query_pb2
from limi_core.errors import InvalidArgument, NotFound
from limi_curator.db import CuratorDatabase
from limi_curator.query_import import RowError

SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


def _query(blob: bytes) -> query_pb2.Query:
    query = query_pb2.Query()
    query.ParseFromString(blob)
    return query


def check_set_name(name: str, field: str = "name") -> None:
    if not SET_NAME.match(name):
        raise InvalidArgument(field, f"{name!r} must be 1-64 letters, digits or ._- starting with a letter or digit")


class QueryPool:
    def __init__(self, db: CuratorDatabase) -> None:
        self._db = db

    # ------------------------------------------------------------ queries

    def add(self, queries: Iterable[query_pb2.Query]) -> tuple[list[str], list[query_pb2.Query]]:
        """Store new queries as PENDING; returns (the pool id of every given query, the queries newly added)."""
        ids, added = [], []
        with self._db.transaction() as connection:
            for query in queries:
                same_content = connection.execute(
                    "SELECT id FROM queries WHERE content_hash = ?", (query.content_hash,)
                ).fetchone()
                same_id = connection.execute("SELECT content_hash FROM queries WHERE id = ?", (query.id,)).fetchone()
                if same_id and same_id[0] != query.content_hash:
                    origin = query.provenance
                    raise RowError(
                        origin.origin_file or "request",
                        origin.origin_line,
                        "id",
                        f"query {query.id} already exists with different text or workspace files",
                    )
                if same_content:
                    ids.append(same_content[0])
                    continue
                stored = query_pb2.Query()
                stored.CopyFrom(query)
                if not stored.HasField("created_at"):
                    stored.created_at.CopyFrom(_now())
                connection.execute(
                    "INSERT INTO queries (id, text, source, category, status, content_hash, proto) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        stored.id,
                        stored.text,
                        stored.source,
                        stored.category,
                        query_pb2.QUERY_STATUS_PENDING,
                        stored.content_hash,
                        stored.SerializeToString(),
                    ),
                )
                ids.append(stored.id)
                added.append(stored)
        return ids, added

    def get(self, query_id: str) -> query_pb2.Query:
        rows = self._db.read("SELECT proto FROM queries WHERE id = ?", (query_id,))
        if not rows:
            raise NotFound(f"query {query_id} not found")
        return _query(rows[0][0])

    def status(self, query_id: str) -> int:
        rows = self._db.read("SELECT status FROM queries WHERE id = ?", (query_id,))
        if not rows:
            raise NotFound(f"query {query_id} not found")
        return rows[0][0]

    def list(
        self,
        *,
        source: int = 0,
        category: int = 0,
        status: int = 0,
        query_set_id: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[tuple[query_pb2.Query, int, str]], str]:
        """Queries matching every non-zero filter, oldest first; returns ((query, status, drop reason) ..., next token)."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE_SIZE}, got {page_size}")
        if page_token and not page_token.isdigit():
            raise InvalidArgument("page_token", f"{page_token!r} is not a token this service returned")
        size = page_size or DEFAULT_PAGE_SIZE
        clauses, parameters = ["seq > ?"], [int(page_token or 0)]
        for column, value in (("source", source), ("category", category), ("status", status)):
            if value:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        if query_set_id:
            clauses.append("id IN (SELECT value FROM json_each(?))")
            parameters.append(json.dumps(list(self.get_set(query_set_id).query_ids)))
        rows = self._db.read(
            f"SELECT seq, proto, status, drop_reason FROM queries WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?",
            (*parameters, size + 1),
        )
        page = [(_query(blob), row_status, reason) for _seq, blob, row_status, reason in rows[:size]]
        next_token = str(rows[size - 1][0]) if len(rows) > size else ""
        return page, next_token

    def all_active(self) -> list[query_pb2.Query]:
        """Every query not DROPPED, oldest first (real before synthetic on ties by insertion order)."""
        rows = self._db.read(
            "SELECT proto FROM queries WHERE status != ? ORDER BY seq", (query_pb2.QUERY_STATUS_DROPPED,)
        )
        return [_query(blob) for (blob,) in rows]

    def mark_dropped(self, reasons: dict[str, str]) -> None:
        with self._db.transaction() as connection:
            for query_id, reason in reasons.items():
                connection.execute(
                    "UPDATE queries SET status = ?, drop_reason = ? WHERE id = ?",
                    (query_pb2.QUERY_STATUS_DROPPED, reason, query_id),
                )

    def counts_by_source_and_status(self) -> list[tuple[int, int, int]]:
        return self._db.read("SELECT source, status, COUNT(*) FROM queries GROUP BY source, status")

    # ------------------------------------------------------------ query sets

    def publish_set(
        self, name: str, query_ids: list[str], *, source: int = 0, category: int = 0, status: int = 0
    ) -> tuple[query_pb2.QuerySet, bool]:
        """Freeze queries into a set; returns (the set, whether it is new)."""
        check_set_name(name)
        with self._db.transaction() as connection:
            if query_ids:
                members = self._members_by_id(connection, query_ids)
            else:
                members = self._members_by_filter(connection, source, category, status)
            digest = hashlib.sha256("".join(f"{qid}\t{chash}\n" for qid, chash in members).encode()).hexdigest()
            existing = connection.execute(
                "SELECT proto FROM query_sets WHERE name = ? AND content_hash = ?", (name, digest)
            ).fetchone()
            if existing:
                query_set = query_pb2.QuerySet()
                query_set.ParseFromString(existing[0])
                return query_set, False
            (latest,) = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM query_sets WHERE name = ?", (name,)
            ).fetchone()
            query_set = query_pb2.QuerySet(
                id=f"{name}-{digest[:12]}",
                name=name,
                version=latest + 1,
                content_hash=digest,
                published_at=_now(),
                query_ids=[qid for qid, _ in members],
            )
            connection.execute(
                "INSERT INTO query_sets (id, name, version, content_hash, proto) VALUES (?, ?, ?, ?, ?)",
                (query_set.id, name, query_set.version, digest, query_set.SerializeToString()),
            )
            return query_set, True

    @staticmethod
    def _members_by_id(connection: sqlite3.Connection, query_ids: list[str]) -> list[tuple[str, str]]:
        members: dict[str, str] = {}
        for position, query_id in enumerate(query_ids):
            row = connection.execute("SELECT content_hash, status FROM queries WHERE id = ?", (query_id,)).fetchone()
            if row is None:
                raise InvalidArgument(f"query_ids[{position}]", f"no query {query_id!r} in the pool")
            if row[1] == query_pb2.QUERY_STATUS_DROPPED:
                raise InvalidArgument(f"query_ids[{position}]", f"query {query_id} was dropped and cannot join a set")
            members[query_id] = row[0]
        return sorted(members.items())

    @staticmethod
    def _members_by_filter(
        connection: sqlite3.Connection, source: int, category: int, status: int
    ) -> list[tuple[str, str]]:
        clauses, parameters = ["status != ?"], [query_pb2.QUERY_STATUS_DROPPED]
        for column, value in (("source", source), ("category", category), ("status", status)):
            if value:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        rows = connection.execute(
            f"SELECT id, content_hash FROM queries WHERE {' AND '.join(clauses)} ORDER BY id", parameters
        ).fetchall()
        if not rows:
            raise InvalidArgument("query_ids", "is empty and no query matches the filter (source, category, status)")
        return [(qid, chash) for qid, chash in rows]

    def get_set(self, query_set_id: str) -> query_pb2.QuerySet:
        rows = self._db.read("SELECT proto FROM query_sets WHERE id = ?", (query_set_id,))
        if not rows:
            raise NotFound(f"query set {query_set_id} not found")
        query_set = query_pb2.QuerySet()
        query_set.ParseFromString(rows[0][0])
        return query_set

    def list_sets(self, name: str = "") -> list[query_pb2.QuerySet]:
        sql, parameters = "SELECT proto FROM query_sets", ()
        if name:
            sql, parameters = sql + " WHERE name = ?", (name,)
        sets = []
        for (blob,) in self._db.read(sql + " ORDER BY name, version DESC", parameters):
            query_set = query_pb2.QuerySet()
            query_set.ParseFromString(blob)
            sets.append(query_set)
        return sets

    # ------------------------------------------------------------ emission bookkeeping

    def emission_plan(self, query_set_id: str) -> list[tuple[query_pb2.Query, bool]]:
        """Each query of the set with whether it was emitted before."""
        query_set = self.get_set(query_set_id)
        emitted = {
            qid for (qid,) in self._db.read("SELECT query_id FROM emissions WHERE query_set_id = ?", (query_set_id,))
        }
        return [(self.get(query_id), query_id in emitted) for query_id in query_set.query_ids]

    def mark_emitted(self, query_set_id: str, query_id: str, episodes: int, msg_id: str) -> None:
        with self._db.transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO emissions (query_set_id, query_id, episodes, msg_id) VALUES (?, ?, ?, ?)",
                (query_set_id, query_id, episodes, msg_id),
            )
            connection.execute(
                "UPDATE queries SET status = ? WHERE id = ? AND status = ?",
                (query_pb2.QUERY_STATUS_EMITTED, query_id, query_pb2.QUERY_STATUS_PENDING),
            )


def record_outcome(connection: sqlite3.Connection, query_id: str, completed: bool) -> None:
    """Inside the trajectory sink's transaction: a completed episode completes its query; a failed one
    marks it FAILED unless another episode completed it."""
    if completed:
        connection.execute(
            "UPDATE queries SET status = ? WHERE id = ? AND status != ?",
            (query_pb2.QUERY_STATUS_COMPLETED, query_id, query_pb2.QUERY_STATUS_DROPPED),
        )
    else:
        connection.execute(
            "UPDATE queries SET status = ? WHERE id = ? AND status IN (?, ?)",
            (query_pb2.QUERY_STATUS_FAILED, query_id, query_pb2.QUERY_STATUS_PENDING, query_pb2.QUERY_STATUS_EMITTED),
        )
