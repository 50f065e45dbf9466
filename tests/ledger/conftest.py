"""Fixtures shared by the ledger's test modules (defined with the builders in ``test_service``)."""

from tests.ledger.test_service import clock, funded, timed

__all__ = ["clock", "funded", "timed"]
