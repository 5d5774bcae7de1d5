"""How an ICE call failed, and whether trying again can help.

One class per verdict the uploader acts on (:class:`IceError` and its subclasses, each saying
``retryable``), and :func:`classify_error`, which sorts an error answer by its ``Code`` first
and its HTTP status second: some gateways answer throttling with HTTP **400**
(``Throttling``/``Throttling.User``; developer.aliyun.com/ask/128391 and /ask/571020) and an
unknown AccessKey with 404.
"""

from __future__ import annotations

from typing import Any


class IceError(Exception):
    """A failed ICE call. ``retryable`` tells the caller whether trying again can help.

    ``code``/``message``/``request_id`` are the service's (``None`` when the request never got
    an answer); ``status`` is the HTTP status (``None`` for transport failures).
    """

    retryable_default = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        status: int | None = None,
        action: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        #: seconds the service asked us to wait (``x-acs-retry-after``), None when it did not
        self.retry_after = retry_after
        self.code = code
        self.request_id = request_id
        self.status = status
        self.action = action
        self.retryable = self.retryable_default if retryable is None else retryable
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"{self.action}: " if self.action else ""]
        if self.code:
            parts.append(f"{self.code}: ")
        parts.append(self.message)
        if self.status is not None:
            parts.append(f" (HTTP {self.status})")
        if self.request_id:
            parts.append(f" [RequestId {self.request_id}]")
        return "".join(parts)


class IceThrottled(IceError):
    """Flow control (``Throttling*`` codes, HTTP 429): back off and retry."""

    retryable_default = True


class IceServerError(IceError):
    """5xx, or an answer that is not the JSON we expect: a transient service-side fault."""

    retryable_default = True


class IceTimeout(IceError):
    """No answer within the timeout. The call may still have taken effect server-side."""

    retryable_default = True


class IceConnectionError(IceError):
    """Could not connect, or the connection broke before a response (DNS, refused, reset)."""

    retryable_default = True


class IceCredentialsError(IceError):
    """The credentials provider raised (e.g. an STS refresh failed); retry later."""

    retryable_default = True


class IceAuthError(IceError):
    """Authentication/authorisation refused (bad key, bad signature, no permission, 401/403)."""


class IceClockSkew(IceAuthError):
    """``InvalidTimeStamp.*``: our clock is off by more than the 15 min the gateway allows.

    Retryable on purpose although it is an auth error: gateways without an RTC boot with a
    wrong clock and NTP fixes it later; nothing about the request itself is wrong.
    """

    retryable_default = True


class IceParameterError(IceError):
    """The request is wrong (``InvalidParameter*``, ``MissingParameter*``, 400): don't retry."""


class IceNotFound(IceParameterError):
    """The named search library / media does not exist (404, ``*NotExist*``/``*NotFound``)."""


class IceAlreadyExists(IceError):
    """The resource exists already (HTTP 409, ``*AlreadyExist*`` codes).

    For an insert retried after a timeout this usually means the first attempt succeeded;
    the caller decides whether that counts as success.
    """


_THROTTLING_STATUSES = frozenset({429})
_AUTH_CODE_PREFIXES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSecurityToken",
    "MissingSecurityToken",
    "Forbidden",
    "NoPermission",
    "InvalidAuthorization",
    "MissingAuthorization",
)
#: ``InvalidParameter*``, ``MissingParameter*`` and their relatives (``InvalidMediaId``, ...);
#: checked after the auth codes, which share the ``Invalid``/``Missing`` prefixes.
_PARAMETER_CODE_PREFIXES = ("Invalid", "Missing", "Illegal")
_SERVER_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "ServerError",
        "ServiceUnavailable",
        "ServiceUnavailableTemporary",
        "SerivceUnavailableTemporary",  # sic: spelled so in Alibaba Cloud's public code table
    }
)


def classify_error(
    status: int | None,
    code: str | None,
    message: str,
    *,
    request_id: str | None = None,
    action: str | None = None,
    retry_after: float | None = None,
) -> IceError:
    """The :class:`IceError` subclass for an error answer: by ``Code`` first, then by status.

    Code first because the status alone misleads: throttling arrives as HTTP 400 and an
    unknown AccessKey as 404. Order matters: specific codes before the broad prefixes.
    """
    c = code or ""
    kw: dict[str, Any] = {
        "code": code,
        "request_id": request_id,
        "status": status,
        "action": action,
        "retry_after": retry_after,
    }
    if "AlreadyExist" in c or status == 409:
        return IceAlreadyExists(message, **kw)
    if c.startswith("Throttling") or status in _THROTTLING_STATUSES:
        return IceThrottled(message, **kw)
    if c.startswith(("InvalidTimeStamp", "IllegalTimestamp")):
        return IceClockSkew(message, **kw)
    if c == "SignatureNonceUsed":
        # We send a fresh nonce per attempt, so a retry is a different request.
        return IceAuthError(message, retryable=True, **kw)
    if c.startswith(_AUTH_CODE_PREFIXES):
        return IceAuthError(message, **kw)
    if c.startswith(("InvalidAction", "InvalidVersion")):
        return IceParameterError(message, **kw)
    if "NotExist" in c or c.endswith("NotFound") or (status == 404 and not c):
        return IceNotFound(message, **kw)
    if c.startswith(_PARAMETER_CODE_PREFIXES):
        return IceParameterError(message, **kw)
    if c in _SERVER_CODES or (status is not None and status >= 500):
        return IceServerError(message, **kw)
    if status in (401, 403):
        return IceAuthError(message, **kw)
    if status == 404:
        return IceNotFound(message, **kw)
    if status is not None and 400 <= status < 500:
        return IceParameterError(message, **kw)
    return IceError(message, **kw)


def retry_after_seconds(value: str | None) -> float | None:
    """``x-acs-retry-after``: milliseconds to wait (what Alibaba Cloud's SDKs read it as);
    None when absent, not a number or not positive."""
    try:
        ms = float(value) if value is not None else 0.0
    except ValueError:
        return None
    return ms / 1000.0 if 0 < ms < float("inf") else None
