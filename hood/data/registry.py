"""The data-set registry: names, aliases, roles and on-disk layouts, and the data root.

The built-in entries are ``manifest.json``; ``$HOOD_REGISTRY`` names a JSON file of the user's own whose entries
add to them or replace their keys (a lab's own sets, a mirror with other files and checksums). This module is
what the loaders need (where a named set lives and whether it is installed). Fetching, verifying and unpacking
belong to :mod:`hood.data.download`, driven by the same entries.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import stat
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hood.data.layout import POSTPROCESS, cifar_files_present
from hood.errors import ConfigError

COMPLETE_MARKER = ".hood-complete"
REGISTRY_ENV = "HOOD_REGISTRY"
ROLES = ("id", "ood", "aux", "lists")  # lists: image lists a benchmark reads (hood/data/benchmarks.py)
LAYOUTS = ("cifar-python", "images", "splits", "svhn-mat", "npy", "imglist")
FORMATS = ("tar", "tar.gz", "zip", "mat", "npy")
ENTRY_KEYS = ("role", "title", "layout", "dir", "files", "aliases", "transform", "license", "citation", "note", "postprocess")
FILE_KEYS = ("name", "url", "mirrors", "md5", "sha256", "size", "format", "checksum")
FIRST_FETCH = "first-fetch"  # a file's "checksum" where the publisher gives none: the first fetch's sha256 is pinned
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # no dots or slashes: a name must never look like a path
_HEX = {"md5": 32, "sha256": 64}
MAX_REGISTRY_BYTES = 16 * 2**20  # a registry lists data sets: far below this
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def fetchable(url: str) -> bool:
    """A URL hood fetches: http(s) with a host, or a file:// path (never javascript:, ftp:, or a bare word)."""
    parts = urlsplit(url)
    return (parts.scheme in ("http", "https") and bool(parts.netloc)) or (parts.scheme == "file" and bool(parts.path))


class RegistryError(ConfigError):
    """``$HOOD_REGISTRY`` names a file that is not a valid registry; the message names the file and the entry."""


def load_manifest() -> dict[str, Any]:
    """The built-in manifest with the entries of ``$HOOD_REGISTRY`` applied (re-read when that file changes)."""
    path = os.environ.get(REGISTRY_ENV, "").strip()
    if not path:
        return _builtin()
    try:
        st = Path(path).expanduser().stat()
    except OSError as err:
        raise RegistryError(f"{REGISTRY_ENV}={path}: {err.strerror or err}; point it at a JSON registry file, or unset it") from None
    if not stat.S_ISREG(st.st_mode):  # /dev/zero would be read forever, a FIFO waited on
        raise RegistryError(f"{REGISTRY_ENV}={path} is not a regular file (a device, FIFO, socket or folder); "
                            f"point it at a JSON registry file, or unset it")
    if st.st_size > MAX_REGISTRY_BYTES:
        raise RegistryError(f"{REGISTRY_ENV}={path} is {st.st_size:,} bytes, above the {MAX_REGISTRY_BYTES:,} a registry "
                            f"file may hold; point it at a JSON registry file, or unset it")
    return _with_user_registry(path, str(Path(path).expanduser().resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=1)
def _builtin() -> dict[str, Any]:
    return json.loads(resources.files("hood.data").joinpath("manifest.json").read_text())


@lru_cache(maxsize=4)
def _with_user_registry(path: str, resolved: str, _mtime_ns: int, _size: int) -> dict[str, Any]:
    """Built-in entries, then the user's: a new name adds a set, a known one replaces the keys it gives.
    Cached per file and version (``path`` as the user wrote it, for the messages)."""
    where = f"{REGISTRY_ENV}={path}"
    user = _read_user_file(Path(resolved), where)
    merged = copy.deepcopy(_builtin())
    for name, e in user["sets"].items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise RegistryError(f"{where}: set name {name!r} must be lower-case letters, digits, '-' or '_' (no dots or slashes)")
        if not isinstance(e, dict):
            raise RegistryError(f"{where}: set '{name}' must be an object of keys ({', '.join(ENTRY_KEYS[:5])}, ...)")
        merged["sets"][name] = {**merged["sets"].get(name, {}), **e}
        _check_entry(name, merged["sets"][name], f"{where}: set '{name}'")
    _check_unique(merged["sets"], where)
    return merged


def _read_user_file(path: Path, where: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RegistryError(f"{where}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RegistryError(f"{where} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sets"), dict):
        raise RegistryError(f'{where}: expected a JSON object {{"sets": {{"NAME": {{...}}}}}}, one entry per data set')
    extra = sorted(set(data) - {"sets", "doc"})
    if extra:
        raise RegistryError(f"{where}: unknown top-level key '{extra[0]}'; a registry file holds \"sets\" (and an optional \"doc\")")
    return data


def _check_entry(name: str, e: dict[str, Any], where: str) -> None:
    """One line for the first thing wrong with an entry (after merging with the built-in one of that name)."""
    for key in e:
        if key not in ENTRY_KEYS:
            raise RegistryError(f"{where}: unknown key '{key}'{_closest(key, ENTRY_KEYS)}; keys: {', '.join(ENTRY_KEYS)}")
    for key in ("role", "layout", "dir", "files"):
        if key not in e:
            raise RegistryError(f"{where}: '{key}' is missing (a new set needs role, layout, dir and files)")
    if e["role"] not in ROLES:
        raise RegistryError(f"{where}: role must be one of {', '.join(ROLES)}, got {e['role']!r}")
    if e["layout"] not in LAYOUTS:
        raise RegistryError(f"{where}: layout must be one of {', '.join(LAYOUTS)}, got {e['layout']!r}")
    d = e["dir"]
    if not isinstance(d, str) or not d or _UNPRINTABLE.search(d) or d.startswith(("/", ".", "~")) or "\\" in d or ".." in d.split("/"):
        raise RegistryError(f"{where}: dir must be a folder name relative to the data root, got {d!r}")
    aliases = e.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and _NAME_RE.match(a) for a in aliases):
        raise RegistryError(f"{where}: aliases must be a list of names (lower-case letters, digits, '-', '_'), got {aliases!r}")
    if e.get("postprocess") is not None:
        if e["postprocess"] not in POSTPROCESS:
            raise RegistryError(f"{where}: postprocess must be one of {', '.join(POSTPROCESS)}, got {e['postprocess']!r}")
    files = e["files"]
    if not isinstance(files, list) or not files:
        raise RegistryError(f"{where}: files must be a non-empty list of {{name, url, format, md5 or sha256}} objects")
    for i, f in enumerate(files):
        _check_file(f, f"{where}, files[{i}]")


def _check_file(f: Any, where: str) -> None:
    if not isinstance(f, dict):
        raise RegistryError(f"{where}: expected an object with name, url, format and md5 or sha256")
    for key in f:
        if key not in FILE_KEYS:
            raise RegistryError(f"{where}: unknown key '{key}'{_closest(key, FILE_KEYS)}; keys: {', '.join(FILE_KEYS)}")
    for key in ("name", "url", "format"):
        if not isinstance(f.get(key), str) or not f[key]:
            raise RegistryError(f"{where}: '{key}' must be a non-empty string")
    if "/" in f["name"] or "\\" in f["name"] or f["name"].startswith(".") or _UNPRINTABLE.search(f["name"]):
        raise RegistryError(f"{where}: name must be a plain file name (it is the name under HOOD_MIRROR), got {f['name']!r}")
    if f["format"] not in FORMATS:
        raise RegistryError(f"{where}: format must be one of {', '.join(FORMATS)}, got {f['format']!r}")
    for key, length in _HEX.items():
        v = f.get(key)
        if v is not None and not (isinstance(v, str) and re.fullmatch(f"[0-9a-f]{{{length}}}", v)):
            raise RegistryError(f"{where}: {key} must be {length} lower-case hex digits or null, got {v!r}")
    if f.get("checksum") is not None:
        if f["checksum"] != FIRST_FETCH:
            raise RegistryError(f"{where}: checksum may only be {FIRST_FETCH!r} (no published checksum), got {f['checksum']!r}")
        if f.get("md5") or f.get("sha256"):
            raise RegistryError(f"{where}: checksum {FIRST_FETCH!r} is for files without a published md5/sha256; drop one or the other")
    elif not f.get("md5") and not f.get("sha256"):
        raise RegistryError(f"{where}: give md5 or sha256 (e.g. the output of `sha256sum {f['name']}`) so downloads can be verified, "
                            f"or checksum {FIRST_FETCH!r} where the publisher gives none")
    size = f.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise RegistryError(f"{where}: size must be a byte count or null, got {size!r}")
    mirrors = f.get("mirrors", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise RegistryError(f"{where}: mirrors must be a list of URLs")
    for url in [f["url"], *mirrors]:  # refused here, not retried as a connection failure
        if not fetchable(url):
            raise RegistryError(f"{where}: {url[:200]!r} is not a URL hood can fetch; write http(s)://HOST/PATH or file:///PATH")


def _check_unique(sets: dict[str, Any], where: str) -> None:
    """Every name and alias names one set, none shadows a built-in set, and no two sets share a folder."""
    from hood.data.builtin import BUILTIN_NAMES

    owner: dict[str, str] = {}
    folders: dict[str, str] = {}
    for name, e in sets.items():
        for word in (name, *e.get("aliases", [])):
            if word in BUILTIN_NAMES:
                raise RegistryError(f"{where}: '{word}' is the name of a built-in set; choose another name for '{name}'")
            if word in owner:
                raise RegistryError(f"{where}: '{word}' names both '{owner[word]}' and '{name}'; every name and alias must be unique")
            owner[word] = name
        if e["dir"] in folders:
            raise RegistryError(f"{where}: sets '{folders[e['dir']]}' and '{name}' both use dir '{e['dir']}'; give each its own folder")
        folders[e["dir"]] = name


def _closest(word: str, options: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def registry_names() -> list[str]:
    return sorted(load_manifest()["sets"])


def canonical(name: str) -> str | None:
    """The registry name that ``name`` is or is an alias of (any letter case), else None."""
    sets = load_manifest()["sets"]
    if name in sets:
        return name
    key = name.lower()
    for n, e in sets.items():
        if key == n or key in e.get("aliases", ()):
            return n
    return None


def aliases(name: str) -> list[str]:
    e = entry(name)
    return list(e.get("aliases", [])) if e else []


def entry(name: str) -> dict[str, Any] | None:
    """The entry of a registry name or alias, else None."""
    n = canonical(name)
    return load_manifest()["sets"][n] if n is not None else None


def manual_names() -> list[str]:
    """Entries hood lists but cannot fetch (e.g. the authors' weights behind a browser-only share)."""
    return sorted(load_manifest().get("manual", {}))


def manual_entry(name: str) -> dict[str, Any] | None:
    return load_manifest().get("manual", {}).get(name)


def default_data_root() -> Path:
    """``$HOOD_DATA``, else ``$XDG_DATA_HOME/hood`` (``~/.local/share/hood``)."""
    if os.environ.get("HOOD_DATA"):
        return Path(os.environ["HOOD_DATA"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "hood"


def resolve_root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root else default_data_root()


def set_dir(name: str, root: Path) -> Path:
    e = entry(name)
    if e is None:
        raise KeyError(name)
    return root / e["dir"]


def is_installed(name: str, root: Path) -> bool:
    """A set counts as present only when complete: hood's marker, or torchvision's own CIFAR files."""
    d = set_dir(name, root)
    if (d / COMPLETE_MARKER).is_file():
        return True
    e = entry(name) or {}
    return e.get("layout") == "cifar-python" and cifar_files_present(d)


def read_marker(name: str, root: Path) -> dict[str, Any] | None:
    """The verification record ``hood download`` wrote into the set's marker, or None (absent/unreadable)."""
    try:
        record = json.loads((set_dir(name, root) / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def suggest(name: str, extra: list[str] | tuple[str, ...] = ()) -> str:
    """' (did you mean X?)' for the closest known name, or ''."""
    words = registry_names() + [a for n in registry_names() for a in aliases(n)] + manual_names() + list(extra)
    close = difflib.get_close_matches(name, words, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
