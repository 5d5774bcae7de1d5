"""What the cloud's answers mean for delivery: retry now, later, never, or pause everything.

A retryable failure (network, 5xx, throttling, timeouts) defers the clip with its own
exponential backoff and takes delivery *offline*. A wait the service asks for
(``x-acs-retry-after``, OSS's ``Retry-After``) is honoured. Rejected credentials, and errors that
concern the whole bucket or library (``NoSuchBucket``, a search library or index that does not
exist) *pause* delivery at `max_backoff` without failing clips: an operator fixes the cause and
the backlog must survive that. Any other error fails the clip with the service's message.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agent.deliver.credentials import CredentialsError
from agent.deliver.ice import IceAuthError, IceCredentialsError, IceThrottled
from agent.deliver.oss import OssError

#: OSS codes that concern the whole bucket, not one object: pause, do not fail clips one by one.
OSS_BUCKET_CODES = {"NoSuchBucket", "InvalidBucketName", "UserDisable"}
OSS_THROTTLING_CODES = {"SlowDown", "TooManyRequests", "QpsLimitExceeded"}
OSS_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "SecurityTokenExpired",
    "InvalidSecurityToken",
}
#: `offline_reason`s that are an outage (the cloud does not answer as it should); any other
#: reason is a pause an operator must act on. agent/service/status.py shows them apart.
OUTAGE = "cloud unreachable"
THROTTLED = "cloud is throttling"
CREDENTIALS_REJECTED = "credentials rejected"
MAX_SERVER_WAIT = 600.0  # s: the longest retry-after we honour (a garbled one must not stall us)


def backoff(attempts: int, cap: float, rng: random.Random) -> float:
    """Exponential (1 s, 2 s, 4 s ...) capped, with jitter so a fleet does not retry in step."""
    return min(cap, 2.0 ** max(attempts, 0)) * rng.uniform(0.5, 1.0)


def server_wait(exc: BaseException) -> float:
    """The wait the service asked for with its answer (s; 0 when none), at most MAX_SERVER_WAIT."""
    wait = getattr(exc, "retry_after", None)
    return min(float(wait), MAX_SERVER_WAIT) if wait and wait > 0 else 0.0


class Paused(Exception):
    """A cause that concerns the whole bucket or library: delivery pauses with `reason`
    (shown in status), no clip fails for it, and it is tried again at `max_backoff`."""

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        self.reason = reason
        self.cause = cause
        super().__init__(f"{reason}: {cause}" if cause is not None else reason)


def bucket_wide(exc: OssError, bucket: str) -> Paused | None:
    """The pause an OSS error calls for when it concerns the bucket, else None."""
    if exc.code in OSS_BUCKET_CODES:
        return Paused(f"bucket {bucket}: {exc.code}", exc)
    return None


@dataclass(frozen=True)
class Verdict:
    """What a failed step's error means."""

    retryable: bool  # False: the clip fails with the service's message
    paused: bool  # the cause is not the clip's: wait max_backoff, fail nothing
    reason: str  # why delivery is offline (status's offline_reason), when retryable
    wait: float  # s the service asked us to wait (0: none)


def judge(exc: Exception) -> Verdict:
    # Any 403 is "not allowed": a proxy's HTML page carries no OSS code, and failing
    # clips for it would need every one re-queued by hand once the cause is fixed.
    auth = isinstance(exc, (IceAuthError, IceCredentialsError, CredentialsError)) or (
        isinstance(exc, OssError) and (exc.code in OSS_AUTH_CODES or exc.status == 403)
    )
    paused = isinstance(exc, Paused) or auth
    if isinstance(exc, Paused):
        reason = exc.reason
    elif auth:
        reason = CREDENTIALS_REJECTED
    elif (
        isinstance(exc, IceThrottled)
        or getattr(exc, "code", "") in OSS_THROTTLING_CODES
        or getattr(exc, "status", None) == 429
    ):
        reason = THROTTLED
    else:
        reason = OUTAGE
    retryable = paused or getattr(exc, "retryable", False)
    return Verdict(retryable, paused, reason, server_wait(exc))
