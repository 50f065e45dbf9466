"""Field types shared by identity's request bodies (customers', staff's and factors' schemas).

They live here, below every sub-package's schemas, so that any of them can use them without importing
another's schemas: customers' schemas import staff's, which import factors', so factors' schemas could not
import ``LoginTicket`` from customers' without a cycle.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from etcwallet.identity.validators import PASSWORD_MAX, PASSWORD_MIN, PASSWORD_PATTERN, PASSWORD_RULES

Password = Annotated[str, Field(min_length=1, max_length=128)]
"""A password being checked (any it could be: the rules are for new ones)."""

NewPassword = Annotated[
    str,
    Field(
        min_length=1,
        max_length=PASSWORD_MAX,
        json_schema_extra={
            "minLength": PASSWORD_MIN,
            "pattern": PASSWORD_PATTERN,
            "description": PASSWORD_RULES,
        },
    ),
]
"""A password being set: the policy in the schema as far as a pattern says it; the validator gives the reasons."""

LoginTicket = Annotated[str, Field(min_length=10, max_length=128)]
"""The ticket a password sign-in answers while a second factor is still owed."""
