"""Log setup: JSON/console selection, stdlib routing, and that secrets never reach the output."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import structlog

from approver.audit import Redactor, configure_logging, log_record, reset_logging
from approver.audit.logging import REDACTED, _Handler, secret_forms

AK = "AKCANARY7Q3XZ9LMN0PQ"
SK = "SKCANARY/8h+Wq=Zt4&Vx%1Rb2Yc3Nd4Me5Lf6Kg7"
TOKEN = "STCANARY" + "Tk9" * 20
SECRETS = (AK, SK, TOKEN)


def leak_forms(secret: str) -> set[str]:
    """Forms a leak could take, computed independently of the code under test."""
    raw = secret.encode()
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    return {form for form in forms if form}


ALL_FORMS = set().union(*(leak_forms(s) for s in SECRETS)) | {
    base64.b64encode(f"{AK}:{SK}".encode()).decode(),
    "CANARY",  # every canary contains it: the strictest check of all
}


class TtyStream(io.StringIO):
    """A StringIO that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    reset_logging()
    structlog.contextvars.clear_contextvars()


def setup(json_mode: bool | None, stream: io.StringIO | None = None, **kw: Any) -> io.StringIO:
    out = stream if stream is not None else io.StringIO()
    configure_logging(json=json_mode, stream=out, secrets=lambda: SECRETS, **kw)
    return out


def assert_no_canary(text: str) -> None:
    found = sorted(form for form in ALL_FORMS if form in text)
    assert found == [], text


def sign(sk: str) -> None:
    local_copy = sk  # a signer frame holding the secret in a local
    raise ValueError(f"bad signature for key {local_copy}")


class Carrier:
    """An object whose repr would print the secret."""

    def __repr__(self) -> str:
        return f"Carrier(sk={SK!r})"


MODES = pytest.mark.parametrize("json_mode", [True, False], ids=["json", "console"])


class TestRedactionEndToEnd:
    @MODES
    def test_canary_in_event_values(self, json_mode: bool) -> None:
        """A secret inside a field value, raw or encoded, never reaches the output."""
        out = setup(json_mode)
        log = structlog.get_logger("test")
        log.info("parse_failed", detail=f"could not parse sk={SK}")
        log.info("ak_seen", ak_copy=AK)
        log.info("basic_auth", header="Basic " + base64.b64encode(f"{AK}:{SK}".encode()).decode())
        log.info("b64", blob=base64.b64encode(SK.encode()).decode())
        log.info("b64url", blob=base64.urlsafe_b64encode(("x" + SK).encode()).decode())
        log.info("url", url=f"https://iam.example/?sk={quote(SK, safe='')}&x=1")
        log.info("url_plus", form=f"sk={quote_plus(SK)}")
        log.info("bytes", body=SK.encode())
        log.info("object", thing=Carrier())
        log.info(f"message itself mentions {TOKEN}")
        text = out.getvalue()
        assert_no_canary(text)
        assert len(text.strip().splitlines()) == 10
        assert "parse_failed" in text
        assert "basic_auth" in text
        assert REDACTED in text

    @MODES
    def test_canary_in_nested_structures(self, json_mode: bool) -> None:
        """Secrets in nested dicts, lists and header pairs are redacted by key and by value."""
        out = setup(json_mode)
        structlog.get_logger("test").info(
            "request",
            request={
                "headers": {
                    "Authorization": f"SDK-HMAC-SHA256 Access={AK}, Signature=abc",
                    "X-Security-Token": TOKEN,
                    "X-Sdk-Date": "20260701T120000Z",
                },
                "pairs": [("authorization", "opaque"), ("x-request-id", "r-1")],
                "notes": [f"ak {AK}", {"deeper": [SK]}],
            },
        )
        text = out.getvalue()
        assert_no_canary(text)
        assert "20260701T120000Z" in text
        assert "r-1" in text
        assert "opaque" not in text

    @MODES
    def test_canary_in_exception_and_traceback(self, json_mode: bool) -> None:
        """An exception whose message holds the SK logs a traceback without it or any locals."""
        out = setup(json_mode)
        log = structlog.get_logger("test")
        try:
            sign(SK)
        except ValueError:
            log.exception("signing_failed")
        text = out.getvalue()
        assert_no_canary(text)
        assert "ValueError" in text
        assert "sign" in text
        assert not re.search(r"local_copy\s*[=:]\s*['\"]", text)  # no locals table
        if json_mode:
            record = json.loads(text)
            frames = record["exception"][0]["frames"]
            assert frames
            assert all("locals" not in frame for frame in frames)
            assert record["exception"][0]["exc_value"] == REDACTED

    @MODES
    def test_canary_in_stdlib_loggers(self, json_mode: bool) -> None:
        """httpx/apscheduler lines (with % args and tracebacks) go through the redactor."""
        out = setup(json_mode)
        logging.getLogger("httpx").warning(
            "HTTP Request: %s %s headers=%r",
            "POST",
            f"https://vpcep.example/v1/p/x?token={quote(TOKEN)}",
            [("Authorization", f"SDK-HMAC-SHA256 Access={AK}")],
        )
        try:
            sign(SK)
        except ValueError:
            logging.getLogger("apscheduler.executors").exception("Job raised %s", "boom")
        text = out.getvalue()
        assert_no_canary(text)
        assert "HTTP Request" in text or REDACTED in text
        assert "httpx" in text
        assert "apscheduler.executors" in text
        assert "ValueError" in text

    @MODES
    def test_sensitive_keys_without_known_secret(self, json_mode: bool) -> None:
        """Values under sk/password/token/... keys are hidden even when not a known secret."""
        out = setup(json_mode)
        structlog.get_logger("test").info(
            "creds", SK="unknown-sk-value", Password="hunter2hunter2", refresh_token="rt-xyz-123"
        )
        text = out.getvalue()
        for value in ("unknown-sk-value", "hunter2hunter2", "rt-xyz-123"):
            assert value not in text

    def test_rotated_secret_redacted_at_once(self) -> None:
        """The secrets callable is read per event: a rotated SK is redacted immediately."""
        current = ["OLDSECRET-0000"]
        out = io.StringIO()
        configure_logging(json=True, stream=out, secrets=lambda: current)
        log = structlog.get_logger("test")
        current[:] = ["NEWSECRET-1111"]
        log.info("rotated", value="token NEWSECRET-1111 in text")
        assert "NEWSECRET-1111" not in out.getvalue()

    def test_broken_log_call_does_not_dump_arguments(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A stdlib record that fails to format is reported without its (secret) arguments."""
        out = setup(True)
        (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, _Handler)]
        # Straight to our handler: pytest's own capture handler would raise on this record.
        handler.handle(
            logging.LogRecord("httpx", logging.WARNING, __file__, 1, "n=%d", (SK,), None)
        )
        err = capsys.readouterr().err
        assert "could not be rendered" in err
        assert_no_canary(err + out.getvalue())


class TestRedactor:
    def test_key_match_is_case_and_dash_insensitive(self) -> None:
        """AK, Sk, X-Security-Token, security_token, Authorization are all sensitive keys."""
        redact = Redactor()
        event = {"AK": "a", "Sk": "b", "X-Security-Token": "c", "security_token": "d", "x": "e"}
        result = redact(None, "info", {**event, "authorization": "f"})
        assert result == {
            "AK": REDACTED,
            "Sk": REDACTED,
            "X-Security-Token": REDACTED,
            "security_token": REDACTED,
            "x": "e",
            "authorization": REDACTED,
        }

    def test_multiline_text_keeps_clean_lines(self) -> None:
        """In a rendered traceback only the lines holding a secret are replaced."""
        redact = Redactor(lambda: [SK])
        text = f"Traceback:\n  File sign.py\nValueError: key {SK}"
        result = redact(None, "info", {"exception": text})
        assert f"Traceback:\n  File sign.py\n{REDACTED}" == result["exception"]

    def test_short_secrets_are_ignored_by_value(self) -> None:
        """Values shorter than 6 characters are not searched for (they would hit everything)."""
        redact = Redactor(lambda: ["ab"])
        assert redact(None, "info", {"event": "about abc"}) == {"event": "about abc"}

    def test_failing_secret_source_keeps_last_forms(self) -> None:
        """If the secrets callable raises, the last known secrets are still redacted."""
        calls = {"n": 0}

        def source() -> list[str]:
            calls["n"] += 1
            if calls["n"] > 1:
                raise RuntimeError("vault down")
            return [SK]

        redact = Redactor(source)
        redact(None, "info", {"event": "warm up"})
        assert redact(None, "info", {"event": f"x {SK}"})["event"] == REDACTED

    @pytest.mark.parametrize("prefix", ["", "x", "xy"])
    def test_base64_at_every_alignment(self, prefix: str) -> None:
        """A secret base64-encoded inside a larger blob is found whatever its byte offset."""
        blob = base64.b64encode(f"{prefix}{SK}:tail".encode()).decode()
        assert any(form in blob for form in secret_forms(SK))


class TestSetup:
    def test_json_when_not_a_tty(self) -> None:
        """json=None on a non-TTY stream gives one JSON object per line."""
        out = setup(None)
        structlog.get_logger("test").info("hello", sweep_id="s-1")
        record = json.loads(out.getvalue())
        assert {"event": "hello", "level": "info", "logger": "test", "sweep_id": "s-1"}.items() <= (
            record.items()
        )
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["timestamp"])

    def test_console_on_a_tty_with_colors(self) -> None:
        """json=None on a TTY gives colored console lines with the same fields."""
        out = setup(None, TtyStream())
        structlog.get_logger("test").info("hello", sweep_id="s-1")
        text = out.getvalue()
        assert "\x1b[" in text
        plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
        assert "hello" in plain
        assert "sweep_id=s-1" in plain
        assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", plain)

    def test_console_without_tty_has_no_colors(self) -> None:
        """Forced console output to a pipe carries no escape codes."""
        out = setup(False)
        structlog.get_logger("test").warning("hello", n=1)
        assert "\x1b[" not in out.getvalue()
        assert "hello" in out.getvalue()

    def test_level_filters_structlog_and_stdlib(self) -> None:
        """level=warning drops info lines from both structlog and stdlib loggers."""
        out = setup(True, level="warning")
        structlog.get_logger("test").info("dropped")
        logging.getLogger("apscheduler").info("dropped too")
        structlog.get_logger("test").warning("kept")
        assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["kept"]

    def test_httpx_and_httpcore_held_at_warning(self) -> None:
        """Even at debug, httpx INFO and httpcore DEBUG (headers) are not emitted."""
        out = setup(True, level="debug")
        logging.getLogger("httpx").info("HTTP Request: GET https://x")
        logging.getLogger("httpcore.http11").debug("send_request_headers.started")
        logging.getLogger("httpx").warning("kept")
        assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["kept"]

    def test_idempotent(self) -> None:
        """Configuring twice leaves one handler: every line appears once, on the new stream."""
        first = setup(True)
        second = setup(True)
        structlog.get_logger("test").info("once")
        logging.getLogger("apscheduler").warning("once too")
        assert first.getvalue() == ""
        assert len(second.getvalue().splitlines()) == 2

    def test_unknown_level(self) -> None:
        """An unknown level name is a ValueError naming the choices."""
        with pytest.raises(ValueError, match="unknown log level"):
            configure_logging(level="loud", stream=io.StringIO())

    def test_contextvars_reach_stdlib_lines(self) -> None:
        """Values bound with structlog.contextvars appear on stdlib lines too."""
        out = setup(True)
        structlog.contextvars.bind_contextvars(sweep_id="s-9")
        logging.getLogger("httpx").warning("retrying")
        assert json.loads(out.getvalue())["sweep_id"] == "s-9"


class TestLogRecord:
    def test_event_name_and_fields(self) -> None:
        """An audit record becomes a line named after its event with the rest as fields."""
        out = setup(True)
        log_record(
            structlog.get_logger("vpcep_approver.audit"),
            {"event": "decision", "decision_id": "d-1", "action": "accept", "seq": 7},
        )
        record = json.loads(out.getvalue())
        assert (
            record["event"],
            record["decision_id"],
            record["action"],
            record["seq"],
        ) == ("decision", "d-1", "accept", 7)

    def test_audit_record_is_redacted_too(self) -> None:
        """A secret that slipped into an audit record is redacted on the log stream."""
        out = setup(False)
        log_record(structlog.get_logger("a"), {"event": "outcome", "error": f"sk={SK}"})
        assert_no_canary(out.getvalue())
        assert "outcome" in out.getvalue()
