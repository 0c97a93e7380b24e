"""Where the AK/SK come from, in the documented order.

1. ``$CREDENTIALS_DIRECTORY/ak`` and ``/sk`` (and optional ``security_token``): systemd's
   ``LoadCredential=``.
2. Files named in the config (``ak_file``, ``sk_file``, ``security_token_file``), refused when
   group- or world-readable.
3. The official SDK's variables ``HUAWEICLOUD_SDK_AK``, ``HUAWEICLOUD_SDK_SK``,
   ``HUAWEICLOUD_SDK_SECURITY_TOKEN``.

File-backed credentials are re-read when a file changes, so keys rotate without a restart.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from approver.cloud.signer import Credentials


class CredentialsError(Exception):
    """Credentials are missing, unreadable or exposed. The message never holds a secret."""


@dataclass(frozen=True)
class CredentialFiles:
    ak: Path
    sk: Path
    security_token: Path | None = None


def _read_secret(path: Path, *, check_mode: bool) -> str:
    try:
        info = path.stat()
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read ({exc.strerror})") from None
    if check_mode and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"{path}: readable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{path}: cannot read ({type(exc).__name__})") from None
    if not value:
        raise CredentialsError(f"{path}: empty")
    return value


class FileCredentials:
    """AK/SK kept in files; re-read whenever one of them changes (rotation without restart)."""

    def __init__(self, files: CredentialFiles, *, check_mode: bool = True) -> None:
        self._files = files
        self._check_mode = check_mode
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int, int], ...] | None = None
        self._current: Credentials | None = None
        self()  # fail at start-up, not at the first sweep

    def __repr__(self) -> str:
        return f"FileCredentials(ak={str(self._files.ak)!r})"

    def _paths(self) -> list[Path]:
        paths = [self._files.ak, self._files.sk]
        if self._files.security_token:
            paths.append(self._files.security_token)
        return paths

    def __call__(self) -> Credentials:
        with self._lock:
            try:
                stamp = tuple(
                    (s.st_mtime_ns, s.st_size, s.st_ino) for s in (p.stat() for p in self._paths())
                )
            except OSError as exc:
                if self._current is not None:
                    return self._current  # mid-rotation (rename in progress): keep the last good
                raise CredentialsError(f"cannot read credentials: {exc.strerror}") from None
            if stamp != self._stamp or self._current is None:
                token = self._files.security_token
                self._current = Credentials(
                    ak=_read_secret(self._files.ak, check_mode=self._check_mode),
                    sk=_read_secret(self._files.sk, check_mode=self._check_mode),
                    security_token=_read_secret(token, check_mode=self._check_mode)
                    if token
                    else None,
                )
                self._stamp = stamp
            return self._current


class StaticCredentials:
    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return f"StaticCredentials({self._credentials!r})"

    def __call__(self) -> Credentials:
        return self._credentials


CredentialSource = FileCredentials | StaticCredentials


def resolve(
    files: CredentialFiles | None,
    environ: Mapping[str, str],
) -> tuple[CredentialSource, str]:
    """Pick the first source that is configured; return it and a description for the logs."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory and (Path(directory) / "ak").exists():
        base = Path(directory)
        token = base / "security_token"
        # systemd owns that directory and its modes; do not second-guess them.
        source = FileCredentials(
            CredentialFiles(base / "ak", base / "sk", token if token.exists() else None),
            check_mode=False,
        )
        return source, f"systemd credentials in {directory}"
    if files is not None:
        return FileCredentials(files), f"files {files.ak}, {files.sk}"
    ak = environ.get("HUAWEICLOUD_SDK_AK")
    sk = environ.get("HUAWEICLOUD_SDK_SK")
    if ak and sk:
        session = environ.get("HUAWEICLOUD_SDK_SECURITY_TOKEN") or None
        return StaticCredentials(Credentials(ak, sk, session)), "environment HUAWEICLOUD_SDK_AK/SK"
    raise CredentialsError(
        "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, or credentials.ak_file "
        "and credentials.sk_file in the config, or use systemd LoadCredential=ak/sk"
    )


def environ_project_id(environ: Mapping[str, str]) -> str | None:
    return environ.get("HUAWEICLOUD_SDK_PROJECT_ID") or None


def default_environ() -> Mapping[str, str]:
    return os.environ
