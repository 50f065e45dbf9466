"""etcwallet: ETC issuance, the customer's wallet and toll clearing on one double-entry ledger."""

__version__ = "0.1.0"
