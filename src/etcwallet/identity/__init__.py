"""Who is acting: customers, staff and outlets, sessions, second factors, roles and the audit log."""
