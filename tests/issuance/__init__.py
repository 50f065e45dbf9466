"""Tests of ETC issuance."""
