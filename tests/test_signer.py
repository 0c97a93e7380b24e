"""SDK-HMAC-SHA256 signing: known answers from the official SDK, the SDK itself as a referee
(property test), a round trip through httpx with server-side verification, and secrecy of
credentials in reprs.

The vectors live in ``../shared/reference/sign_vectors.json`` (or ``$VPCEP_SHARED_DIR``); CI
always has them, so a missing file is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approver.cloud import signer
from approver.cloud.signer import Credentials, SignerAuth

ALGORITHM = "SDK-HMAC-SHA256"
VECTOR_DATE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)  # 20240102T030405Z
MISSING = "sign_vectors.json not found"


def shared_dir() -> Path:
    """``$VPCEP_SHARED_DIR`` if set, else ``shared/`` next to the repository root."""
    env = os.environ.get("VPCEP_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared"


# A copy of the official signer's vectors ships with the tests so a clone alone can run them;
# ../shared/ (or $VPCEP_SHARED_DIR), when present, is preferred as the source of truth.
_SHARED_VECTORS = shared_dir() / "reference" / "sign_vectors.json"
VECTORS_FILE = (
    _SHARED_VECTORS
    if _SHARED_VECTORS.exists()
    else Path(__file__).resolve().parent / "data" / "sign_vectors.json"
)


@cache
def _load() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data


def vectors_file() -> dict[str, Any]:
    data = _load()
    if data is None:
        pytest.fail(f"{VECTORS_FILE} is missing (set VPCEP_SHARED_DIR to the shared/ directory)")
    return data


def _sha256_names() -> list[str]:
    data = _load()
    if data is None:
        return [MISSING]  # collected, and then failed by vectors_file()
    return [v["name"] for v in data["vectors"] if v["algorithm"] == ALGORITHM]


def vector(name: str) -> dict[str, Any]:
    for v in vectors_file()["vectors"]:
        if v["name"] == name:
            return dict(v)
    pytest.fail(f"no vector {name!r}")


def body_bytes(body: str | None) -> bytes:
    return body.encode("utf-8") if body is not None else b""


def credentials_of(v: dict[str, Any]) -> Credentials:
    return Credentials(v["ak"], v["sk"], v.get("security_token"))


def recompute(method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """Canonical request and string-to-sign, rebuilt from a signed request (as a server would)."""
    parsed = signer.parse_authorization(headers["Authorization"])
    assert parsed is not None
    parts = urlsplit(url)
    rest = {k: v for k, v in headers.items() if k != "Authorization"}
    creq = signer.canonical_request(
        method, parts.path, parts.query, rest, parsed.signed_headers, body
    )
    return creq, signer.string_to_sign(creq, headers["X-Sdk-Date"])


# --------------------------------------------------------------------------- known answers


def test_vectors_file_has_the_sha256_vectors() -> None:
    """The shared vectors file exists and holds the 14 SDK-HMAC-SHA256 vectors, token included."""
    names = [v["name"] for v in vectors_file()["vectors"] if v["algorithm"] == ALGORITHM]
    assert len(names) == 14
    assert "temporary_aksk_security_token" in names
    assert len(vectors_file()["client_end_to_end"]) == 2


@pytest.mark.parametrize("name", _sha256_names())
def test_sign_reproduces_official_vector(name: str) -> None:
    """build_url + sign give the SDK's URL, header set, Authorization, canonical request and STS."""
    v = vector(name)
    base = f"https://{v['host']}"
    url = signer.build_url(base, v["path"], [tuple(p) for p in v["query_params"]])
    assert url == v["url"]

    body = body_bytes(v["body"])
    if v["body_hash_hex"] is not None:
        assert signer.payload_hash(v["headers_given"], body) == v["body_hash_hex"]
    # A "now" far from the vector's date: the given X-Sdk-Date header must win.
    out = signer.sign(
        v["method"],
        url,
        v["headers_given"],
        body,
        credentials_of(v),
        v["project_id"],
        VECTOR_DATE + timedelta(days=400),
    )
    assert out["Authorization"] == v["expected_authorization"]
    assert out == v["expected_headers"]

    parsed = signer.parse_authorization(out["Authorization"])
    assert parsed is not None
    assert parsed.signed_headers == v["signed_headers"]
    creq, sts = recompute(v["method"], url, out, body)
    assert creq == v["canonical_request"]
    assert sts == v["string_to_sign"]


@pytest.mark.parametrize("name", _sha256_names())
def test_sign_without_date_header_uses_now(name: str) -> None:
    """Without an X-Sdk-Date header the date comes from ``now`` (any zone) and signs the same."""
    v = vector(name)
    headers = {k: val for k, val in v["headers_given"].items() if k != "X-Sdk-Date"}
    now = VECTOR_DATE.astimezone(timezone(timedelta(hours=8)))
    out = signer.sign(
        v["method"],
        v["url"],
        headers,
        body_bytes(v["body"]),
        credentials_of(v),
        v["project_id"],
        now,
    )
    assert out["X-Sdk-Date"] == v["x_sdk_date"]
    assert out["Authorization"] == v["expected_authorization"]


def test_naive_now_is_taken_as_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """A naive ``now`` (as from utcnow()) is UTC, whatever the host's local timezone."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        assert signer.format_date(datetime(2024, 1, 2, 3, 4, 5)) == "20240102T030405Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_canonical_request_from_unstripped_received_headers() -> None:
    """Server side: canonical_request strips raw header values and skips unsigned ones itself."""
    v = vector("all_headers_signed_except_underscore")
    received = {
        **v["headers_given"],  # "X-Custom": "  padded value  ", "X_Not_Signed": ...
        "X-Project-Id": f" {v['project_id']}\t",
        "Host": v["host"],
        "Accept-Encoding": "gzip",  # added by the HTTP library, not signed
    }
    creq = signer.canonical_request(
        v["method"], urlsplit(v["url"]).path, "", received, v["signed_headers"], b""
    )
    assert creq == v["canonical_request"]


def test_path_with_and_without_trailing_slash_sign_alike() -> None:
    """/x and /x/ have one canonical URI, so one signature, but are sent as given."""
    a, b = vector("path_without_trailing_slash"), vector("path_with_trailing_slash")
    assert a["url"] != b["url"]
    assert a["expected_authorization"] == b["expected_authorization"]
    assert signer.canonical_uri(urlsplit(a["url"]).path) == signer.canonical_uri(
        urlsplit(b["url"]).path
    )


def test_tampered_vector_input_changes_the_signature() -> None:
    """Changing one byte of the body, a query value or the SK gives a different signature."""
    v = vector("post_accept_json_body_sdk_serialization")
    creds, body = credentials_of(v), body_bytes(v["body"])
    good = signer.sign(
        v["method"], v["url"], v["headers_given"], body, creds, v["project_id"], VECTOR_DATE
    )
    assert good["Authorization"] == v["expected_authorization"]
    variants = [
        (v["url"], body.replace(b"receive", b"reject"), creds),
        (v["url"] + "?x=1", body, creds),
        (v["url"], body, Credentials(v["ak"], v["sk"] + "x")),
    ]
    for url, b, c in variants:
        out = signer.sign(v["method"], url, v["headers_given"], b, c, v["project_id"], VECTOR_DATE)
        assert out["Authorization"] != good["Authorization"]


def _end_to_end_ids() -> list[str]:
    data = _load()
    if data is None:
        return [MISSING]
    return [e["operation"] for e in data["client_end_to_end"]]


@pytest.mark.parametrize("operation", _end_to_end_ids())
def test_sign_reproduces_official_client_wire(operation: str) -> None:
    """The real VpcepClient's wire request (User-Agent signed) is reproduced byte for byte."""
    data = vectors_file()
    entry = next((e for e in data["client_end_to_end"] if e["operation"] == operation), None)
    assert entry is not None, operation
    wire = entry["wire"]
    ref = data["vectors"][0]
    parts = urlsplit(wire["url"])
    # Query pairs given in reverse order: build_url must sort them as the SDK does.
    query = list(reversed(signer.parse_query(parts.query)))
    url = signer.build_url(f"{parts.scheme}://{parts.netloc}", parts.path, query)
    assert url == wire["url"]
    given = {
        k: v
        for k, v in wire["headers"].items()
        if k in ("Content-Type", "X-Sdk-Date", "User-Agent")
    }
    out = signer.sign(
        wire["method"],
        url,
        given,
        body_bytes(wire["body"]),
        Credentials(ref["ak"], ref["sk"]),
        ref["project_id"],
        VECTOR_DATE + timedelta(hours=1),
    )
    assert "user-agent" in out["Authorization"].split("SignedHeaders=")[1]
    assert out["Authorization"] == wire["headers"]["Authorization"]
    assert out == wire["headers"]


# ------------------------------------------------------------- the official SDK as referee

HOSTS = (
    "vpcep.cn-north-4.myhuaweicloud.com",
    "127.0.0.1:8443",
    "vpcep.eu-west-101.myhuaweicloud.eu",
)
RESERVED = ":/?#[]@!$&'()*+,;=% ~-._"
text_chars = st.characters(
    min_codepoint=0x20, max_codepoint=0x2FFF, categories=("L", "N", "P", "S", "Zs")
) | st.sampled_from(RESERVED + "éü服务測試🙂")
texts = st.text(text_chars, max_size=12)
ascii_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@st.composite
def paths(draw: st.DrawFn) -> str:
    """A resource path as the SDK builds it: each segment quote(str(v), safe='')."""
    segments = draw(st.lists(texts, max_size=5))
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    if segments and draw(st.booleans()):
        path += "/"
    return path


keys = st.sampled_from(["limit", "status", "id", "Zeta", "ID", "marker_id", "a b", "k/&="]) | texts


@st.composite
def queries(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Query pairs, some keys repeated with other values (sorted by value), values maybe empty."""
    pairs = draw(st.lists(st.tuples(keys, texts | st.just("")), max_size=6))
    if pairs:
        for key, _ in draw(st.lists(st.sampled_from(pairs), max_size=3)):
            pairs.append((key, draw(texts)))
    return draw(st.permutations(pairs))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
bodies = st.one_of(
    st.none(),
    st.builds(
        lambda obj, ascii_, compact: json.dumps(
            obj, ensure_ascii=ascii_, separators=(",", ":") if compact else None
        ).encode("utf-8"),
        st.dictionaries(texts, json_values, max_size=4),
        st.booleans(),
        st.booleans(),
    ),
)
content_types = st.sampled_from(
    [None, "application/json", "application/json;charset=utf-8", "text/plain", "application/bson"]
)
extra_headers = st.dictionaries(
    st.sampled_from(["User-Agent", "X-Custom", "X_Underscore", "X-Request-Id", "Accept"]),
    ascii_values,
    max_size=3,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    host=st.sampled_from(HOSTS),
    path=paths(),
    query=queries(),
    body=bodies,
    content_type=content_types,
    extra=extra_headers,
    token=st.none()
    | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    project_id=st.sampled_from([None, "0a1b2c3d4e5f60718293a4b5c6d7e8f9"]),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    ),
    date_from_header=st.booleans(),
)
def test_sign_matches_official_sdk(
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes | None,
    content_type: str | None,
    extra: dict[str, str],
    token: str | None,
    project_id: str | None,
    when: datetime,
    date_from_header: bool,
) -> None:
    """For any request, our Authorization, URL and header set equal the official SDK signer's."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest

    ak, sk = "HPUAEXAMPLEAK0000001", "ExampleSecretKey0123456789abcdefghijKLMN"
    sdk_date = when.strftime("%Y%m%dT%H%M%SZ")
    headers = dict(extra)
    if content_type is not None:
        headers["Content-Type"] = content_type

    sdk_creds = BasicCredentials(ak, sk, project_id)
    if token is not None:
        sdk_creds = sdk_creds.with_security_token(token)
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params={**headers, "X-Sdk-Date": sdk_date},
        body=body,
    )
    sdk_creds.sign_request(request)
    theirs = dict(request.header_params)

    url = signer.build_url(f"https://{host}", path, query)
    assert url == request.url
    if date_from_header:
        ours_given, now = (
            {**headers, "X-Sdk-Date": sdk_date},
            datetime(1999, 1, 1, tzinfo=UTC),
        )
    else:  # the date from the clock, given in another timezone
        ours_given = headers
        now = when.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
    ours = signer.sign(
        method, url, ours_given, body or b"", Credentials(ak, sk, token), project_id, now
    )

    assert ours["Authorization"] == theirs["Authorization"]
    ours_parsed = signer.parse_authorization(ours["Authorization"])
    theirs_parsed = signer.parse_authorization(theirs["Authorization"])
    assert ours_parsed is not None and theirs_parsed is not None
    assert ours_parsed.signed_headers == theirs_parsed.signed_headers
    assert {k.lower(): v for k, v in ours.items()} == {k.lower(): v for k, v in theirs.items()}


def test_repeated_integer_values_are_the_one_known_divergence() -> None:
    """For a repeated key with int values the SDK orders numerically, we by string (§8.1 step 9)."""
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    pairs: list[tuple[str, object]] = [("id", 10), ("id", 9)]
    sdk = Signer.process_canonical_query_string(SdkRequest(query_params=list(pairs)))
    assert sdk == "id=9&id=10"
    assert signer.canonical_query(pairs) == "id=10&id=9"
    # Distinct keys with int values (all VPCEP uses: limit, offset) agree.
    single: list[tuple[str, object]] = [("offset", 0), ("limit", 1000), ("enable", True)]
    assert signer.canonical_query(single) == Signer.process_canonical_query_string(
        SdkRequest(query_params=list(single))
    )


# ------------------------------------------------------------------ httpx round trip


AK, SK = "HPUAEXAMPLEAK0000001", "ExampleSecretKey0123456789abcdefghijKLMN"
TOKEN = "ExampleSecurityTokenForTemporaryAKSK=="
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


class Verifier:
    """A MockTransport handler that re-verifies each request's signature from what arrived."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = iter(statuses)
        self.seen: list[httpx.Request] = []
        self.headers: list[httpx.Headers] = []  # copies: a re-sent request is the same object
        self.failures: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        self.headers.append(httpx.Headers(request.headers))
        parsed = signer.parse_authorization(request.headers.get("authorization", ""))
        if parsed is None or parsed.ak != AK:
            self.failures.append("no or foreign Authorization")
            return httpx.Response(401)
        raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
        creq = signer.canonical_request(
            request.method,
            raw_path,
            raw_query,
            request.headers,
            parsed.signed_headers,
            request.content,
        )
        sts = signer.string_to_sign(creq, request.headers["x-sdk-date"])
        if signer.signature(SK, sts) != parsed.signature:
            self.failures.append(f"bad signature for {creq!r}")
            return httpx.Response(401)
        return httpx.Response(next(self.statuses, 200))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        current = self.now
        self.now += timedelta(seconds=61)
        return current


@pytest.fixture
def clock() -> Clock:
    return Clock()


def client(handler: Verifier, clock: Clock, token: str | None = None) -> httpx.Client:
    auth = SignerAuth(lambda: Credentials(AK, SK, token), PROJECT, clock)
    return httpx.Client(transport=httpx.MockTransport(handler), auth=auth)


QUERY = [("name", "my svc/α β~*"), ("status", "pendingAcceptance"), ("id", "b"), ("id", "a")]
BODY = json.dumps(
    {"connections": [{"id": "ep-1", "description": "已接受 by policy"}]}, ensure_ascii=False
)


def test_httpx_request_signed_by_signer_auth_verifies(clock: Clock) -> None:
    """A real httpx request (query with spaces/non-ASCII, JSON body, token) verifies server-side."""
    handler = Verifier([])
    url = signer.build_url(
        "https://vpcep.cn-north-4.myhuaweicloud.com", f"/v1/{PROJECT}/x y", QUERY
    )
    with client(handler, clock, TOKEN) as http:
        response = http.put(
            url,
            content=BODY.encode("utf-8"),
            headers={"Content-Type": "application/json;charset=utf-8", "User-Agent": "t/1"},
        )
    assert handler.failures == []
    assert response.status_code == 200
    sent = handler.seen[0]
    assert sent.url.raw_path.decode().endswith(
        "?id=a&id=b&name=my%20svc%2F%CE%B1%20%CE%B2~%2A&status=pendingAcceptance"
    )
    signed = signer.parse_authorization(sent.headers["authorization"])
    assert signed is not None
    assert signed.signed_headers == [
        "content-type",
        "host",
        "x-project-id",
        "x-sdk-date",
        "x-security-token",
    ]
    assert sent.headers["x-sdk-date"] == "20261126T120000Z"
    assert sent.headers["x-security-token"] == TOKEN


def test_verifier_rejects_a_tampered_request(clock: Clock) -> None:
    """The verifying handler is not a tautology: a header changed after signing fails it."""

    class Tamper(httpx.Auth):
        def auth_flow(
            self, request: httpx.Request
        ) -> Generator[httpx.Request, httpx.Response, None]:
            inner = SignerAuth(lambda: Credentials(AK, SK), PROJECT, clock)
            signed = next(inner.auth_flow(request))
            signed.headers["x-sdk-date"] = "20261126T120001Z"
            yield signed

    handler = Verifier([])
    with httpx.Client(transport=httpx.MockTransport(handler), auth=Tamper()) as http:
        response = http.get("https://vpcep.test/v1/p?a=1")
    assert response.status_code == 401
    assert handler.failures and handler.failures[0].startswith("bad signature")


def test_resent_request_is_resigned_with_a_fresh_date(clock: Clock) -> None:
    """Sending the same request again re-signs it with the clock's new date, old headers dropped."""
    handler = Verifier([503, 200])
    url = signer.build_url("https://vpcep.test", f"/v1/{PROJECT}/connections", QUERY)
    with client(handler, clock) as http:
        request = http.build_request(
            "POST", url, content=BODY.encode(), headers={"Content-Type": "application/json"}
        )
        first = http.send(request)
        second = http.send(request)
    assert (first.status_code, second.status_code) == (503, 200)
    assert handler.failures == []
    dates = [h["x-sdk-date"] for h in handler.headers]
    assert dates == ["20261126T120000Z", "20261126T120101Z"]
    assert clock.calls == 2
    for sent in handler.headers:
        signed = signer.parse_authorization(sent["authorization"])
        assert signed is not None
        assert "authorization" not in signed.signed_headers
    sigs = [h["authorization"] for h in handler.headers]
    assert sigs[0] != sigs[1]


def test_rotated_credentials_apply_on_resend(clock: Clock) -> None:
    """A re-send uses the credentials provider's current value; a dropped token is not re-sent."""
    current = [Credentials(AK, SK, TOKEN)]
    handler = Verifier([])
    auth = SignerAuth(lambda: current[0], PROJECT, clock)
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as http:
        request = http.build_request("GET", "https://vpcep.test/v1/p")
        http.send(request)
        current[0] = Credentials(AK, SK)
        http.send(request)
    assert handler.failures == []
    assert handler.headers[0].get("x-security-token") == TOKEN
    assert "x-security-token" not in handler.headers[1]


# ------------------------------------------------------------------------- secrecy

SECRET_SK = "TopSecretSK-0123456789abcdefghijklmnopq"
SECRET_TOKEN = "SecurityTokenValue-9f8e7d6c5b4a-XYZ"
LONG_AK = "HPUAEXAMPLEAK0000001"


@pytest.mark.parametrize("token", [None, SECRET_TOKEN])
def test_credentials_repr_and_str_hide_secrets(token: str | None) -> None:
    """repr() and str() of Credentials show a masked AK and never the SK or token."""
    creds = Credentials(LONG_AK, SECRET_SK, token)
    for shown in (repr(creds), str(creds), f"{creds}", repr([creds]), repr({"c": creds})):
        assert SECRET_SK not in shown
        assert SECRET_TOKEN not in shown
        assert LONG_AK not in shown
        assert "HPUA***01" in shown
    assert ("temporary" in repr(creds)) == (token is not None)


def test_short_ak_is_fully_masked() -> None:
    """An AK of eight characters or fewer is shown only as ***."""
    shown = repr(Credentials("SHORTAK", SECRET_SK))
    assert "SHORTAK" not in shown
    assert "***" in shown


def test_signer_auth_repr_hides_secrets() -> None:
    """repr(SignerAuth) names the project only: no AK, SK or token."""
    auth = SignerAuth(lambda: Credentials(LONG_AK, SECRET_SK, SECRET_TOKEN), PROJECT, Clock())
    shown = repr(auth) + str(auth)
    assert PROJECT in shown
    for secret in (SECRET_SK, SECRET_TOKEN, LONG_AK):
        assert secret not in shown
