"""Prometheus metrics shared by the domains; served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter("etcw_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_SECONDS = Histogram("etcw_http_request_seconds", "HTTP request latency", ["method", "route"])
LEDGER_TRANSFERS = Counter("etcw_ledger_transfers_total", "Transfers the ledger decided", ["outcome"])
LEDGER_BATCH_SIZE = Histogram(
    "etcw_ledger_batch_size",
    "Transfers per ledger transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 256, 1024, 8000),
)
LEDGER_BATCH_SECONDS = Histogram("etcw_ledger_batch_seconds", "Time to apply one ledger transaction")
