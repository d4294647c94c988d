"""Weights manager: one manifest (``weights.toml``), a checksum-verified cache, explicit downloads.

    wm = WeightsManager()
    path = wm.path("syncnet_v2")      # verified local file, or WeightsMissing with what to do
    wm.fetch(["syncnet_v2"])          # download (URL / Google Drive via gdown / Hugging Face)

Cache: ``$KDBENCH_HOME/weights/<name>/<file>`` (``KDBENCH_HOME`` defaults to ``~/.cache/kdbench``).
A file whose checksum differs from the manifest is refused unless ``KDBENCH_ALLOW_UNVERIFIED=1``;
then it is used and :meth:`WeightsManager.record` reports ``verified: false`` for every result.
``KDBENCH_OFFLINE=1`` forbids downloads. ``KDBENCH_WEIGHT_<NAME>=/path`` points one entry at a
local file (e.g. a checkpoint you already have); its checksum is still checked.

Mirrors (a lab server, an air-gapped copy, the tests' loopback server):
``KDBENCH_WEIGHTS_MIRROR=http://host:port/base/`` downloads every non-package entry from
``<base>/<name>/<file>`` (the cache's layout) instead of its URL / Google Drive / Hugging Face source;
the file is still checked against the manifest's checksum and deleted if it fails.
``KDBENCH_WEIGHTS_MANIFEST=/path/weights.toml`` replaces the built-in manifest (same format), e.g. to pin
the checksums of a mirror's own files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KdbenchError, WeightsChecksumError, WeightsMissing
from .files import git_blob_sha1, sha256_file
from .home import download_url, kdbench_home  # noqa: F401 (re-exported: where kdbench keeps files)

MANIFEST = Path(__file__).with_name("weights.toml")


_PINS_WRITTEN: dict[str, Path] = {}
"""First-use pins written by this process: weight file (resolved) -> its pin file (see :func:`forget_first_use_pin`)."""


def forget_first_use_pin(path: str | os.PathLike) -> bool:
    """Remove the first-use pin this process wrote for ``path`` (a file a loader then refused: a refused file must
    not stay trusted as the first one seen). True when a pin was removed; pins of earlier processes are kept."""
    pin = _PINS_WRITTEN.pop(str(Path(path).resolve()), None)
    if pin is None or not pin.is_file():
        return False
    pin.unlink()
    return True


@dataclass(frozen=True)
class WeightEntry:
    name: str
    file: str
    url: str | None = None
    gdrive: str | None = None
    hf_repo: str | None = None
    hf_file: str | None = None
    package: str | None = None
    resource: str | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    git_sha1: str | None = None
    hf_revision: str | None = None
    size: int | None = None
    extract: bool = False
    pin_source: str = ""
    pin_strength: str = ""
    license: str = ""
    used_by: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        why = manifest_entry_problem(self)
        if why:
            raise ManifestError(f"weights manifest entry [{self.name}]: {why}")

    @property
    def source(self) -> str:
        if self.package:
            return f"Python package {self.package} ({self.resource})"
        if self.hf_repo:
            return f"Hugging Face {self.hf_repo}/{self.hf_file}"
        if self.gdrive:
            return f"Google Drive id {self.gdrive} (gdown)"
        return str(self.url)

    @property
    def pinned(self) -> bool:
        """Whether the manifest holds a checksum of the upstream file (else: trust on first use)."""
        return bool(self.sha256 or self.git_sha1 or self.sha256_prefix)

    @property
    def pinned_full(self) -> bool:
        """Whether the pin is a whole digest (sha256 or git blob sha1), not only a prefix: only such a match lets a
        baseline worker unpickle the file beyond tensors (:mod:`kdbench.runtime.compat`)."""
        return bool(self.sha256 or self.git_sha1)

    @property
    def pin_label(self) -> str:
        """``pin kind (strength)`` for ``kdbench weights ls``, e.g. ``sha256 (official)``, ``tofu``."""
        return f"{self.pin_kind} ({self.pin_strength})" if self.pin_strength and self.pinned else self.pin_kind

    @property
    def pin_kind(self) -> str:
        """How the file is pinned: ``sha256+git-blob``, ``sha256``, ``git-blob``, ``sha256-prefix`` or ``tofu``."""
        kinds = [k for k, v in (("sha256", self.sha256), ("git-blob", self.git_sha1),
                                ("sha256-prefix", self.sha256_prefix)) if v]
        return "+".join(kinds) or "tofu"

    @property
    def checksum(self) -> str:
        """Human-readable pin: ``sha256:...``, ``git-sha1:...``, ``sha256-prefix:...`` or ``tofu (...)``."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.git_sha1:
            return f"git-sha1:{self.git_sha1}"
        if self.sha256_prefix:
            return f"sha256-prefix:{self.sha256_prefix}"
        return "none published (tofu: the sha256 seen at first use is pinned)"


PIN_STRENGTHS = ("official", "mirror", "low", "ambiguous", "package")
"""Values of ``pin_strength`` (see the head of ``weights.toml``)."""

_HEX = frozenset("0123456789abcdef")


class ManifestError(KdbenchError):
    """A weights manifest that kdbench refuses (a path where a name belongs, a malformed checksum, ...)."""


def _name_problem(what: str, value: Any) -> str | None:
    """Why ``value`` cannot be an entry name or file name (checked as clip ids are: a name, never a path)."""
    from .dataset import clip_id_problem

    why = clip_id_problem(value)
    return None if why is None else f"{what} {value!r} is not a plain file name ({why.replace('clip id', what)})"


def manifest_entry_problem(e: WeightEntry) -> str | None:
    """Why the entry ``e`` is unsafe or malformed, or None. Its name and file become ``weights/<name>/<file>``
    under ``KDBENCH_HOME``, so both must be plain names (no ``/``, ``\\``, leading dot or control characters)."""
    for what, value in (("name", e.name), ("file", e.file)):
        why = _name_problem(what, value)
        if why:
            return why
    for what, value, n in (("sha256", e.sha256, 64), ("git_sha1", e.git_sha1, 40),
                           ("sha256_prefix", e.sha256_prefix, None), ("hf_revision", e.hf_revision, None)):
        if value is None:
            continue
        if not isinstance(value, str) or not value or set(value) - _HEX or (n and len(value) != n) \
                or (n is None and not 7 <= len(value) <= 64):
            return f"{what} = {value!r} is not {f'{n}' if n else '7 to 64'} lowercase hex digits"
    if e.size is not None and (not isinstance(e.size, int) or isinstance(e.size, bool) or e.size <= 0):
        return f"size = {e.size!r} is not a positive number of bytes"
    if e.pin_strength and e.pin_strength not in PIN_STRENGTHS:
        return f"pin_strength = {e.pin_strength!r} is not one of {', '.join(PIN_STRENGTHS)}"
    return None


def load_manifest(path: Path | None = None) -> dict[str, WeightEntry]:
    """The manifest at ``path``, else ``$KDBENCH_WEIGHTS_MANIFEST``, else the built-in ``weights.toml``.

    Raises :class:`ManifestError` (naming the file and entry) for unknown keys, names or files that are paths,
    and malformed checksums, before anything is read or written.
    """
    path = path or Path(os.environ.get("KDBENCH_WEIGHTS_MANIFEST") or MANIFEST)
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    known = {f.name for f in dataclasses.fields(WeightEntry)} - {"name"}
    out = {}
    for name, v in raw.items():
        if not isinstance(v, dict):
            raise ManifestError(f"{path}: {name!r} is not a [table] of a weights entry")
        unknown = sorted(set(v) - known)
        if unknown:
            raise ManifestError(f"{path}: entry [{name}] has unknown keys {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(known))}")
        if "file" not in v:
            raise ManifestError(f"{path}: entry [{name}] has no file = \"...\"")
        try:
            out[name] = WeightEntry(name=name, **{**v, "used_by": tuple(v.get("used_by", ()))})
        except ManifestError as e:
            raise ManifestError(f"{path}: {e}; nothing was read or written") from None
    return out


class WeightsManager:
    """Resolve, verify and download the files of the weights manifest."""

    def __init__(self, home: str | os.PathLike | None = None, manifest: dict[str, WeightEntry] | None = None,
                 overrides: dict[str, str | os.PathLike] | None = None):
        self.home = Path(home) if home else kdbench_home()
        self.entries = manifest if manifest is not None else load_manifest()
        self.overrides = {k: Path(v) for k, v in (overrides or {}).items()}
        self._verified: dict[str, dict[str, Any]] = {}

    # -- lookup ----------------------------------------------------------------------------------
    def entry(self, name: str) -> WeightEntry:
        if name not in self.entries:
            raise WeightsMissing(f"no weights entry {name!r}; known: {', '.join(sorted(self.entries))}")
        return self.entries[name]

    def cache_path(self, name: str) -> Path:
        e = self.entry(name)
        return self.home / "weights" / name / e.file

    def _candidate(self, name: str) -> Path | None:
        e = self.entry(name)
        env = os.environ.get(f"KDBENCH_WEIGHT_{name.upper()}")
        if name in self.overrides:
            return self.overrides[name]
        if env:
            return Path(env)
        if e.package:
            spec = importlib.util.find_spec(e.package)
            if spec is not None and spec.submodule_search_locations:
                p = Path(next(iter(spec.submodule_search_locations))) / str(e.resource)
                if p.is_file():
                    return p
        p = self.cache_path(name)
        return p if p.exists() else None

    def available(self, name: str) -> bool:
        return self._candidate(name) is not None

    def path(self, name: str) -> Path:
        """Local, checksum-verified path of ``name`` (a folder for ``extract`` entries)."""
        e = self.entry(name)
        p = self._candidate(name)
        if p is None:
            raise WeightsMissing(self._missing_message(e))
        self._verify(e, p)
        if e.extract:
            return self._extracted(p)
        return p

    def _missing_message(self, e: WeightEntry) -> str:
        how = f"`kdbench weights fetch {e.name}`"
        if e.package:
            how = f"`pip install {e.package}` (or {how})"
        return (f"weights {e.name!r} ({e.file}) are not available. Run {how}; offline, download it from "
                f"{e.source} and put it at {self.cache_path(e.name)} (or set KDBENCH_WEIGHT_{e.name.upper()}=PATH). "
                f"Expected checksum: {e.checksum}.")

    # -- verification ------------------------------------------------------------------------------
    def verify(self, name: str, force: bool = True) -> dict[str, Any]:
        """Re-hash ``name`` (``force``: ignore the sidecar cache) and return its record (``trust`` says how far
        it can be trusted: ``pinned`` = matches a published checksum, ``tofu`` = no published checksum,
        matches the sha256 pinned at first use, ``unverified`` = differs, used under KDBENCH_ALLOW_UNVERIFIED)."""
        e = self.entry(name)
        p = self._candidate(name)
        if p is None:
            raise WeightsMissing(self._missing_message(e))
        self._verified.pop(f"{name}:{p}", None)
        return self._verify(e, p, force=force)

    def verify_file(self, name: str, path: str | os.PathLike) -> dict[str, Any]:
        """Verify the file ``path`` (e.g. a link target recorded by ``kdbench setup``) as entry ``name``: re-hashed
        when its size, mtime, ctime or inode changed since it was last hashed, else the cached sha256 is used.
        Raises :class:`WeightsChecksumError` when it fails its pin (unless ``KDBENCH_ALLOW_UNVERIFIED=1``)."""
        e, p = self.entry(name), Path(path)
        self._verified.pop(f"{name}:{p}", None)
        return self._verify(e, p)

    def _tofu_pin(self, e: WeightEntry, p: Path | None = None) -> Path:
        """Where the first-use sha256 of ``p`` is kept: ``.pinned_sha256`` in the cache folder for the cached file;
        for a file given by path (``KDBENCH_WEIGHT_<NAME>``, overrides) a ``.<file>.pinned_sha256`` next to it, or,
        where that folder is read-only, a per-path pin in the cache folder."""
        cache_dir = self.home / "weights" / e.name
        if p is None or p == self.cache_path(e.name):
            return cache_dir / ".pinned_sha256"
        beside = p.with_name(f".{p.name}.pinned_sha256")
        if beside.is_file() or os.access(p.parent, os.W_OK):
            return beside
        return cache_dir / f".pinned_sha256-{hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:16]}"

    def _check_tofu(self, e: WeightEntry, digest: str, p: Path | None = None) -> tuple[bool, str]:
        """Compare with the sha256 pinned at first use of ``p``; pin ``digest`` if nothing is pinned yet."""
        pin = self._tofu_pin(e, p)
        if pin.is_file():
            if pin.read_text().strip() != digest:
                return False, (f"sha256 {digest} != the sha256 pinned at first use ({pin}; delete that pin file "
                               "only if you trust the new file)")
            return True, ""
        try:
            pin.parent.mkdir(parents=True, exist_ok=True)
            pin.write_text(digest)
            _PINS_WRITTEN[str((p or self.cache_path(e.name)).resolve())] = pin
        except OSError:
            pass  # read-only home: still recorded as tofu, never as verified
        return True, ""

    def _verify(self, e: WeightEntry, p: Path, force: bool = False) -> dict[str, Any]:
        key = f"{e.name}:{p}"
        if key in self._verified:
            return self._verified[key]
        if p.is_dir():
            return self._verify_folder(e, p, key)
        stat = p.stat()
        # the cache is keyed on everything a rewrite changes: restoring size and mtime does not restore
        # the inode change time (ctime) nor, for a replaced file, the inode
        fingerprint = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
                       "inode": stat.st_ino, "dev": stat.st_dev}
        sidecar = p.with_name(f".{p.name}.verified.json")
        cached = None
        if not force and sidecar.is_file():
            try:
                cached = json.loads(sidecar.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                cached = None
        if not (isinstance(cached, dict) and cached.get("fingerprint") == fingerprint and cached.get("sha256")):
            cached = None
        if e.size is not None and stat.st_size != e.size:  # before hashing: a wrong size needs no hash
            return self._refuse_or_record(e, p, None, f"size {stat.st_size} bytes != pinned {e.size}", key)
        sha256 = cached["sha256"] if cached else sha256_file(p)
        git_sha1 = cached.get("git_sha1") if cached else None
        if e.git_sha1 and git_sha1 is None:
            git_sha1 = git_blob_sha1(p)
        ok, why = True, ""
        if e.sha256 and sha256 != e.sha256:
            ok, why = False, f"sha256 {sha256} != pinned {e.sha256}"
        elif e.git_sha1 and git_sha1 != e.git_sha1:
            ok, why = False, f"git blob sha1 {git_sha1} != pinned {e.git_sha1}"
        elif e.sha256_prefix and not sha256.startswith(e.sha256_prefix):
            ok, why = False, f"sha256 {sha256} does not start with the pinned prefix {e.sha256_prefix}"
        elif not e.pinned:
            ok, why = self._check_tofu(e, sha256, p)
        if ok:
            try:
                sidecar.write_text(json.dumps({"fingerprint": fingerprint, "sha256": sha256, "git_sha1": git_sha1}))
            except OSError:
                pass  # read-only location (e.g. a package's site-packages): verification still holds
        else:
            return self._refuse_or_record(e, p, sha256, why, key)
        rec = {"file": str(p), "sha256": sha256, "size": stat.st_size, "verified": e.pinned,
               "trust": "pinned" if e.pinned else "tofu", "pin": e.checksum, "pin_full": e.pinned_full,
               "fingerprint": {k: fingerprint[k] for k in ("size", "mtime_ns", "inode")}}
        self._verified[key] = rec
        return rec

    def _refuse_or_record(self, e: WeightEntry, p: Path, sha256: str | None, why: str, key: str) -> dict[str, Any]:
        """A file that fails its pin: refused, or under ``KDBENCH_ALLOW_UNVERIFIED=1`` recorded as unverified."""
        if os.environ.get("KDBENCH_ALLOW_UNVERIFIED") != "1":
            raise WeightsChecksumError(
                f"weights {e.name!r} at {p} fail verification: {why}. Delete the file and run "
                f"`kdbench weights fetch {e.name}`, or set KDBENCH_ALLOW_UNVERIFIED=1 to use it anyway "
                "(results then record weights_verified: false)."
            )
        stat = p.stat()
        rec = {"file": str(p), "sha256": sha256 if sha256 is not None else sha256_file(p), "size": stat.st_size,
               "verified": False, "trust": "unverified", "pin": e.checksum, "pin_full": e.pinned_full,
               "problem": why, "fingerprint": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                               "inode": stat.st_ino}}
        self._verified[key] = rec
        return rec

    def _verify_folder(self, e: WeightEntry, folder: Path, key: str) -> dict[str, Any]:
        """An already-extracted pack given by path (e.g. ``~/.insightface/models/buffalo_l``).

        Upstream publishes checksums of the archive only, so the folder is recorded by a content hash of its
        files (``sha256`` over ``name + file sha256`` lines); for an unpinned entry it is trusted on first use
        (``trust: tofu``), never recorded as verified.
        """
        if not e.extract:
            raise WeightsChecksumError(f"weights {e.name!r} must be a file, got the folder {folder}")
        lines = [f"{f.relative_to(folder)} {sha256_file(f)}" for f in sorted(folder.rglob("*")) if f.is_file()]
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        if e.pinned and os.environ.get("KDBENCH_ALLOW_UNVERIFIED") != "1":
            raise WeightsChecksumError(
                f"weights {e.name!r}: the folder {folder} cannot be checked against the archive's pinned checksum; "
                f"point at the archive ({e.file}) instead, or set KDBENCH_ALLOW_UNVERIFIED=1")
        if e.pinned:  # allowed unverified above
            ok, why = False, f"the folder cannot be checked against the archive's pin {e.checksum}"
        else:
            ok, why = self._check_tofu(e, f"folder:{digest}", folder)
        if not ok and os.environ.get("KDBENCH_ALLOW_UNVERIFIED") != "1":
            raise WeightsChecksumError(f"weights {e.name!r} at {folder} fail verification: {why}. Delete the pin "
                                       "file to trust the new content, or set KDBENCH_ALLOW_UNVERIFIED=1")
        rec = {"file": str(folder), "sha256": f"folder:{digest}", "verified": False,
               "trust": "tofu" if ok else "unverified", "pin": e.checksum}
        if not ok:
            rec["problem"] = why
        self._verified[key] = rec
        return rec

    def _extracted(self, archive: Path) -> Path:
        if archive.is_dir():
            return archive
        out = archive.with_suffix("")
        marker = out / ".extracted"
        if not marker.is_file():
            with zipfile.ZipFile(archive) as z:
                z.extractall(out)
            marker.write_text(archive.name)
        # packs like buffalo_l.zip may hold their files at top level or in a folder of the same name
        inner = out / out.name
        return inner if inner.is_dir() and not any(out.glob("*.onnx")) else out

    def record(self) -> dict[str, dict[str, Any]]:
        """Checksums and verification state of every weight used so far (for env.json / metrics.json)."""
        return {k.split(":", 1)[0]: v for k, v in self._verified.items()}

    # -- download ----------------------------------------------------------------------------------
    def fetch(self, name: str, progress: bool = True) -> Path:
        """Download ``name`` into the cache (no-op when present and verified); return its path.

        A download that fails verification is deleted (the next fetch starts afresh) and refused; a file that
        was already there is left alone (it may be one you put there).
        """
        if self.available(name):
            return self.path(name)
        try:
            return self._download(name, progress)
        except WeightsChecksumError as ex:
            self.cache_path(name).unlink(missing_ok=True)
            why = str(ex).split(". Delete the file")[0]
            e = self.entry(name)
            raise WeightsChecksumError(
                f"{why}. The file downloaded from {mirror_url(e) or e.source} was deleted: it changed at the "
                f"source or was corrupted on the way. Retry `kdbench weights fetch {name}`; if it fails again, "
                "do not use that source.") from ex

    def _download(self, name: str, progress: bool = True) -> Path:
        """:meth:`fetch` without the clean-up of a download that fails verification."""
        e = self.entry(name)
        if self.available(name):
            return self.path(name)
        if os.environ.get("KDBENCH_OFFLINE") == "1":
            raise WeightsMissing("KDBENCH_OFFLINE=1: " + self._missing_message(e))
        dest = self.cache_path(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        try:
            if e.package:
                raise WeightsMissing(self._missing_message(e))
            if mirror_url(e):
                download_url(str(mirror_url(e)), tmp, progress)
            elif e.hf_repo:
                from huggingface_hub import hf_hub_download

                got = hf_hub_download(repo_id=e.hf_repo, filename=str(e.hf_file), revision=hf_revision(e))
                shutil.copyfile(got, tmp)
            elif e.gdrive:
                import gdown

                if gdown.download(id=e.gdrive, output=str(tmp), quiet=not progress) is None:
                    raise OSError("gdown returned no file (quota exceeded or file moved)")
            else:
                download_url(str(e.url), tmp, progress)
        except WeightsMissing:
            raise
        except Exception as ex:  # noqa: BLE001 - any network failure becomes the same actionable message
            tmp.unlink(missing_ok=True)
            raise WeightsMissing(f"download failed ({type(ex).__name__}: {ex}). " + self._missing_message(e)) from ex
        os.replace(tmp, dest)
        if not e.pinned:
            self._tofu_pin(e).write_text(sha256_file(dest))
        return self.path(name)

    def status(self) -> list[dict[str, Any]]:
        """One row per entry for ``kdbench weights ls``."""
        rows = []
        for name, e in sorted(self.entries.items()):
            p = self._candidate(name)
            rows.append({"name": name, "file": e.file, "present": p is not None,
                         "path": str(p or self.cache_path(name)), "pin": e.pin_label, "pin_source": e.pin_source,
                         "trust": "pinned" if e.pinned else "tofu", "checksum": e.checksum, "source": e.source,
                         "revision": e.hf_revision or ("main (none pinned)" if e.hf_repo else "-"),
                         "size": e.size, "used_by": ",".join(e.used_by), "license": e.license})
        return rows


def hf_revision(e: WeightEntry) -> str | None:
    """The full commit id of ``e.hf_revision`` (the Hub accepts only full ids; the manifest may hold the short id
    under which the pin was found: it is looked up among the repository's commits). None: no revision pinned."""
    if not e.hf_revision or len(e.hf_revision) == 40:
        return e.hf_revision
    from huggingface_hub import HfApi

    hits = [c.commit_id for c in HfApi().list_repo_commits(str(e.hf_repo)) if c.commit_id.startswith(e.hf_revision)]
    if len(hits) != 1:
        raise OSError(f"the pinned revision {e.hf_revision} of {e.hf_repo} matches {len(hits)} commits of that "
                      "repository (it was rewritten, or the id is ambiguous); no file was downloaded")
    return hits[0]


def mirror_url(e: WeightEntry) -> str | None:
    """``$KDBENCH_WEIGHTS_MIRROR/<name>/<file>`` for a downloadable entry when a mirror is set, else None."""
    base = os.environ.get("KDBENCH_WEIGHTS_MIRROR")
    if not base or e.package:  # packaged files come with `pip install`, never downloaded
        return None
    return f"{base.rstrip('/')}/{e.name}/{e.file}"
