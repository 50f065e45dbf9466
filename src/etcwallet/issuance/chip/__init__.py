"""The chip layer: ETC user cards and OBU tags as ``../shared/spec/etc-card.md`` describes them.

It knows bytes, not customers: APDUs and their answers, the card's files, the readers that carry APDUs
(the emulator or a PC/SC reader), and the host's side of the cryptography (``crypto``: MACs, TACs, key
diversification; ``keys``: the key service holding or fronting the issuer master keys; ``host``: a load and
a protected write, whatever reader carries them). The issuance services above it decide what to write.
"""
