"""Sessions: opaque access and refresh tokens stored only as hashes, refresh-token families (a reused
refresh token ends the family), idle and absolute expiry, and the device a session was opened on."""
