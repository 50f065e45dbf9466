"""The audit log as people read it: chain verification and search, scoped and masked by who is asking.

Writing the log is the platform's (`etcwallet.platform.audit`): every domain appends in the transaction of
its change.
"""
