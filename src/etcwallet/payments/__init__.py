"""Payments: how money reaches and leaves the platform from outside it.

The domain will hold the payment channels (bank card, credit card, Alipay, WeChat Pay, POS, cash), their
provider simulators, signed callbacks and statement reconciliation (DESIGN, "Layout"). Only bank cards
exist yet: the cards a customer binds, at a bank outlet during issuance (issue 18) or in the wallet
(issue 20), which both reuse this module.

A bank card's rules and invariants:

- A number is digits only (spaces and hyphens between groups are dropped), 13 to 19 long, passes the Luhn
  check, and starts with a prefix of the BIN table shipped with the package (``bin_table.csv``,
  illustrative configuration data), which names its bank, its type (debit or credit) and its length.
  Bound at a counter, it is typed twice and both must match. Each refusal is a 422 naming the field.
- The number is stored encrypted (AES-GCM, context ``bank_cards.number``), found by a keyed hash, and
  shown only masked; it never appears in clear in an answer, the audit log or a log line.
- One card, one customer: a live card (not unbound) belongs to one customer only (a partial unique
  index); binding it again for the same customer answers the card already bound, and for another
  customer is a 409. An unbound card may be bound again, as a new row; the old one stays as history.
- A customer with live cards has exactly one default card: the first card bound becomes it, setting
  another moves it, unbinding it passes it to the earliest bound card left (a partial unique index
  keeps two from ever existing).

There are no routes yet: issuance and the wallet add theirs, each behind its own gate (``bank_card.bind``
at the outlet, the customer's step-up in the wallet), and call :mod:`etcwallet.payments.service`.
"""
