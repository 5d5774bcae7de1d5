"""Where the agent's Alibaba Cloud credentials come from, and the bridge into oss2.

The agent never stores keys itself: it asks Alibaba Cloud's own credential chain
(``alibabacloud_credentials``) each time it signs a request, so an ECS RAM role, an OIDC role or
an STS token is refreshed by that library and a long-running agent never signs with an expired
token.  The chain, in order:

1. environment: ``ALIBABA_CLOUD_ACCESS_KEY_ID`` + ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``
   (+ ``ALIBABA_CLOUD_SECURITY_TOKEN`` for STS);
2. OIDC role (only when ``ALIBABA_CLOUD_ROLE_ARN``, ``ALIBABA_CLOUD_OIDC_PROVIDER_ARN`` and
   ``ALIBABA_CLOUD_OIDC_TOKEN_FILE`` are all set);
3. the Aliyun CLI profile ``~/.aliyun/config.json``;
4. the credentials file ``ALIBABA_CLOUD_CREDENTIALS_FILE`` or ``~/.alibabacloud/credentials.ini``;
5. the ECS RAM role from instance metadata (off with ``ALIBABA_CLOUD_ECS_METADATA_DISABLED=true``);
6. ``ALIBABA_CLOUD_CREDENTIALS_URI`` when set.

Caveat: ``alibabacloud_credentials`` reads those environment variables (and ``HOME``) once, when
it is first imported.  We import it lazily, on the first :meth:`CredentialSource.get`, so setting
the environment any time before the first upload works; changing it afterwards does not.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

import oss2

from agent.deliver.acs import Credentials

__all__ = [
    "CredentialSource",
    "Credentials",
    "CredentialsError",
    "OssCredentialsProvider",
    "StaticCredentialSource",
]

log = logging.getLogger(__name__)

#: What the chain tries, for the error message when it finds nothing (mirrors the module doc).
SOURCES_TRIED = (
    "environment variables ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
    "(plus ALIBABA_CLOUD_SECURITY_TOKEN for STS)",
    "OIDC role (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, "
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE; only when all three are set)",
    "Aliyun CLI profile ~/.aliyun/config.json",
    "credentials file ALIBABA_CLOUD_CREDENTIALS_FILE or ~/.alibabacloud/credentials.ini",
    "ECS RAM role from instance metadata (disable with ALIBABA_CLOUD_ECS_METADATA_DISABLED=true)",
    "ALIBABA_CLOUD_CREDENTIALS_URI (when set)",
)

# Anything in a provider's error text that looks like "secret=..." / "token: ..." is masked
# before it reaches our message: the chain's texts are diagnostics, not meant to carry keys.
_SECRETISH = re.compile(
    r"(?i)(secret|token|password|signature)(\w*)(['\"]?\s*[:=]\s*['\"]?)([^\s,'\"\]}]+)"
)


class CredentialsError(RuntimeError):
    """No usable credentials: says what was tried and how to configure one; never a secret."""


def _scrub(text: str, limit: int = 600) -> str:
    text = _SECRETISH.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}***", text)
    return text if len(text) <= limit else text[:limit] + "..."


def _adopt_library_logging() -> None:
    """Route ``alibabacloud_credentials``' log records through the agent's logging.

    At import, each of its modules adds its own stderr handler to the ``credentials`` logger
    (so every line comes out three times, multi-line tracebacks included, bypassing the agent's
    one-line journald format).  Dropping those handlers lets the records propagate to ours.
    """
    lib_log = logging.getLogger("credentials")
    for handler in list(lib_log.handlers):
        if type(handler) is logging.StreamHandler:
            lib_log.removeHandler(handler)
    lib_log.setLevel(logging.NOTSET)


def _half_set() -> str:
    """A hint when the environment holds half an AccessKey pair (the commonest slip)."""
    names = ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    have = [bool(os.environ.get(n)) for n in names]
    if have[0] == have[1]:
        return ""
    given, missing = names if have[0] else names[::-1]
    return f"{given} is set but {missing} is not: set both. "


class CredentialSource:
    """Credentials from Alibaba Cloud's default chain (see the module doc), fetched per call.

    ``get()`` is cheap after the first call: the chain remembers which provider worked, and
    providers with temporary credentials cache and refresh them in the background.  The client
    is created on first use, because creating it builds the chain (the ECS provider starts a
    refresh thread) and the library freezes the environment at import.
    """

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from alibabacloud_credentials.client import Client

                _adopt_library_logging()
                self._client = Client()
            return self._client

    def get(self) -> Credentials:
        """The current credentials; raises :class:`CredentialsError` when none can be found."""
        try:
            model = self._get_client().get_credential()
        except Exception as exc:  # the chain raises CredentialException, providers anything
            tried = "; ".join(f"({i}) {s}" for i, s in enumerate(SOURCES_TRIED, 1))
            raise CredentialsError(
                f"no Alibaba Cloud credentials found. {_half_set()}Tried, in order: "
                f"{tried}. Configure one of them, e.g. set ALIBABA_CLOUD_ACCESS_KEY_ID and "
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET in the agent's environment (systemd: "
                "EnvironmentFile=), or attach a RAM role to the ECS instance. "
                f"Chain said: {_scrub(str(exc))}"
            ) from None
        ak = model.access_key_id or ""
        sk = model.access_key_secret or ""
        if not ak or not sk:
            raise CredentialsError(
                f"credential provider {model.provider_name or model.type!r} returned an empty "
                "AccessKey ID or secret"
            )
        return Credentials(ak, sk, model.security_token or None)


class StaticCredentialSource(CredentialSource):
    """Fixed credentials, for tests and one-off tools (never refreshed)."""

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def get(self) -> Credentials:
        return self._credentials

    def __repr__(self) -> str:
        return f"StaticCredentialSource({self._credentials!r})"


class OssCredentialsProvider(oss2.credentials.CredentialsProvider):
    """oss2's provider interface over a :class:`CredentialSource`.

    oss2's V4 signer calls ``get_credentials()`` for every request, so asking the source each
    time means a refreshed STS token is used from the next request on.
    """

    def __init__(self, source: CredentialSource) -> None:
        self._source = source

    def get_credentials(self) -> oss2.credentials.Credentials:
        c = self._source.get()
        return oss2.credentials.Credentials(
            c.access_key_id, c.access_key_secret, c.security_token or ""
        )
