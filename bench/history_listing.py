#!/usr/bin/env python3
"""bench/history_listing.py: what one page of the request history costs SQLite, the way the
store asked for it before (every filter as `(? IS NULL OR ...)`, which keeps the planner off
the indexes) and the way it asks now (only the filters given). It runs the migration's
schema in memory with Python's own sqlite3, 200,000 requests from 1,000 apps; it measures
the SQL, not the gateway.

    python3 bench/history_listing.py
"""
import pathlib
import sqlite3
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
REQUESTS, APPS, RUNS = 200_000, 1_000, 50

BEFORE = (
    "SELECT * FROM qualification_requests WHERE (?1 IS NULL OR caller_app = ?1) "
    "AND (?2 IS NULL OR customer_id = ?2) AND (?3 IS NULL OR status = ?3) "
    "AND (?4 IS NULL OR created_ms >= ?4) "
    "AND (?5 IS NULL OR created_ms < ?5 OR (created_ms = ?5 AND id < ?6)) "
    "ORDER BY created_ms DESC, id DESC LIMIT ?7"
)
NOW = "SELECT * FROM qualification_requests WHERE caller_app = ?1 ORDER BY created_ms DESC, id DESC LIMIT ?2"


def per_page_ms(db, sql, args):
    start = time.perf_counter()
    for _ in range(RUNS):
        db.execute(sql, args).fetchall()
    return (time.perf_counter() - start) / RUNS * 1000


def main():
    db = sqlite3.connect(":memory:")
    db.executescript((ROOT / "migrations" / "0001_store.sql").read_text())
    db.executemany(
        "INSERT INTO qualification_requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            (str(uuid.uuid4()), "issuer", "subject", f"app-{i % APPS}", f"customer-{i % 5000}",
             "Education", None, None, None, "request", "correlation", "InReview", None, 201, i, i)
            for i in range(REQUESTS)
        ),
    )
    db.execute("UPDATE qualification_requests SET caller_app = 'rare-app' WHERE created_ms = 5")
    db.commit()
    print(f"SQLite {sqlite3.sqlite_version}, {REQUESTS:,} requests from {APPS:,} apps, a page of 50, mean of {RUNS}")
    for app, what in (("app-7", "an app with 200 requests"), ("rare-app", "an app with 1 request")):
        before = per_page_ms(db, BEFORE, (app, None, None, None, None, None, 51))
        now = per_page_ms(db, NOW, (app, 51))
        print(f"  {what}: before {before:.3f} ms, now {now:.3f} ms")


if __name__ == "__main__":
    main()
