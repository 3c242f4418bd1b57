#!/usr/bin/env python3
"""bench/wal_frames.py: how many WAL frames (4 KiB pages written) a POST costs SQLite, by
schema variant and by how many POSTs share one commit. Each POST is the store's two writes
(the request, its first event and the watch upsert; then its answer and its next event),
for customers taken in turn from 8,192, as bench/run's load does. It runs the migration's
schema on a file in a temporary directory with Python's own sqlite3 (WAL, synchronous
NORMAL), 150,000 POSTs per variant, counting frames over the last 50,000 (once the tables
are past any cache); it measures the SQL, not the gateway.

    python3 bench/wal_frames.py            # the schema as shipped, 4 to 32 POSTs a commit
    python3 bench/wal_frames.py variants   # also WITHOUT ROWID tables, a narrower index

2026-12-03 (1 min): frames per POST, the schema as shipped: 5.05 (4 POSTs a commit), 3.75 (8),
2.92 (16), 2.36 (32). At 8 a commit: WITHOUT ROWID for the request, event and watch tables
4.81 (fewer of the wide request rows fit a page), the by-customer index without its status
column 3.67, both 4.70.
"""
import pathlib
import random
import sqlite3
import sys
import tempfile
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
POSTS, MEASURED, CUSTOMERS = 150_000, 50_000, 8_192

# The writer thread's statements (src/store/requests.rs: INSERT_REQUEST, INSERT_EVENT,
# SETTLE_REQUEST; src/store/watch.rs: schedule_customer_statement), numbered as SQLite reads
# them and with the bench's constant columns written in: keep them in step.

INSERT_REQUEST = (
    "INSERT INTO qualification_requests (id, caller_issuer, caller_subject, caller_app, "
    "customer_id, qualification, education_segment, website, validation_code_masked, "
    "ms_request_id, correlation_id, status, status_reason, http_status, created_ms, updated_ms) "
    "VALUES (?1, 'https://bench.example/issuer', 'bench-caller', 'bench-app', ?2, 'Education', "
    "'HigherEducation', 'https://school.example.edu', NULL, ?3, ?4, 'Submitted', NULL, NULL, ?5, ?5)"
)
INSERT_EVENT = (
    "INSERT INTO qualification_request_events (request_id, seq, status, reason, at_ms) "
    "SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, NULL, ?3 FROM qualification_request_events "
    "WHERE request_id = ?1"
)
SCHEDULE_CUSTOMER = (
    "INSERT INTO watches (customer_id, polls, next_poll_ms, lease_owner, lease_until_ms, created_ms) "
    "VALUES (?1, 0, ?2, NULL, 0, ?3) "
    "ON CONFLICT (customer_id) DO UPDATE SET polls = 0, next_poll_ms = excluded.next_poll_ms"
)
SETTLE = (
    "UPDATE qualification_requests SET status = 'InReview', status_reason = NULL, "
    "http_status = 201, updated_ms = ?1 WHERE id = ?2 AND status = 'Submitted'"
)


def schema(variant):
    sql = (ROOT / "migrations" / "0001_store.sql").read_text()
    if variant in ("without-rowid", "both"):
        for table_end in (
            "    updated_ms BIGINT NOT NULL\n);",
            "    PRIMARY KEY (request_id, seq)\n);",
            "    created_ms BIGINT NOT NULL\n);\nCREATE INDEX watches_due",
        ):
            assert table_end in sql, table_end
            sql = sql.replace(table_end, table_end.replace(");", ") WITHOUT ROWID;", 1))
    if variant in ("narrow-index", "both"):
        assert "(customer_id, status);" in sql
        sql = sql.replace("(customer_id, status);", "(customer_id);")
    return sql


def uuid7(ms, rng):
    bits = rng.getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((bits >> 62) << 64) | (0b10 << 62) | (bits & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def frames_per_post(variant, per_commit):
    rng = random.Random(1)
    customers = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(CUSTOMERS)]
    with tempfile.TemporaryDirectory() as directory:
        db = sqlite3.connect(f"{directory}/store.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.executescript(schema(variant))
        now, posted, frames, counted = 1_760_000_000_000, 0, 0, 0
        for _ in range(POSTS // per_commit):
            db.execute("BEGIN IMMEDIATE")
            ids = []
            for _ in range(per_commit):
                now += 1
                request = uuid7(now, rng)
                ids.append(request)
                customer = customers[posted % CUSTOMERS]
                posted += 1
                db.execute(INSERT_REQUEST, (request, customer, str(uuid.uuid4()), str(uuid.uuid4()), now))
                db.execute(INSERT_EVENT, (request, "Submitted", now))
                db.execute(SCHEDULE_CUSTOMER, (customer, now + 120_000, now))
            for request in ids:
                db.execute(SETTLE, (now, request))
                db.execute(INSERT_EVENT, (request, "InReview", now))
            db.execute("COMMIT")
            # The WAL's frames so far, then start it over: each count is one stretch's.
            if posted % (per_commit * 250) == 0:
                _, written, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                if posted > POSTS - MEASURED:
                    frames += written
                    counted += per_commit * 250
        db.close()
    return frames / counted


def main():
    runs = [("as shipped", per_commit) for per_commit in (4, 8, 16, 32)]
    if sys.argv[1:] == ["variants"]:
        runs += [(variant, 8) for variant in ("without-rowid", "narrow-index", "both")]
    print("| schema | POSTs a commit | WAL frames per POST |\n|---|---:|---:|")
    for variant, per_commit in runs:
        print(f"| {variant} | {per_commit} | {frames_per_post(variant, per_commit):.2f} |", flush=True)


if __name__ == "__main__":
    main()
