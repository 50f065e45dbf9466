"""ETC issuance at outlets (issue 18): vehicle applications, user cards, OBU tags, activation, detection and
account services, done by an operator at an outlet for a customer who is there.

The domain keeps the platform's view of every card and tag (stock, issued, active, lost, cancelled...),
and ``issuance.chip`` speaks to the chips themselves. No database transaction is held open across an
exchange with a card or a tag: a step is persisted, the chip is spoken to, then the outcome is recorded.
"""
