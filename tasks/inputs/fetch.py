"""Fetching an image by reference: an http(s) URL (guarded) or a file under the files root.

Every refusal is an InvalidInput naming the field `reference`, or a RetryableError when the
source may answer later (a timeout, a refused connection, a 5xx).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

from config import Settings
from picpik.errors import InvalidInput, Unavailable
from tasks.inputs.netguard import Allowance, resolve_checked

__all__ = ["fetch", "open_guarded", "reference_name"]

MAX_REDIRECTS = 5
CHUNK = 64 * 1024


def fetch(reference: str, settings: Settings) -> bytes:
    """The bytes of the referenced image, within the byte and time caps of the settings."""
    try:
        scheme = urlsplit(reference).scheme.lower()
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise InvalidInput(f"not a valid URL: {exc}", field="reference") from exc
    if scheme in ("http", "https"):
        return _fetch_url(reference, settings)
    if scheme == "file":
        return _read_file(_file_url_path(reference), settings)
    if scheme and len(scheme) > 1:  # one letter would be a Windows drive
        raise InvalidInput(f"scheme {scheme!r} is not allowed (http, https or a file path)",
                           field="reference")
    return _read_file(reference, settings)


def reference_name(reference: str) -> str:
    """The input's base name without extension ("photo" for .../photo.jpg?x=1), or ""."""
    split = urlsplit(reference)
    path = unquote(split.path) if split.scheme.lower() in ("http", "https", "file") else reference
    return Path(path).stem


def _file_url_path(url: str) -> str:
    """The local path of a file:// URL; a URL naming another host is not a local file."""
    split = urlsplit(url)
    if split.netloc not in ("", "localhost"):
        raise InvalidInput(f"a file URL must name a local file (file:///path), not host "
                           f"{split.netloc!r}", field="reference")
    return unquote(split.path)


def _read_file(path_text: str, settings: Settings) -> bytes:
    root = settings.files_root.resolve()
    given = Path(path_text)
    try:
        path = (given if given.is_absolute() else root / given).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise InvalidInput(f"no such file: {path_text}", field="reference") from exc
    except (OSError, RuntimeError, ValueError) as exc:  # loops, permissions, a NUL byte
        raise InvalidInput(f"cannot open {path_text!r}: {exc}", field="reference") from exc
    if not path.is_relative_to(root):
        raise InvalidInput(f"{path_text} is outside the files root {root} "
                           "(CUTOUT_FILES_ROOT)", field="reference")
    if not path.is_file():
        raise InvalidInput(f"{path_text} is not a regular file", field="reference")
    with path.open("rb") as handle:
        data = handle.read(settings.max_image_bytes + 1)
    if len(data) > settings.max_image_bytes:
        raise InvalidInput(f"{path_text} is larger than {settings.max_image_bytes} bytes",
                           field="reference")
    return data


def _fetch_url(url: str, settings: Settings) -> bytes:
    allowance = Allowance(settings.fetch_allow)
    deadline = time.monotonic() + settings.fetch_timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        response, conn = _open(url, allowance, settings, deadline)
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise InvalidInput(f"redirect without Location from {url}", field="reference")
                url = urljoin(url, location)  # checked again by the next _open
                continue
            return _read_body(url, response, conn.sock, settings, deadline)
        finally:
            conn.close()
    raise InvalidInput(f"more than {MAX_REDIRECTS} redirects", field="reference")


def _checked_url(url: str, field: str = "reference") -> tuple[SplitResult, str, int]:
    """The URL's parts, host and port, if it is one we may fetch (the first URL and every
    redirect)."""
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        # urlsplit would silently drop a CR or LF: refuse instead of fetching something else.
        raise InvalidInput("a URL with spaces or control characters (percent-encode them)",
                           field=field)
    try:
        split = urlsplit(url)
        host, port = split.hostname, split.port
    except ValueError as exc:  # an unclosed IPv6 bracket, a port out of range
        raise InvalidInput(f"not a valid URL: {exc}", field=field) from exc
    if split.scheme.lower() not in ("http", "https") or not host:
        raise InvalidInput(f"not an http(s) URL: {url[:200]}", field=field)
    if "@" in split.netloc:
        # Never sent (we do not authenticate to image hosts), and never echoed back either.
        raise InvalidInput("a URL with credentials (user:password@) is refused",
                           field=field)
    return split, host, port or (443 if split.scheme.lower() == "https" else 80)


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever DNS says a moment later."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_PinnedHTTP):
    def connect(self) -> None:
        super().connect()
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)


def _open(url: str, allowance: Allowance, settings: Settings, deadline: float
          ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    return open_guarded("GET", url, allowance, deadline,
                        headers={"User-Agent": "cutout/0.1", "Accept": "image/*"})


def open_guarded(method: str, url: str, allowance: Allowance, deadline: float, *,
                 body: bytes | None = None, headers: Mapping[str, str] | None = None,
                 field: str = "reference",
                 ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    """One request (no redirect followed) to an address the guard checked, connected to that
    very address; the caller reads the response and closes the connection. Refusals name
    `field` (InvalidInput); a connection or protocol failure is Unavailable."""
    split, host, port = _checked_url(url, field)
    try:
        address = resolve_checked(host, port, allowance)
    except InvalidInput as exc:
        exc.field = field
        raise
    timeout = max(0.1, deadline - time.monotonic())
    cls = _PinnedHTTPS if split.scheme.lower() == "https" else _PinnedHTTP
    conn = cls(host, port, address, timeout)
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    try:
        conn.request(method, target, body=body, headers=dict(headers or {}))
        return conn.getresponse(), conn
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise Unavailable(f"cannot reach {url}: {exc}", field=field) from exc


def _read_body(url: str, response: http.client.HTTPResponse, sock: socket.socket | None,
               settings: Settings, deadline: float) -> bytes:
    if response.status >= 500 or response.status in (408, 429):
        raise Unavailable(f"{url} answered HTTP {response.status}", field="reference")
    if response.status != 200:
        raise InvalidInput(f"{url} answered HTTP {response.status}", field="reference")
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > settings.max_image_bytes:
        raise InvalidInput(f"{url} is larger than {settings.max_image_bytes} bytes",
                           field="reference")
    parts: list[bytes] = []
    size = 0
    try:
        while chunk := _read_some(response, sock, deadline):
            size += len(chunk)
            if size > settings.max_image_bytes:
                raise InvalidInput(f"{url} is larger than {settings.max_image_bytes} bytes",
                                   field="reference")
            if time.monotonic() > deadline:
                raise Unavailable(f"{url} took longer than {settings.fetch_timeout_s} s",
                                  field="reference")
            parts.append(chunk)
    except (OSError, http.client.HTTPException) as exc:
        raise Unavailable(f"reading {url} failed: {exc}", field="reference") from exc
    return b"".join(parts)


def _read_some(response: http.client.HTTPResponse, sock: socket.socket | None,
               deadline: float) -> bytes:
    """Whatever arrives next, waiting no longer than the overall deadline allows."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    if sock is not None:
        sock.settimeout(remaining)
    return response.read1(CHUNK)
