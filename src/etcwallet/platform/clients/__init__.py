"""Machine clients: credentials for systems, not people.

Toll lanes and gantries send toll transactions, merchant terminals take payments, payment providers call
back with outcomes, road operators download their settlement. Each is a *client* of a kind
(:class:`~etcwallet.platform.clients.types.ClientKind`) holding *scopes*
(:class:`~etcwallet.platform.clients.types.Scope`) that its kind may hold (``KIND_SCOPES``); a machine
route admits the clients holding its one scope (``Depends(machine(Scope.X))``, :mod:`.gate`).

Rules and invariants:

- A secret is shown once, at creation (``etcwallet clients create``), and never stored in clear.
  Kinds that send bodies claiming money sign every request (HMAC-SHA256 over the method, the path and
  query, a timestamp, a nonce and the body's SHA-256: :mod:`.signing`); their secret is sealed with
  AES-256-GCM, since the server must recompute signatures. A road operator presents a bearer key, kept
  as a keyed hash only.
- A signed request is accepted once: its timestamp must be within ``WINDOW_SECONDS`` of the server's
  clock and its nonce unseen within the window (``machine_nonces``).
- Revocation is immediate in every process: each call reads its client.
- Every call is attributed: admitted calls are logged with the client's id and audited by the route's
  service as ``Actor("machine", client id, …)``; refusals are audited on their own and change nothing else.

Machine clients live in ``platform/`` rather than ``identity/``: identity is people (customers, staff,
their sessions and factors), while clients are infrastructure every money domain (tolling, payments,
wallet, clearing) admits through one gate.
"""
