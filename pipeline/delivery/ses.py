"""The Amazon SES delivery backend: SES API v2 `SendEmail` with the raw MIME content, through
boto3, which is imported only when a message is about to go (a run, `check` or `send
--dry-run` never loads it).

One API client per send, shared by its threads (boto3 clients are thread-safe; creating one
costs ~0.1 s). The account's maximum send rate and its daily quota are read from SES when the
first message goes and respected from then on. Every answer is sorted into the transport's
outcomes as SMTP's replies are; throttling is retried here with a short backoff, then handed
to the pool as TransportBusy (every thread pauses, no attempt is spent).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.core.errors import Problem
from pipeline.delivery.pool import RateLimit
from pipeline.delivery.ses_settings import SES_SCHEMA, SesSettings, ses_problems, ses_settings
from pipeline.delivery.transport import (
    Outcome,
    TransportBusy,
    TransportDown,
    TransportSetupError,
)

if TYPE_CHECKING:
    from pipeline.core.config import Config
    from pipeline.delivery.settings import Values

log = logging.getLogger("pipeline")
RETRIES = 3  # throttling answers retried here before the whole send pauses
BACKOFF = 0.25  # seconds before the first of those retries; doubles, with jitter
BUSY_WAIT = 2.0  # seconds the whole send pauses when throttling outlasts the retries
THROTTLING = {"TooManyRequestsException", "Throttling", "ThrottlingException",
              "LimitExceededException", "ServiceUnavailable", "ServiceUnavailableException",
              "SlowDown", "RequestLimitExceeded"}
CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
               "InvalidSignatureException", "IncompleteSignature", "ExpiredToken",
               "ExpiredTokenException", "MissingAuthenticationToken", "AccessDenied",
               "AccessDeniedException", "NotAuthorized", "InvalidAccessKeyId"}
# Refusals about the account or its settings: every message would get the same.
_PAUSED = "sending is paused for the account or the configuration set — see the SES console"
_NO_SET = "SES does not know the configuration set in this region — check ses.configuration_set"
ACCOUNT = {
    "MailFromDomainNotVerifiedException": "the custom MAIL FROM domain of the sending identity "
                                          "is not verified — fix its DNS records or turn it off",
    "AccountSuspendedException": "the SES account is suspended — see the SES console",
    "AccountSendingPausedException": _PAUSED, "SendingPausedException": _PAUSED,
    "ConfigurationSetSendingPausedException": _PAUSED,
    "ConfigurationSetDoesNotExist": _NO_SET, "ConfigurationSetDoesNotExistException": _NO_SET,
    "NotFoundException": _NO_SET,
}
# Words in a refusal that put it on the recipient's address rather than the message.
ADDRESS_WORDS = ("illegal address", "invalid address", "address is invalid",
                 "missing final '@domain'", "domain contains illegal", "local address contains")
CREDENTIALS_HINT = ("check the AWS credentials the job sees (AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the instance's role) and that "
                    "they may call ses:SendRawEmail")


class SesDown(TransportDown):
    """SES cannot be reached, or will take no more today: stop, try again later."""


class SesSetupError(TransportSetupError):
    """SES refuses us as configured (credentials, identity, account, settings)."""


def _error(exc: Exception) -> tuple[str, str, int]:
    """(code, message, HTTP status) of a botocore ClientError."""
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    error = response.get("Error", {})
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code, message = str(error.get("Code", "")), " ".join(str(error.get("Message", "")).split())
    if message.startswith("<"):  # a body botocore could not parse: XML (an auth error) or HTML
        found = dict(re.findall(r"<(Code|Message)>([^<]*)</", message))
        code, message = found.get("Code", code), found.get("Message", "")
    return code, message[:300], status


def _raise_if_setup(code: str, message: str, status: int, where: str,
                    account: bool = True) -> None:
    """SesSetupError for refused credentials and (with `account`) refusals of the account."""
    said = f"{code or status}{': ' + message if message else ''}"
    if code in CREDENTIALS or status in (401, 403):
        raise SesSetupError(f"{where} refused our AWS credentials ({said}) — {CREDENTIALS_HINT}")
    if account and code in ACCOUNT:
        raise SesSetupError(f"{where}: {ACCOUNT[code]} ({said})")


class Account:
    """What one send's transports share: the API client, the account's rate and what is
    left of its daily quota. Set up by the first transport that sends."""

    def __init__(self, settings: SesSettings) -> None:
        self.settings = settings
        self.where = f"Amazon SES in {settings.region}"
        self.lock = threading.Lock()
        self.client: Any = None
        self.limit = RateLimit(0)
        self.left: float | None = None  # recipients SES takes today; None: no daily cap

    def ready(self) -> Any:
        with self.lock:
            if self.client is None:
                client, session = self._connect()
                rate, self.left = self._quota(client, session)
                self.limit = RateLimit(rate)
                self.client = client
            return self.client

    def take(self, count: int) -> None:
        """Count `count` recipients against the daily quota; SesDown when it is used up."""
        with self.lock:
            if self.left is None:
                return
            if self.left < count:
                raise SesDown(f"{self.where}: the account's daily sending quota is used up; "
                              "the rest waits for a later send (or ask AWS for a larger quota)")
            self.left -= count

    def _connect(self) -> tuple[Any, Any]:
        import boto3
        from botocore.config import Config as BotoConfig

        s = self.settings
        # No retries inside botocore: a retried SendEmail after a lost answer could deliver
        # twice, and throttling is ours to pace (below, and by pausing the whole send).
        config = BotoConfig(connect_timeout=min(s.timeout, 10), read_timeout=s.timeout,
                            retries={"total_max_attempts": 1},
                            max_pool_connections=max(s.connections, 1))
        try:
            session = boto3.session.Session(region_name=s.region)
            return session.client("sesv2", config=config), session
        except Exception as exc:  # botocore: a profile that is not there, a bad endpoint URL
            raise SesSetupError(f"cannot set up the SES client: {exc}") from None

    def _quota(self, client: Any, session: Any) -> tuple[float, float | None]:
        """(messages per second, recipients left today or None), from SESv2 GetAccount or,
        where that is not offered (moto 5.2 lacks it) or not permitted, v1 GetSendQuota."""
        s = self.settings
        try:
            account = _call(client.get_account, self.where)
            if not account.get("SendingEnabled", True):
                raise SesSetupError(f"{self.where}: sending is disabled for the account "
                                    "(GetAccount: SendingEnabled is false) — see the SES console")
            quota, source = account.get("SendQuota", {}), "GetAccount"
        except _Refused as refused:
            log.info("send: SESv2 GetAccount answered %s; reading the quota with SES v1 "
                     "GetSendQuota instead", refused)
            v1 = session.client("ses", config=client.meta.config)
            try:
                quota, source = _call(v1.get_send_quota, self.where), "GetSendQuota"
            except _Refused as again:
                rate = s.rate or 1.0
                log.warning("send: cannot read the SES account's send rate (%s); sending at "
                            "%g messages a second — allow ses:GetAccount, or set ses.rate",
                            again, rate)
                return rate, None
        rate = float(quota.get("MaxSendRate") or 0) or 1.0
        most, sent = float(quota.get("Max24HourSend", -1)), float(quota.get("SentLast24Hours", 0))
        log.info("send: SES account (%s): %g messages a second, %s in 24 hours, %g sent",
                 source, rate, "no cap" if most < 0 else f"{most:g}", sent)
        return rate, None if most < 0 else max(most - sent, 0.0)


class _Refused(Exception):
    """SES answered an account call with an error that is not about our setup."""


def _call(method: Callable[[], dict[str, Any]], where: str) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    from botocore.parsers import ResponseParserError

    try:
        return method()
    except ResponseParserError:  # not SES answering (a proxy's page, or no such API there)
        raise _Refused("an answer that is not SES's") from None
    except ClientError as exc:
        code, message, status = _error(exc)
        if code not in ("AccessDenied", "AccessDeniedException"):  # no leave to read: go on
            _raise_if_setup(code, message, status, where, account=False)
        raise _Refused(f"{code or status} {message}".strip()) from None
    except NoCredentialsError:
        raise SesSetupError(f"{where}: no AWS credentials found — {CREDENTIALS_HINT}") from None
    except BotoCoreError as exc:
        _raise_transport(exc, where)
        raise SesDown(f"cannot reach {where}: {exc}") from None


def _raise_transport(exc: Exception, where: str) -> None:
    """Errors of the way to SES rather than of a message (raised), before any was sent."""
    from botocore.exceptions import (
        ConnectTimeoutError,
        CredentialRetrievalError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError | ProfileNotFound |
                  CredentialRetrievalError):
        raise SesSetupError(f"{where}: {exc} — {CREDENTIALS_HINT}") from None
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        raise SesDown(f"cannot reach {where}: {exc}") from None


class SesTransport:
    """Hands messages to SES, one `SendEmail` call each, on the send's shared client."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.settings = account.settings

    def send(self, sender: str, recipients: Sequence[str], data: bytes) -> Outcome:
        """Hand one message to SES. Raises SesDown, SesSetupError or TransportBusy."""
        if not all(r.isascii() for r in recipients):
            return Outcome("failed", "SES does not accept non-ASCII addresses (no SMTPUTF8)")
        client = self.account.ready()
        self.account.take(len(recipients))
        request: dict[str, Any] = {
            "FromEmailAddress": self.settings.from_address,
            "FeedbackForwardingEmailAddress": sender,
            "Destination": {"ToAddresses": list(recipients)},
            "Content": {"Raw": {"Data": data}},
        }
        if self.settings.configuration_set:
            request["ConfigurationSetName"] = self.settings.configuration_set
        for attempt in range(RETRIES + 1):
            if attempt:  # jitter: threads throttled together do not retry in step
                time.sleep(BACKOFF * 2 ** (attempt - 1) * (0.5 + random.random()))
            self.account.limit.wait()
            outcome, throttled = self._attempt(client, request)
            if outcome is not None:
                return outcome
        raise TransportBusy(f"{self.account.where} is throttling us ({throttled})", BUSY_WAIT)

    def _attempt(self, client: Any, request: dict[str, Any]) -> tuple[Outcome | None, str]:
        """(the outcome, "") or (None, why) when SES throttled the call."""
        from botocore.exceptions import BotoCoreError, ClientError
        from botocore.parsers import ResponseParserError

        where = self.account.where
        try:
            response = client.send_email(**request)
        except ResponseParserError:  # an answer we cannot read: it may have been taken
            return Outcome("deferred", f"an unreadable answer from {where}"), ""
        except ClientError as exc:
            code, message, status = _error(exc)
            if code in THROTTLING or status in (429, 503):
                if "daily" in message.lower():  # the 24-hour quota: no use trying today
                    raise SesDown(f"{where}: {message} — the rest waits for a later send"
                                  ) from None
                return None, f"{code or status}: {message}" if message else code
            _raise_if_setup(code, message, status, where)
            return _refusal(code, message, status, where), ""
        except BotoCoreError as exc:
            _raise_transport(exc, where)
            # Read timeouts, closed connections: the request may have arrived and been taken.
            return Outcome("deferred", f"no answer from {where}: {exc}"), ""
        return Outcome("sent", f"accepted by SES: MessageId {response['MessageId']}"), ""

    def close(self) -> None:
        """The client is the send's, not this transport's: nothing to release."""


def _refusal(code: str, message: str, status: int, where: str) -> Outcome:
    reply = f"SES {code or status}: {message}" if message else f"SES {code or status}"
    text = message.lower()
    if code == "MessageRejected" and ("not verified" in text or "authority" in text):
        # The sender (or, in the sandbox, each recipient) is not a verified identity: every
        # message would be refused alike, so stop rather than fail them all.
        raise SesSetupError(f"{where} refused the message: {message} — verify the sending "
                            "identity (the domain or address of email.from) in this region; "
                            "a sandboxed account may send only to verified addresses")
    if "length" in text and ("message" in text or "size" in text):
        raise SesSetupError(f"{where} refused the message as too large: {message} — the "
                            "digest is over SES's size limit (40 MB)")
    if status >= 500 or status == 0:
        return Outcome("deferred", reply)
    return Outcome("failed", reply, bouncing=any(word in text for word in ADDRESS_WORDS))


class SesBackend:
    """Amazon SES as a delivery backend ([delivery] backend = "ses")."""

    name = "ses"
    schema: ClassVar[Mapping[str, Mapping[str, object]]] = {"ses": SES_SCHEMA}

    def settings(self, values: Values, config: Config) -> SesSettings:
        return ses_settings(values, config)

    def check(self, settings: SesSettings, config: Config) -> list[Problem]:
        return ses_problems(settings, config)

    def transports(self, settings: SesSettings) -> Callable[[], SesTransport]:
        account = Account(settings)
        return lambda: SesTransport(account)


BACKEND = SesBackend()
