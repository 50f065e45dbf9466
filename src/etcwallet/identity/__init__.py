"""Who is acting: customers, staff and outlets, their sessions and second factors, roles, and the audit log
as people read it.

Each concern is a sub-package laid out as a domain (``customers/``, ``staff/``, ``factors/``,
``sessions/``, ``audit/``); the leaves several of them share (``authz``, ``errors``, ``fields``,
``validators``, ``passwords``, ``lockout``, ``ratelimit``, ``sms``, ``housekeeping``, ``jobs``) sit here.
Other domains call the sub-packages' service functions (a customer found by phone or ID number, their
ledger accounts, a staff step-up) and never read identity's tables.
"""
