"""Second factors: TOTP, recovery codes and passkeys (WebAuthn), and the step-up that sensitive actions ask
for, shared by customers and staff."""
