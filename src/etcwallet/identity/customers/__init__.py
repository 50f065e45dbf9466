"""Customers (car owners): registration and sign-in by phone, profile and real-name data, the payment
password, freezing, and the accounts an outlet opens for them.

A customer is found by phone or by ID type and number (stored as a keyed hash, never in the clear); every
change is audited in the transaction that makes it.
"""
