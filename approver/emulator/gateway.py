"""The API Gateway's AK/SK check, as Huawei Cloud's gateway does it in front of VPCEP.

The signature is recomputed from what actually arrived (method, raw path, raw query string,
the signed headers' received values, body bytes) with the project's own canonical-request code
(``approver.cloud.signer``) and compared in constant time. Refusals are 401 ``APIGW.0301`` with
the gateway's sub-messages (vpcep-api.md §6.4 and Huawei's APIG FAQ "Common Errors Related to
IAM Authentication Information"):

=========================================  ====================================================
no ``Authorization`` (and no token)         ``x-auth-token not found``
an ``X-Auth-Token`` instead                 ``decrypt token fail`` (token auth is not modelled)
unparseable ``Authorization``               ``verify aksk signature fail, ...`` (wording guessed)
unknown AK                                  ``Get secretKey failed,ak:<AK>,err:ak not exist``
``X-Sdk-Date`` missing, unsigned, garbled   ``verify aksk signature fail, ...`` (wording guessed)
``X-Sdk-Date`` more than 15 min off         ``calc ak sk signature fail:signature expired``
temporary AK without its signed token       ``verify aksk signature fail, ...`` (wording guessed)
wrong signature                             ``verify aksk signature fail,canonicalRequest:<creq>``
                                            (newlines of the canonical request shown as ``|``)
AK locked                                   ``AK access failed to reach the limit,forbidden``
=========================================  ====================================================

Lockout: after ``lockout_after`` consecutive failed authentications of one AK (Huawei: more than
five), every request with that AK is refused for ``lockout_seconds`` of emulator time, valid or
not; a success resets the count. The echoed canonical request holds every signed header value,
``X-Security-Token`` included, as the real gateway's does: clients must redact it before logging.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from approver.cloud.signer import (
    DATE_FORMAT,
    canonical_request,
    parse_authorization,
    signature,
    string_to_sign,
)
from approver.emulator.scenario import CredentialSpec
from approver.emulator.wire import EmulatorError, Incoming, auth_error

MAX_SKEW: Final = timedelta(minutes=15)


class Gateway:
    """Authenticates requests against the scenario's credentials; holds the lockout state.

    Not thread-safe by itself: the emulator calls it under its state lock.
    """

    def __init__(
        self,
        credentials: Iterable[CredentialSpec],
        *,
        lockout_after: int = 5,
        lockout_seconds: float = 300.0,
    ) -> None:
        self._credentials = {c.ak: c for c in credentials}
        self._lockout_after = lockout_after
        self._lockout = timedelta(seconds=lockout_seconds)
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, datetime] = {}

    def authenticate(self, request: Incoming, now: datetime) -> CredentialSpec:
        """The credential that signed ``request``, or an ``EmulatorError`` (401 APIGW.0301)."""
        header = request.header("authorization")
        if header is None:
            if request.header("x-auth-token"):
                raise auth_error("decrypt token fail")
            raise auth_error("x-auth-token not found")
        parsed = parse_authorization(header)
        if parsed is None:
            raise auth_error("verify aksk signature fail, invalid Authorization header")
        credential = self._credentials.get(parsed.ak)
        if credential is None:
            raise auth_error(f"Get secretKey failed,ak:{parsed.ak},err:ak not exist")
        if self._is_locked(parsed.ak, now):
            raise auth_error("AK access failed to reach the limit,forbidden")
        try:
            self._verify(credential, parsed.signed_headers, parsed.signature, request, now)
        except EmulatorError:
            self._record_failure(parsed.ak, now)
            raise
        self._failures.pop(parsed.ak, None)
        return credential

    def _verify(
        self,
        credential: CredentialSpec,
        signed: list[str],
        claimed: str,
        request: Incoming,
        now: datetime,
    ) -> None:
        date = request.header("x-sdk-date")
        if date is None or "x-sdk-date" not in signed:
            raise auth_error("verify aksk signature fail, X-Sdk-Date is missing or not signed")
        try:
            sent_at = datetime.strptime(date.strip(), DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise auth_error("verify aksk signature fail, invalid X-Sdk-Date") from None
        if abs(now - sent_at) > MAX_SKEW:
            raise auth_error("calc ak sk signature fail:signature expired")
        token = request.header("x-security-token")
        if credential.security_token is None:
            if token is not None:
                raise auth_error("verify aksk signature fail, unexpected X-Security-Token")
        elif (
            token is None
            or "x-security-token" not in signed
            or not hmac.compare_digest(token.strip().encode(), credential.security_token.encode())
        ):
            raise auth_error("verify aksk signature fail, invalid X-Security-Token")
        creq = canonical_request(
            request.method, request.path, request.query, request.headers, signed, request.body
        )
        expected = signature(credential.sk, string_to_sign(creq, date.strip()))
        if not hmac.compare_digest(expected.encode(), claimed.encode()):
            echoed = creq.replace("\n", "|")
            raise auth_error(f"verify aksk signature fail,canonicalRequest:{echoed}")

    def _is_locked(self, ak: str, now: datetime) -> bool:
        until = self._locked_until.get(ak)
        if until is None:
            return False
        if now < until:
            return True
        del self._locked_until[ak]
        self._failures.pop(ak, None)
        return False

    def _record_failure(self, ak: str, now: datetime) -> None:
        count = self._failures.get(ak, 0) + 1
        self._failures[ak] = count
        if self._lockout_after and count >= self._lockout_after:
            self._locked_until[ak] = now + self._lockout
