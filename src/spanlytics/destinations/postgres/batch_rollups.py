"""A batch's rollups as one JSON document, and the upserts that add it to the rollup tables.

* :func:`rollups_json`: :class:`~spanlytics.destinations.rollups.Rollups` as the document
  ``{"e": [endpoint rows], "c": [consumer rows], "l": [label rows]}``, each row a JSON array
  of the table's columns. The encoder writes it at the head of a batch
  (:mod:`~spanlytics.destinations.postgres.rows`): it holds the rollups of every record of
  the batch, which is what a batch new to the store adds.
* :func:`rollups_of`: the rollups of the fields an ``INSERT ... RETURNING`` gives back (a
  batch partly stored already adds the rollups of its new records only).
* :func:`write_rollups`: one statement of five upserts (endpoint minutes and hours, consumer
  minutes and hours, labels), each reading its rows from the document on the server
  (``jsonb_array_elements``) in key order, so that concurrent writers lock rows in one order;
  the hour rows are the document's minute rows added up per hour (``minute // 60``). The
  client adapts one text parameter instead of thirteen arrays (microseconds instead of
  milliseconds), the server parses it once, and the histograms are merged inline: the stored
  object with the batch's buckets added, which reads only the batch's few buckets (the SQL
  function ``spanlytics_hist_merge`` unpacks both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from spanlytics._json import dumps_text, loads_text
from spanlytics.destinations.rollups import TALLY_COLUMNS, Rollups, Tally

if TYPE_CHECKING:
    import psycopg

K = TypeVar("K")

__all__ = ["FIELDS", "RollupFields", "combine_documents", "rollups_json", "rollups_of", "write_rollups"]

FIELDS = (
    "start_time_ns",
    "method",
    "route",
    "status",
    "duration_ms",
    "request_size",
    "response_size",
    "consumer_id",
    "consumer_name",
    "consumer_group",
)
"""The columns the rollups need, in the order of a :data:`RollupFields` tuple (what the
fallback's ``INSERT ... RETURNING`` returns)."""

RollupFields = tuple[
    int, str, str | None, int | None, float, int | None, int | None, str | None, str | None, str | None
]


def rollups_of(rows: Iterable[RollupFields]) -> Rollups:
    """``rows`` added up: what ``Rollups.of`` gives for the records they were stored from."""
    rollups = Rollups()
    for row in rows:
        rollups.add_fields(*row)
    return rollups


# -- the upserts ---------------------------------------------------------------------------

_TALLY_TYPES = ("bigint", "bigint", "bigint", "float8", "bigint", "bigint", "bigint", "bigint", "jsonb")
# bucket counts added up: {"3": 1} + {"3": 2, "4": 1} = {"3": 3, "4": 1} (the batch's buckets
# replace the stored ones, each with the stored count added)
_MERGE = (
    "hist = t.hist || (SELECT coalesce(jsonb_object_agg(b.key, "
    "coalesce((t.hist ->> b.key)::bigint, 0) + b.value::bigint), '{}'::jsonb) "
    "FROM jsonb_each_text(excluded.hist) AS b)"
)
_ADD = ", ".join(f"{c} = t.{c} + excluded.{c}" if c != "hist" else _MERGE for c in TALLY_COLUMNS)


def _rows(part: str, keys: tuple[tuple[str, str], ...]) -> str:
    """The document's ``part`` as typed rows (element i of each JSON array is column i)."""
    columns = [k for k, _ in keys] + list(TALLY_COLUMNS)
    types = [t for _, t in keys] + list(_TALLY_TYPES)
    values = ", ".join(
        f"(e ->> {i})::{t} AS {c}" if t != "jsonb" else f"e -> {i} AS {c}"
        for i, (c, t) in enumerate(zip(columns, types, strict=True))
    )
    return f"SELECT {values} FROM d, jsonb_array_elements(d.doc -> '{part}') AS e"


def _upsert(table: str, rows: str, keys: tuple[str, ...]) -> str:
    """The minute rows of the CTE ``rows`` added to ``table``, in key order."""
    key_list = ", ".join(keys)
    return (
        f"INSERT INTO {table} AS t ({key_list}, {', '.join(TALLY_COLUMNS)}) "
        f"SELECT {key_list}, {', '.join(TALLY_COLUMNS)} FROM {rows} ORDER BY {key_list} "
        f"ON CONFLICT ({key_list}) DO UPDATE SET {_ADD}"
    )


# the histograms of a group added up bucket by bucket (an outer-level aggregate in a subquery)
_HIST_SUM = (
    "coalesce((SELECT jsonb_object_agg(b.key, b.n) FROM (SELECT b.key, sum(b.value::bigint) AS n "
    "FROM jsonb_array_elements(jsonb_agg(hist)) AS h, jsonb_each_text(h) AS b GROUP BY b.key) AS b), "
    "'{}'::jsonb)"
)
# minute // 60, rounded down for negative minutes too (as Python's // does)
_HOUR = "(minute - (minute %% 60 + 60) %% 60) / 60"  # %% is % (a psycopg parameter string)


def _upsert_hours(table: str, rows: str, keys: tuple[str, ...]) -> str:
    """The minute rows of the CTE ``rows`` added up per hour and added to ``table``, in key order."""
    key_list = ", ".join(keys)
    sums = ", ".join(f"sum({c})::{t}" for c, t in zip(TALLY_COLUMNS[:-1], _TALLY_TYPES[:-1], strict=True))
    return (
        f"INSERT INTO {table} AS t (hour, {key_list}, {', '.join(TALLY_COLUMNS)}) "
        f"SELECT {_HOUR} AS hour, {key_list}, {sums}, {_HIST_SUM} FROM {rows} "
        f"GROUP BY 1, {key_list} ORDER BY 1, {key_list} "
        f"ON CONFLICT (hour, {key_list}) DO UPDATE SET {_ADD}"
    )


_ENDPOINT_KEYS = (("minute", "bigint"), ("method", "text"), ("route", "text"), ("status_class", "int"))
_CONSUMER_KEYS = (("minute", "bigint"), ("consumer_id", "text"), ("status_class", "int"))
_ENDPOINT_ROWS = _rows("e", _ENDPOINT_KEYS)
_CONSUMER_ROWS = _rows("c", _CONSUMER_KEYS)
_UPSERT_ENDPOINTS = _upsert("endpoint_minutes", "em", tuple(k for k, _ in _ENDPOINT_KEYS))
_UPSERT_ENDPOINT_HOURS = _upsert_hours("endpoint_hours", "em", ("method", "route", "status_class"))
_UPSERT_CONSUMERS = _upsert("consumer_minutes", "cm", tuple(k for k, _ in _CONSUMER_KEYS))
_UPSERT_CONSUMER_HOURS = _upsert_hours("consumer_hours", "cm", ("consumer_id", "status_class"))
# the latest non-null name and group per consumer, whatever order the batches arrive in
_UPSERT_LABELS = """INSERT INTO consumers AS t (consumer_id, name, group_name, last_seen_ns)
SELECT e ->> 0, e ->> 1, e ->> 2, (e ->> 3)::bigint
FROM d, jsonb_array_elements(d.doc -> 'l') AS e ORDER BY 1
ON CONFLICT (consumer_id) DO UPDATE SET
    name = CASE WHEN excluded.last_seen_ns >= t.last_seen_ns
        THEN coalesce(excluded.name, t.name) ELSE coalesce(t.name, excluded.name) END,
    group_name = CASE WHEN excluded.last_seen_ns >= t.last_seen_ns
        THEN coalesce(excluded.group_name, t.group_name) ELSE coalesce(t.group_name, excluded.group_name) END,
    last_seen_ns = greatest(t.last_seen_ns, excluded.last_seen_ns)"""


def _clean(text: str) -> str:
    """A key as the COPY lines store it (:func:`spanlytics.destinations.postgres.rows.copy_line`):
    NUL as U+FFFD, a lone surrogate as ``?``. jsonb cannot hold NUL either."""
    if text.isascii() and "\0" not in text:
        return text
    return text.replace("\0", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _maybe(text: str | None) -> str | None:
    return None if text is None else _clean(text)


def _tally(t: Tally) -> list[Any]:
    # the sum as text: JSON has no infinity or NaN, float8 reads "inf" and "nan" (and repr
    # round-trips every double exactly)
    return [
        t.count, t.errors, t.server_errors, repr(t.duration_ms_sum), t.request_size_sum,
        t.request_size_n, t.response_size_sum, t.response_size_n,
        {str(bucket): n for bucket, n in t.hist.items()},
    ]  # fmt: skip


def _cleaned(tallies: Mapping[K, Tally], clean: Callable[[K], K]) -> Iterable[tuple[K, Tally]]:
    """The tallies with their keys cleaned; keys that clean to the same key merged (a new Tally:
    the caller's are left alone)."""
    out: dict[K, Tally] = {}
    for raw, tally in tallies.items():
        key = clean(raw)
        seen = out.get(key)
        if seen is None:
            out[key] = tally
        else:
            merged = Tally()
            merged.merge(seen)
            merged.merge(tally)
            out[key] = merged
    return sorted(out.items())


def rollups_json(rollups: Rollups) -> str:
    """``rollups`` as the document :func:`write_rollups` reads (see the module)."""
    endpoints = _cleaned(rollups.endpoints, lambda k: (k[0], _clean(k[1]), _clean(k[2]), k[3]))
    consumers = _cleaned(rollups.consumers, lambda k: (k[0], _clean(k[1]), k[2]))
    labels: dict[str, tuple[str | None, str | None, int]] = {}
    for raw, (name, group, seen_ns) in sorted(rollups.labels.items(), key=lambda item: item[1][2]):
        cid = _clean(raw)
        seen = labels.get(cid)  # only when two ids clean to one: the later labels win
        labels[cid] = (
            _maybe(name) if name is not None else (seen[0] if seen else None),
            _maybe(group) if group is not None else (seen[1] if seen else None),
            seen_ns,
        )
    return dumps_text(
        {
            "e": [[*key, *_tally(tally)] for key, tally in endpoints],
            "c": [[*key, *_tally(tally)] for key, tally in consumers],
            "l": [[cid, *labels[cid]] for cid in sorted(labels)],
        }
    )


# One statement: the document is parsed once, one round trip. Every writer locks rows in one
# order: the endpoint minutes (the main statement), then the WITH's data-modifying statements,
# which PostgreSQL runs after it, last one first (ExecPostprocessPlan): the endpoint hours,
# the consumer minutes, the consumer hours, the labels.
_UPSERT = (
    "WITH d AS MATERIALIZED (SELECT %s::jsonb AS doc), "
    f"em AS MATERIALIZED ({_ENDPOINT_ROWS}), cm AS MATERIALIZED ({_CONSUMER_ROWS}), "
    f"l AS ({_UPSERT_LABELS}), ch AS ({_UPSERT_CONSUMER_HOURS}), c AS ({_UPSERT_CONSUMERS}), "
    f"eh AS ({_UPSERT_ENDPOINT_HOURS}) {_UPSERT_ENDPOINTS}"
)


def write_rollups(conn: psycopg.Connection[tuple[Any, ...]], document: str) -> None:
    """Add the rollups of ``document`` (:func:`rollups_json`) to the rollup tables, ``conn``
    in the batch's transaction."""
    conn.execute(_UPSERT, (document,))


def _add_rows(into: dict[tuple[Any, ...], list[Any]], rows: list[list[Any]], width: int) -> None:
    """Tally rows (key columns, then :func:`_tally`'s) added into ``into`` by key."""
    for row in rows:
        key = tuple(row[:width])
        seen = into.get(key)
        if seen is None:
            into[key] = row
            continue
        for i in range(width, width + 8):
            if i == width + 3:  # the duration sum travels as text (repr of a double)
                seen[i] = repr(float(seen[i]) + float(row[i]))
            else:
                seen[i] += row[i]
        hist = seen[width + 8]
        for bucket, n in row[width + 8].items():
            hist[bucket] = hist.get(bucket, 0) + n


def _first(value: str | None, otherwise: str | None) -> str | None:
    return otherwise if value is None else value


def combine_documents(header: str) -> str:
    """A batch's rollups line as one document: a merged batch (the sender joins batches that
    wait behind a slow database) carries a JSON array of its parts' documents, added up here,
    on the sender's thread, so that the batch still costs one upsert statement."""
    if not header.startswith("["):
        return header
    documents = loads_text(header)
    if len(documents) == 1:
        return dumps_text(documents[0])
    endpoints: dict[tuple[Any, ...], list[Any]] = {}
    consumers: dict[tuple[Any, ...], list[Any]] = {}
    labels: dict[str, list[Any]] = {}
    for document in documents:
        _add_rows(endpoints, document["e"], 4)
        _add_rows(consumers, document["c"], 3)
        for cid, name, group, seen_ns in document["l"]:
            seen = labels.get(cid)
            if seen is None:
                labels[cid] = [cid, name, group, seen_ns]
            elif seen_ns >= seen[3]:  # newer: its labels win, a null never erases
                labels[cid] = [cid, _first(name, seen[1]), _first(group, seen[2]), seen_ns]
            else:
                labels[cid] = [cid, _first(seen[1], name), _first(seen[2], group), seen[3]]
    return dumps_text(
        {
            "e": [endpoints[k] for k in sorted(endpoints)],
            "c": [consumers[k] for k in sorted(consumers)],
            "l": [labels[k] for k in sorted(labels)],
        }
    )
