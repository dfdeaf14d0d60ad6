"""The staging area: immutable, content-addressed blobs holding the exact bytes received.

``Staging.receive`` copies a stream to a temporary file, fsyncs it and renames it atomically to
``blobs/ab/cd/<xxh3-128 of the raw bytes>``; the same pass fingerprints the *content* (for gzip, the
decompressed bytes), so a gzipped copy of a file already received has the same fingerprint. A zip is
examined after it is staged (its directory is at its end) and yields one content fingerprint per member.

Decompression is bounded: a member may not expand beyond ``IntakeLimits.max_expanded_bytes`` nor, past
``ratio_floor_bytes``, beyond ``max_ratio`` times its compressed size; nor may an archive as a whole (a zip's
members together, a gzip's content) expand beyond ``max_archive_expanded_bytes`` nor, past the same floor,
``max_ratio`` times the archive's size, so a zip of many members each under the limits is bounded too. A
breach, like a corrupt archive, does not lose the bytes: the blob is staged and the breach is reported in
``StagedBlob.error``.
"""

from __future__ import annotations

import filecmp
import io
import itertools
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable, Iterator

import xxhash

from .config import IntakeLimits
from .errors import IntakeError

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
ZIP_EMPTY_MAGIC = b"PK\x05\x06"


# Progress of a long task (an upload staged, a file loaded), for a caller that shows it (the CLI's bar):
OnProgress = Callable[[int, int], None]
"""One task's progress: (bytes done, rows done), called once per chunk read or batch loaded, never per row."""
ProgressFactory = Callable[[str, int], "OnProgress | None"]
"""Starts reporting one task: given what it is ("staging NAME", "loading #12 NAME") and its size in bytes,
the task's :data:`OnProgress`, or None to report nothing (a small file)."""


class ProgressReader:
    """A binary stream read through, telling ``report`` how many bytes have been read so far after each read
    (chunks of a MiB when staging or parsing: the hot path pays one call per chunk)."""

    def __init__(self, raw: BinaryIO, report: Callable[[int], None]):
        self.raw = raw
        self.report = report
        self.done = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self._count(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        for line in self.raw:
            self._count(len(line))
            yield line

    def _count(self, n: int) -> None:
        if n:
            self.done += n
            self.report(self.done)

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def __enter__(self) -> "ProgressReader":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class ContentError(IntakeError):
    """The content cannot be read as what it claims to be (corrupt archive, decompression limit)."""


@dataclass(frozen=True)
class Member:
    """One file inside a blob: the blob itself, the gzip's content, or one zip member."""

    name: str | None  # the member's path inside a zip; None for plain and gzip blobs
    fingerprint: str
    size: int


@dataclass
class StagedBlob:
    key: str
    path: Path
    size: int
    compression: str  # none | gzip | zip
    members: list[Member] = field(default_factory=list)
    error: str | None = None


class Staging:
    def __init__(self, root: Path, limits: IntakeLimits | None = None):
        self.root = Path(root)
        self.limits = limits or IntakeLimits()
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        if len(key) != 32 or any(c not in "0123456789abcdef" for c in key):
            raise IntakeError(f"not a blob key: {key!r}")
        return self.blobs / key[:2] / key[2:4] / key

    def sweep(self, older_than_seconds: float = 6 * 3600) -> int:
        """Remove temporary files a crashed process left behind (half-received files, load scratch files).
        Only old ones: a younger one may belong to a process still at work."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self.tmp.iterdir():
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
                if path.is_dir():  # a load's spilled batches (``ingest.parsed``)
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
        return removed

    def receive(self, stream: BinaryIO) -> StagedBlob:
        """Stage the stream's bytes (exactly as read) and fingerprint its content in the same pass."""
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="incoming-")
        tmp_path = Path(tmp_name)
        error = None
        try:
            with os.fdopen(fd, "wb") as out:
                tee = _TeeReader(stream, out)
                first = tee.read(CHUNK)
                chunks = itertools.chain([first], iter(lambda: tee.read(CHUNK), b""))
                compression = "gzip" if first.startswith(GZIP_MAGIC) else "none"
                if first.startswith((ZIP_MAGIC, ZIP_EMPTY_MAGIC)):
                    compression = "zip"
                content = chunks
                if compression == "gzip":
                    content = gunzip(chunks, self.limits, "gzip content", lambda: tee.size)
                try:
                    fingerprint, expanded = _digest(content)
                except ContentError as exc:
                    error = str(exc)
                    for _ in chunks:  # keep copying: the bytes are staged whatever their content
                        pass
                out.flush()
                os.fsync(out.fileno())
            key = tee.hash.hexdigest()
            final = self.path_of(key)
            self._install(tmp_path, final)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

        blob = StagedBlob(key=key, path=final, size=tee.size, compression=compression, error=error)
        if compression == "zip":
            try:
                blob.members = list(self._zip_members(final))
            except ContentError as exc:
                blob.error = str(exc)
        elif error is None:
            blob.members = [Member(None, fingerprint, expanded)]
        return blob

    def examine(self, key: str) -> StagedBlob:
        """Fingerprint a blob already staged (used by retry, perhaps under changed limits)."""
        with open(self.path_of(key), "rb") as fh:
            return self.receive(fh)

    def _install(self, tmp_path: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # Same 128-bit address: keep the blob already there, after making sure it really is these bytes.
            if not filecmp.cmp(tmp_path, final, shallow=False):
                raise IntakeError(f"staging address collision at {final.name}; refusing to overwrite")
            tmp_path.unlink()
            return
        os.chmod(tmp_path, 0o444)
        os.replace(tmp_path, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _zip_members(self, path: Path) -> Iterator[Member]:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ContentError(f"not a readable zip archive: {exc}") from None
        with archive:
            infos = [i for i in archive.infolist() if not i.is_dir() and not _is_junk_member(i.filename)]
            if len(infos) > self.limits.max_zip_members:
                raise ContentError(
                    f"zip has {len(infos)} members; the limit is {self.limits.max_zip_members} "
                    "(intake.max_zip_members)"
                )
            archive_size = path.stat().st_size
            total = 0  # every member's expanded bytes so far
            for info in infos:
                digest = xxhash.xxh3_128()
                expanded = 0
                try:
                    with archive.open(info) as member:
                        while chunk := member.read(CHUNK):
                            expanded += len(chunk)
                            total += len(chunk)
                            _check_expansion(self.limits, info.filename, expanded, max(info.compress_size, 1))
                            _check_expansion(self.limits, "the zip as a whole", total, archive_size,
                                             bounds=ARCHIVE)
                            digest.update(chunk)
                except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError) as exc:
                    raise ContentError(f"zip member {info.filename!r} cannot be read: {exc}") from None
                yield Member(info.filename, digest.hexdigest(), expanded)

    def open_member(self, key: str, compression: str, member: str | None) -> BinaryIO:
        """A stream of one member's content (decompressed), under the same expansion limits."""
        path = self.path_of(key)
        if compression == "none":
            return open(path, "rb")
        if compression == "gzip":
            raw = open(path, "rb")
            size = path.stat().st_size
            chunks = gunzip(iter(lambda: raw.read(CHUNK), b""), self.limits, path.name, lambda: size)
            return io.BufferedReader(_ChunkReader(chunks, closing=[raw]), CHUNK)
        if compression == "zip":
            archive = zipfile.ZipFile(path)
            try:
                info = archive.getinfo(member or "")
            except KeyError:
                archive.close()
                raise IntakeError(f"zip member {member!r} is not in blob {key}") from None
            stream = archive.open(info)
            chunks = _limited(iter(lambda: stream.read(CHUNK), b""), self.limits, info.filename, info.compress_size)
            return io.BufferedReader(_ChunkReader(chunks, closing=[stream, archive]), CHUNK)
        raise IntakeError(f"unknown compression {compression!r}")


def gunzip(chunks: Iterable[bytes], limits: IntakeLimits, name: str, compressed: Callable[[], int]) -> Iterator[bytes]:
    """Decompress a (possibly multi-member, possibly zero-padded) gzip stream, chunk by chunk, within limits:
    its content, all gzip members together, is one file and the whole archive, so both bounds apply."""
    decomp = None
    members = 0
    expanded = 0
    for chunk in chunks:
        data = chunk
        while data:
            if decomp is None:
                data = data.lstrip(b"\x00")
                if not data:
                    break
                decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = decomp.decompress(data, CHUNK)
            except zlib.error as exc:
                raise ContentError(f"not a valid gzip stream: {exc}") from None
            if out:
                expanded += len(out)
                _check_expansion(limits, name, expanded, compressed(), bounds=MEMBER + ARCHIVE)
                yield out
            if decomp.eof:
                data = decomp.unused_data
                decomp = None
                members += 1
            else:
                data = decomp.unconsumed_tail
    if decomp is not None:
        out = decomp.flush()
        if out:
            expanded += len(out)
            _check_expansion(limits, name, expanded, compressed(), bounds=MEMBER + ARCHIVE)
            yield out
        if not decomp.eof:
            raise ContentError("not a valid gzip stream: truncated")
        members += 1
    if members == 0:
        raise ContentError("not a valid gzip stream: empty")


def _limited(chunks: Iterable[bytes], limits: IntakeLimits, name: str, compressed: int) -> Iterator[bytes]:
    expanded = 0
    for chunk in chunks:
        expanded += len(chunk)
        _check_expansion(limits, name, expanded, max(compressed, 1))
        yield chunk


def _digest(chunks: Iterable[bytes]) -> tuple[str, int]:
    digest = xxhash.xxh3_128()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def safe_name(name: str) -> str:
    """A remote or uploaded name reduced to a bare file name: no directories, no control characters."""
    base = PurePosixPath(name.replace("\\", "/")).name
    cleaned = "".join(ch if ch.isprintable() else "_" for ch in base).strip()
    if cleaned in ("", ".", ".."):
        return "unnamed"
    return cleaned


def _is_junk_member(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and (parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store")


# The ``IntakeLimits`` size bounds on one member's content, and on an archive's members together.
MEMBER = ("max_expanded_bytes",)
ARCHIVE = ("max_archive_expanded_bytes",)


def _check_expansion(limits: IntakeLimits, name: str, expanded: int, compressed: int,
                     bounds: tuple[str, ...] = MEMBER) -> None:
    """Raise ContentError once ``expanded`` bytes from ``compressed`` ones breach a size bound or the ratio."""
    for bound in bounds:
        most = getattr(limits, bound)
        if expanded > most:
            raise ContentError(
                f"{name} expands beyond {most} bytes (intake.{bound}); refused as a possible decompression bomb"
            )
    if expanded > limits.ratio_floor_bytes and expanded > compressed * limits.max_ratio:
        raise ContentError(
            f"{name} expands more than {limits.max_ratio}:1 (intake.max_ratio); "
            "refused as a possible decompression bomb"
        )


class _TeeReader:
    """Reads from a stream while writing every byte to ``out`` and hashing it: staging and
    fingerprinting in one pass."""

    def __init__(self, stream: BinaryIO, out: BinaryIO):
        self.stream = stream
        self.out = out
        self.hash = xxhash.xxh3_128()
        self.size = 0

    def read(self, n: int) -> bytes:
        try:
            data = self.stream.read(n)
        except OSError as exc:
            raise IntakeError(f"cannot read the incoming file: {exc.strerror or exc}") from exc
        if data:
            self.out.write(data)
            self.hash.update(data)
            self.size += len(data)
        return data


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes], closing: list):
        self.chunks = chunks
        self.closing = closing
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        n = min(len(target), len(self.pending))
        target[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def close(self) -> None:
        for resource in self.closing:
            resource.close()
        super().close()
