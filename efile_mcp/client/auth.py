"""Moved: sign-in is `client.signin`, the renewing token `client.tokens`, region discovery `client.center`.

Kept only so that code written against the old module keeps importing while it is updated.
"""

from __future__ import annotations

from .center import Region, RegionLocator
from .signin import (
    AccessKeyCredentials,
    AcClient,
    Credentials,
    PasswordCredentials,
    aksk_message,
    aksk_signature,
    choose_region,
    token_claims,
    token_cluster_id,
    token_expiry,
)
from .tokens import SignedInToken

__all__ = [
    "AcClient",
    "AccessKeyCredentials",
    "Credentials",
    "PasswordCredentials",
    "Region",
    "RegionLocator",
    "SignedInToken",
    "aksk_message",
    "aksk_signature",
    "choose_region",
    "token_claims",
    "token_cluster_id",
    "token_expiry",
]
