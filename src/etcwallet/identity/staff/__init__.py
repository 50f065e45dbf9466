"""Staff and outlets: accounts, roles and placements, password plus TOTP sign-in, and changes that need a
second administrator's approval (four eyes)."""
