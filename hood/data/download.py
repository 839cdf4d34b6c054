"""Fetching, verifying and installing the registry's data sets (``hood download``), robust against the
ways downloads fail.

The rules, each one tested against a local HTTP server (tests/test_download*.py):

- **Resume.** Bytes arrive in ``<root>/.hood-downloads/<set>/<file>.part``; an interrupted download continues
  with an HTTP ``Range`` request on the next try or the next run. A server that ignores ``Range`` (200 instead
  of 206) restarts the file cleanly; a resumed file that fails its checksum is fetched once more from zero.
- **Retries.** Connection errors, short bodies and 5xx/429 answers are retried with backoff
  (:data:`RETRY_DELAYS`); then the next mirror; then one line naming the URL, ``--url`` and ``HOOD_MIRROR``.
- **Verification.** Size (when known), md5 and sha256 (every non-null one) are checked before anything is
  extracted; a mismatching download (an HTML quota page, say) is deleted and the error says so. The sha256
  computed here is recorded in the set's marker, since the publishers give only md5.
- **Safe, atomic install.** Extraction (:mod:`hood.data.extract`) goes into a hidden temporary folder beside the
  final one; the layout is checked, the verification record is written into ``.hood-complete``, and only then is
  the folder renamed to its final name. A crash at any point leaves nothing that counts as installed.
- **Local files.** ``install(..., from_file=...)`` installs from an archive the user already has, with the same
  verification and layout (offline clusters).
- **Unpublished checksums.** A file whose entry says ``"checksum": "first-fetch"`` (the publisher gives none) is
  refused if it is an HTML page; the sha256 and size of the file as first installed are pinned in
  ``<root>/.hood-pins/<set>.json``, and every later fetch of it (another mirror, ``--force``) must match them.

Nothing here prints: progress goes through a :class:`~hood.progress.Reporter`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import http.client
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hood.data import registry
from hood.data.extract import safe_extract, strip_single_top
from hood.data.layout import POSTPROCESS, layout_problem
from hood.errors import DataError, DiskError, HoodError
from hood.fileio import atomic_write_json
from hood.locks import exclusive
from hood.progress import NullReporter, Reporter
from hood.version import __version__

RETRY_DELAYS: tuple[float, ...] = (1.0, 3.0, 9.0, 27.0)  # seconds slept between tries of one URL
TIMEOUT_S = 60.0  # per socket operation, not per file
CHUNK = 1 << 16
EXTRACT_RATIO = 20  # extracted bytes allowed per archive byte (images barely compress: real ratios are ~1)
EXTRACT_MIN_BYTES = 1 << 30  # ... but at least this much, for small archives
DOWNLOADS = ".hood-downloads"
PINS = ".hood-pins"
_HASH_CHUNK = 1 << 20


class DownloadError(HoodError):
    """Every source of a file failed (network, HTTP status); the message names the URL and ``--url``."""


class ChecksumError(DataError):
    """A file is not the one the registry names: wrong size, md5 or sha256."""


class NotFetchableError(HoodError):
    """A registry entry that hood cannot download by itself (e.g. a browser-only share)."""


class _Retryable(Exception):
    """A failure worth another try of the same URL: connection trouble, short body, 5xx."""


class _Refused(Exception):
    """The URL answered with a definite no (4xx); try the next source instead."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a set, as the manifest describes it."""

    name: str
    url: str
    mirrors: tuple[str, ...]
    md5: str | None
    sha256: str | None
    size: int | None
    format: str
    first_fetch: bool = False  # no published checksum: the first fetch's sha256 is pinned (:func:`pinned`)

    @classmethod
    def from_manifest(cls, d: dict[str, Any]) -> FileSpec:
        return cls(d["name"], d["url"], tuple(d.get("mirrors") or ()), d.get("md5"), d.get("sha256"), d.get("size"), d["format"],
                   d.get("checksum") == registry.FIRST_FETCH)


@dataclass(frozen=True)
class InstallResult:
    name: str
    state: str  # "installed" | "present" (already there, skipped)
    path: Path
    source: str = ""


@dataclass(frozen=True)
class VerifyResult:
    name: str
    state: str  # "verified" | "modified" | "unrecorded" | "missing"
    detail: str
    path: Path


# --- where things come from -------------------------------------------------------------------------


def file_specs(name: str) -> list[FileSpec]:
    return [FileSpec.from_manifest(f) for f in _entry(name)["files"]]


def check_url(url: str, what: str) -> str:
    """``url`` when it is one hood can fetch (http, https, or file with a path); else one line naming ``what``."""
    parts = urllib.parse.urlsplit(url)
    ok = (parts.scheme in ("http", "https") and bool(parts.netloc)) or (parts.scheme == "file" and bool(parts.path))
    if not ok:
        raise DataError(f"{what} {url!r} is not a URL hood can fetch; write http(s)://HOST/PATH or file:///PATH")
    return url


def sources(spec: FileSpec, url_override: str | None = None) -> list[str]:
    """URLs to try, in order: ``--url`` alone; else ``$HOOD_MIRROR/<file name>`` alone; else the manifest's
    URL and its mirrors. An explicit choice is never silently replaced by the internet."""
    if url_override:
        return [check_url(url_override, "--url")]
    mirror = os.environ.get("HOOD_MIRROR", "").strip()
    if mirror:
        return [check_url(f"{mirror.rstrip('/')}/{spec.name}", "HOOD_MIRROR")]
    return [spec.url, *spec.mirrors]


def downloads_dir(root: Path) -> Path:
    return root / DOWNLOADS


def partial_bytes(name: str, root: Path) -> int:
    """Bytes of interrupted downloads waiting to be resumed for ``name`` (shown by ``--list``)."""
    folder = downloads_dir(root) / name
    return sum(p.stat().st_size for p in folder.glob("*.part")) if folder.is_dir() else 0


def _entry(name: str) -> dict[str, Any]:
    e = registry.entry(name)
    if e is not None:
        return e
    manual = registry.manual_entry(name)
    if manual is not None:
        raise NotFetchableError(f"'{name}' cannot be downloaded automatically: {manual['note']} ({manual['url']})")
    raise DataError(f"unknown data set '{name}'{registry.suggest(name)}; see `hood download --list`")


# --- errors about the local disk ------------------------------------------------------------------


def _disk_error(path: Path, err: OSError) -> HoodError:
    """One line for a failed local write; downloads are pointed elsewhere with --root, not --out."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "no space left on the device"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "no permission"
    else:
        why = err.strerror or str(err)
    cls = DiskError if err.errno in (errno.ENOSPC, errno.EDQUOT) else HoodError
    return cls(f"{why} while writing {path}; partial files were removed; free space or choose another --root / HOOD_DATA")


def _mkdir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _disk_error(path, err) from err
    return path


# --- fetching one URL ----------------------------------------------------------------------------


def _open_part(path: Path, mode: str) -> IO[bytes]:
    """Opened through this function so tests can make the disk fill up."""
    return open(path, mode)  # noqa: SIM115 - closed by the caller's with-block


def _first_byte(content_range: str | None) -> int | None:
    """The start of ``bytes START-END/TOTAL``, or None when absent or malformed."""
    try:
        return int((content_range or "").split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _fetch_once(url: str, part: Path, expected_size: int | None, reporter: Reporter, label: str) -> None:
    """One HTTP request that appends to (206) or rewrites (200) ``part``; raises _Retryable/_Refused."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset >= expected_size:
        if offset == expected_size:
            return  # complete from an earlier run: verification decides
        part.unlink()
        offset = 0
    headers = {"User-Agent": f"hood/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return  # nothing left to send: the file is probably complete; verification decides
        if err.code >= 500 or err.code in (408, 429):
            raise _Retryable(f"HTTP {err.code} {err.reason}") from err
        if 300 <= err.code < 400:  # urllib gave up following them: a loop, or too many
            raise _Refused(f"HTTP {err.code}: a redirect that cannot be followed (a loop, too many, or no target)") from err
        raise _Refused(f"HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
        reason = str(getattr(err, "reason", None) or err).splitlines()[0]
        if isinstance(err, ValueError) or url.startswith("file:"):  # a local path or a malformed URL: no retry helps
            raise _Refused(f"cannot read {url} ({reason})") from err
        raise _Retryable(f"connection failed ({reason})") from err
    with resp:
        status = resp.status or 200
        resumed = status == 206 and _first_byte(resp.headers.get("Content-Range")) == offset
        if status == 206 and not resumed:
            part.unlink(missing_ok=True)
            raise _Retryable("the server sent a range that was not asked for; restarting the file")
        start = offset if resumed else 0  # a 200 (Range ignored) restarts the file cleanly
        length_header = resp.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = start + length if length is not None else expected_size
        if expected_size is not None and total is not None and total != expected_size:
            raise ChecksumError(f"{url} offers {total:,} bytes, the registry expects {expected_size:,}")
        task = reporter.task(label, total)
        reporter.advance(task, start)
        received = 0
        try:
            with _open_part(part, "ab" if resumed else "wb") as out:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except (OSError, http.client.HTTPException) as err:
                        raise _Retryable(f"connection dropped after {start + received:,} bytes ({err})") from err
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    reporter.advance(task, len(chunk))
        finally:
            reporter.done(task)
        if length is not None and received < length:
            raise _Retryable(f"connection closed after {start + received:,} of {total:,} bytes")


def _fetch(url: str, part: Path, expected_size: int | None, reporter: Reporter, label: str) -> None:
    """``_fetch_once`` with retries and backoff; each retry resumes where the last one stopped."""
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            return _fetch_once(url, part, expected_size, reporter, label)
        except _Retryable as err:
            if attempt == len(RETRY_DELAYS):
                raise
            delay = RETRY_DELAYS[attempt]
            reporter.log(f"{label}: {err}; retrying in {delay:g}s")
            time.sleep(delay)


# --- verification --------------------------------------------------------------------------------


def digests(path: Path) -> dict[str, Any]:
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_CHUNK):
            md5.update(block)
            sha256.update(block)
    return {"size": path.stat().st_size, "md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head"))


def verify_file(path: Path, spec: FileSpec) -> dict[str, Any]:
    """The file's size/md5/sha256, after checking them against ``spec``; raises ChecksumError on a mismatch."""
    got = digests(path)
    if spec.first_fetch and spec.sha256 is None and _looks_like_html(path):  # nothing to compare with: refuse a page
        raise ChecksumError("it is an HTML page (a login, quota or download-confirmation page?), not the file")
    for key in ("size", "md5", "sha256"):
        want = getattr(spec, key)
        if want is not None and got[key] != want:
            what = "an HTML page (a login, quota or error page?)" if _looks_like_html(path) else "not the expected file"
            raise ChecksumError(f"{key} mismatch: expected {want}, got {got[key]}; it is {what}")
    return got


# --- pins: the checksum of a file whose publisher gives none, as first fetched ----------------------


def pins_path(root: Path, name: str) -> Path:
    """Kept apart from the set's folder, so a reinstall (``--force``) is held to the same bytes."""
    return root / PINS / f"{name}.json"


def read_pins(root: Path, name: str) -> dict[str, Any]:
    """``{file name: {sha256, size, source, fetched_at}}`` of a set's first-fetch files ({} before the first)."""
    try:
        pins = json.loads(pins_path(root, name).read_text())
    except (OSError, ValueError):
        return {}
    return pins if isinstance(pins, dict) else {}


def pinned(spec: FileSpec, pins: dict[str, Any]) -> FileSpec:
    """``spec`` held to its pin: a first-fetch file fetched before must be the very same bytes again."""
    pin = pins.get(spec.name)
    if not spec.first_fetch or not isinstance(pin, dict) or not isinstance(pin.get("sha256"), str):
        return spec
    return dataclasses.replace(spec, sha256=pin["sha256"], size=pin.get("size") if isinstance(pin.get("size"), int) else None)


def _write_pins(root: Path, name: str, fetched: list[tuple[FileSpec, Path, str, dict[str, Any]]], record: dict[str, Any]) -> None:
    """Pin the first-fetch files of a set just installed (a file already pinned matched its pin)."""
    pins = read_pins(root, name)
    new = {s.name: {"sha256": got["sha256"], "size": got["size"], "source": src, "fetched_at": record["installed_at"]}
           for s, _, src, got in fetched if s.first_fetch and s.name not in pins}
    if new:
        _mkdir(pins_path(root, name).parent)
        atomic_write_json(pins_path(root, name), {**pins, **new})


def _drop_empty_downloads(root: Path, name: str) -> None:
    """Remove the set's download folder and the downloads folder when nothing is left to resume."""
    with contextlib.suppress(OSError):
        (downloads_dir(root) / name).rmdir()
        downloads_dir(root).rmdir()


def _download_verified(name: str, spec: FileSpec, root: Path, url: str | None, reporter: Reporter) -> tuple[Path, str, dict[str, Any]]:
    """Fetch ``spec`` from its first working source into a verified ``.part`` file."""
    part = _mkdir(downloads_dir(root) / name) / f"{spec.name}.part"
    tried: list[str] = []
    last: Exception | None = None
    for src in sources(spec, url):
        tried.append(src)
        for _fresh_try in range(2):
            resumed = part.exists() and part.stat().st_size > 0
            try:
                _fetch(src, part, spec.size, reporter, f"{name}: {spec.name}")
                return part, src, verify_file(part, spec)
            except OSError as err:  # the local disk (network errors are _Retryable, not OSError)
                with contextlib.suppress(OSError):
                    part.unlink()
                raise _disk_error(part, err) from err
            except ChecksumError as err:
                part.unlink(missing_ok=True)
                last = err
                if not resumed:
                    break  # a fresh download that mismatches will mismatch again: next source
                reporter.log(f"{name}: the resumed file does not verify; downloading it again from the start")
            except (_Retryable, _Refused) as err:
                last = err
                break
    hint = f"pass --url {name}=URL or set HOOD_MIRROR to a mirror"
    if isinstance(last, ChecksumError):
        raise ChecksumError(
            f"{name}: {spec.name} from {tried[-1]} failed verification ({last}); the file was removed and nothing was extracted; {hint}"
        )
    again = "rerun to resume, or " if isinstance(last, _Retryable) else ""  # a refusal will be refused again
    raise DownloadError(f"could not download {name} from {', '.join(tried)}: {last}; {again}{hint}")


def content_record(folder: Path) -> dict[str, Any]:
    """Count, bytes and one sha256 over every file's path, size and content: what ``--verify`` re-checks."""
    overall = hashlib.sha256()
    count = total = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != registry.COMPLETE_MARKER):
        rel = path.relative_to(folder).as_posix()
        file_hash = digests(path)["sha256"]
        size = path.stat().st_size
        overall.update(f"{rel}\0{size}\0{file_hash}\n".encode())
        count += 1
        total += size
    return {"files": count, "bytes": total, "sha256": overall.hexdigest()}


def _place(spec: FileSpec, path: Path, dest: Path, keep_source: bool) -> None:
    """Put one verified file into the set's temporary folder: extract an archive, move/copy a plain file."""
    if spec.format in ("mat", "npy"):
        target = dest / spec.name
        if keep_source:  # the user's own file: copied, never linked, so later edits to it cannot reach the set
            shutil.copy2(path, target)
            return
        try:
            os.link(path, target)  # instant, and the verified download survives a crash until the set is in place
        except OSError:
            shutil.copy2(path, target)
        return
    limit = max(EXTRACT_MIN_BYTES, EXTRACT_RATIO * path.stat().st_size)
    safe_extract(path, spec.format, dest, limit)
    strip_single_top(dest)


# --- install, verify ------------------------------------------------------------------------------


def install(
    name: str,
    root: Path,
    *,
    url: str | None = None,
    from_file: Path | None = None,
    force: bool = False,
    reporter: Reporter | None = None,
) -> InstallResult:
    """Make ``<root>/<dir>`` a complete, verified copy of set ``name``; skip it when already installed.

    ``url`` replaces the manifest's sources (``--url``); ``from_file`` installs from a local archive instead of
    downloading (it is verified the same way and never deleted). ``force`` reinstalls an installed set.
    """
    reporter = reporter or NullReporter()
    _entry(name)  # the one-line error for unknown and manual-only names
    name = registry.canonical(name) or name  # an alias installs its set, under the set's own name
    final = registry.set_dir(name, root)
    if registry.is_installed(name, root) and not force:
        return InstallResult(name, "present", final)
    with _exclusive(root, name):
        if registry.is_installed(name, root) and not force:  # another process finished it while we waited
            return InstallResult(name, "present", final)
        return _install_locked(name, root, final, url, from_file, force, reporter)


@contextlib.contextmanager
def _exclusive(root: Path, name: str) -> Iterator[None]:
    """One ``hood download`` per set and data root at a time (two cluster jobs would share the .part file).

    The lock is the set's download folder's (:mod:`hood.locks`): released by the kernel when the process
    dies, so a crash never leaves a stale lock.
    """
    folder = _mkdir(downloads_dir(root) / name)
    try:
        with exclusive(folder, f"hood download {name}", "wait for it to finish"):
            yield
    finally:
        _drop_empty_downloads(root, name)


def _install_locked(
    name: str, root: Path, final: Path, url: str | None, from_file: Path | None, force: bool, reporter: Reporter
) -> InstallResult:
    e = _entry(name)
    if final.exists() and not force:
        raise DataError(f"{final} exists but is not a complete install (no {registry.COMPLETE_MARKER}); remove it, or pass --force to replace it")
    pins = read_pins(root, name)
    specs = [pinned(s, pins) for s in file_specs(name)]
    if from_file is not None and len(specs) != 1:
        raise DataError(f"'{name}' is made of {len(specs)} files; --from takes a set of exactly one file")
    fetched: list[tuple[FileSpec, Path, str, dict[str, Any]]] = []
    for spec in specs:
        if from_file is not None:
            if not from_file.is_file():
                raise DataError(f"--from {from_file}: no such file")
            try:
                got = verify_file(from_file, spec)
            except ChecksumError as err:
                raise ChecksumError(f"{from_file} is not the {spec.name} the registry names for '{name}' ({err}); nothing was installed") from None
            fetched.append((spec, from_file, f"file:{from_file.resolve()}", got))
        else:
            fetched.append((spec, *_download_verified(name, spec, root, url, reporter)))
    record = {
        "name": name,
        "hood_version": __version__,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "layout": e["layout"],
        "files": [{"name": s.name, "source": src, **got} for s, _, src, got in fetched],
    }
    _assemble(name, e, final, fetched, record, keep_sources=from_file is not None, reporter=reporter)
    _write_pins(root, name, fetched, record)
    if from_file is None:
        for _, path, _, _ in fetched:
            path.unlink(missing_ok=True)
    return InstallResult(name, "installed", final, record["files"][0]["source"])


def _assemble(
    name: str,
    e: dict[str, Any],
    final: Path,
    fetched: list[tuple[FileSpec, Path, str, dict[str, Any]]],
    record: dict[str, Any],
    keep_sources: bool,
    reporter: Reporter,
) -> None:
    """Build the set in a hidden folder beside ``final``, marker included, and rename it into place last."""
    tmp: Path | None = None
    old: Path | None = None
    try:
        _mkdir(final.parent)  # a nested dir (openood/images_classic/tin) needs its parents
        tmp = final.parent / f".{final.name}.hood-tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()  # not mkdtemp: its 0700 mode would become the installed folder's
        for spec, path, _, _ in fetched:
            reporter.log(f"{name}: unpacking {spec.name}")
            _place(spec, path, tmp, keep_sources)
        if e.get("postprocess"):
            POSTPROCESS[e["postprocess"]](tmp)
        problem = layout_problem(e["layout"], tmp)
        if problem:
            raise DataError(f"'{name}': the verified file unpacks to an unexpected layout ({problem}); nothing was installed")
        record["content"] = content_record(tmp)
        atomic_write_json(tmp / registry.COMPLETE_MARKER, record)
        if final.exists():  # --force: keep the old copy until the new one is in place
            old = final.rename(final.parent / f".{final.name}.hood-old-{os.getpid()}")
        tmp.rename(final)
        tmp = None
    except OSError as err:
        if old is not None and not final.exists():
            old.rename(final)
            old = None
        raise _disk_error(final, err) from err
    finally:
        for leftover in (tmp, old):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)


def verify_installed(name: str, root: Path) -> VerifyResult:
    """Re-check an installed set against the record in its marker and the manifest's checksums."""
    name = registry.canonical(name) or name
    path = registry.set_dir(name, root)
    if not registry.is_installed(name, root):
        return VerifyResult(name, "missing", f"run `hood download {name}`", path)
    record = registry.read_marker(name, root)
    if record is None:
        return VerifyResult(name, "unrecorded", "present, but installed by another tool: nothing to check against", path)
    expected = {s.name: s.md5 for s in file_specs(name)}
    for f in record.get("files", []):
        if expected.get(f.get("name")) not in (None, f.get("md5")):
            return VerifyResult(name, "modified", f"installed from {f.get('name')} with md5 {f.get('md5')}, the registry now names {expected[f['name']]}", path)
    want = record.get("content") or {}
    got = content_record(path)
    if got != want:
        return VerifyResult(
            name, "modified", f"{got['files']} files / {got['bytes']:,} bytes, recorded {want.get('files')} / {want.get('bytes', 0):,}; reinstall with --force", path
        )
    return VerifyResult(name, "verified", f"{got['files']} files match the record", path)
