"""The platform under every money domain: the unit of work, the audit log, events with an outbox, jobs,
machine clients and idempotency keys.

``core`` holds the leaf utilities (configuration, the database server and pool, errors, money, crypto);
``platform`` holds the transactional machinery a domain step runs on, built once so that every domain
copies one pattern (DESIGN, "A domain package" and "How a domain moves money").
"""
