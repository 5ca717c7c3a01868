"""Feature files: HDF5 with one group per split and one float32 dataset per layer.

The file starts with a 512-byte HDF5 user block holding ``dimctl-features``, the schema and the
sha256 of every byte after the block. Readers check it before libhdf5 parses anything: a
truncated or damaged file is refused at once (and libhdf5, which can hang on some damaged
attributes, never sees one).

Schema 1: ``/train`` and ``/test`` groups; in each, float32 datasets (N, …) named by layer and an
int64 ``labels`` dataset (N,) (or (N, K) multi-label). Root attributes: ``dimctl.kind`` =
"features", ``dimctl.schema``, ``dimctl.encoder`` (JSON: the encoder's metadata and sha256),
``dimctl.dataset`` (JSON), ``dimctl.layers`` (JSON list), ``dimctl.version``; from `dimctl extract`
also ``dimctl.precision`` ("fp32" or "bf16": how the encoder ran; the features are float32 either way).

`dimctl extract` writes a file in two steps (``layout_feature_file``, then ``FeatureWriter``):
libhdf5 lays out the metadata with every dataset contiguous and allocated up front, and the
feature bytes then go straight to their places from a writer thread, hashed in file order as they
arrive, while the encoder computes the next batch. The result is an ordinary HDF5 file.

Reading one (``read_features``, also other tools' files) is io/feature_reader.py's job; the
checksum check both share is ``verify_sealed`` here.
"""

import hashlib
import io
import json
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dimctl import __version__
from dimctl.errors import ArtifactError

SCHEMA = 1
SPLITS = ("train", "test")
USERBLOCK = 512
MAGIC = b"dimctl-features"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def looks_like_features(path: str | Path) -> bool:
    """By its first bytes: a dimctl feature file (or another tool's HDF5 or .npz) rather than safetensors."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
    return head.startswith(MAGIC) or head.startswith(HDF5_SIGNATURE) or is_npz(head, path)


def is_npz(head: bytes, path: str | Path) -> bool:
    """An .npz archive (a zip file) by its first bytes and its name."""
    return head.startswith(b"PK") and str(path).endswith(".npz")


def create_feature_file(target) -> h5py.File:
    """An HDF5 file (path or binary file object) with room for the checksum block; call ``seal`` after closing it."""
    return h5py.File(target, "w", userblock_size=USERBLOCK)


def _block(digest: str) -> bytes:
    header = b"%s schema=%d sha256=%s\n" % (MAGIC, SCHEMA, digest.encode())
    return header.ljust(USERBLOCK, b"\0")


def seal_block(data: bytes | memoryview) -> bytes:
    """The checksum block for a whole file's bytes (its first USERBLOCK bytes are replaced by it)."""
    return _block(hashlib.sha256(memoryview(data)[USERBLOCK:]).hexdigest())


def seal_bytes(data: bytes | memoryview) -> bytes:
    return seal_block(data) + bytes(memoryview(data)[USERBLOCK:])


def seal_file(path: str | Path) -> None:
    # Hashed in chunks: a feature file can be larger than the memory left over.
    h = hashlib.sha256()
    with open(path, "r+b") as f:
        f.seek(USERBLOCK)
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
        f.seek(0)
        f.write(_block(h.hexdigest()))


def verify_seal(data: bytes, name: str) -> None:
    """Refuse (ArtifactError) anything but a whole, undamaged dimctl feature file."""
    verify_sealed(bytes(data), bytes(data[:USERBLOCK]), len(data), name)


def init_feature_file(f: h5py.File, encoder: dict, dataset: dict, layers: list[str],
                      sizes: dict[str, int], shapes: dict[str, tuple[int, ...]],
                      label_shape: tuple[int, ...] = (), preallocate: bool = False,
                      precision: str | None = None) -> None:
    """Create every dataset at full size, so extraction can fill them batch by batch.
    ``label_shape`` is () for one class per sample, (K,) for K binary attributes.
    ``preallocate``: give every dataset its place in the file now and never write fill values, so
    its bytes can be written directly (``layout_feature_file``); labels come first in each split,
    then the layers largest first, the order in which a writer can hash them as they arrive."""
    f.attrs["dimctl.kind"] = "features"
    f.attrs["dimctl.schema"] = SCHEMA
    f.attrs["dimctl.encoder"] = json.dumps(encoder)
    f.attrs["dimctl.dataset"] = json.dumps(dataset)
    f.attrs["dimctl.layers"] = json.dumps(layers)
    f.attrs["dimctl.version"] = __version__
    if precision is not None:
        f.attrs["dimctl.precision"] = precision
    for split, n in sizes.items():
        group = f.create_group(split)
        if not preallocate:
            for layer in layers:
                group.create_dataset(layer, shape=(n, *shapes[layer]), dtype="float32")
            group.create_dataset("labels", shape=(n, *label_shape), dtype="int64")
            continue
        group.create_dataset("labels", shape=(n, *label_shape), dtype="<i8", dcpl=_preallocated())
        for layer in sorted(layers, key=lambda name: -int(np.prod(shapes[name]))):
            group.create_dataset(layer, shape=(n, *shapes[layer]), dtype="<f4", dcpl=_preallocated())


def _preallocated():
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # its place in the file is fixed at creation
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # libhdf5 never writes its bytes: we do
    return dcpl


# ---------------------------------------------------------------------------------------------
# Writing a feature file at the speed of the encoder: the layout first, then the bytes.


@dataclass(frozen=True)
class Region:
    """Where one contiguous dataset's bytes lie in the file."""
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype  # little-endian, as on disk

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes


@dataclass
class FeatureLayout:
    """A feature file before its data: its size, where each dataset goes ("split/name"), and the
    bytes of everything else after the user block (libhdf5's metadata), as (offset, bytes)."""
    size: int
    regions: dict[str, Region]
    gaps: list[tuple[int, bytes]]


class _SparseImage(io.RawIOBase):
    """A file object for libhdf5 that keeps only what is written (its metadata: kilobytes); the
    unwritten rest, the datasets' places, reads as zeros and costs no memory."""

    def __init__(self):
        super().__init__()
        self.writes: list[tuple[int, bytes]] = []
        self.size = 0
        self.pos = 0

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def tell(self):
        return self.pos

    def write(self, data):
        data = bytes(data)
        self.writes.append((self.pos, data))
        self.pos += len(data)
        self.size = max(self.size, self.pos)
        return len(data)

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self.pos))
        view[:n] = self.read_range(self.pos, self.pos + n)
        self.pos += n
        return n

    def truncate(self, size=None):
        self.size = self.pos if size is None else size
        return self.size

    def read_range(self, start: int, end: int) -> bytes:
        out = bytearray(end - start)
        for offset, data in self.writes:  # in order: later writes win
            lo, hi = max(offset, start), min(offset + len(data), end)
            if lo < hi:
                out[lo - start:hi - start] = data[lo - offset:hi - offset]
        return bytes(out)

    def written_inside(self, start: int, end: int) -> bool:
        return any(offset < end and start < offset + len(data) for offset, data in self.writes)


def layout_feature_file(encoder: dict, dataset: dict, layers: list[str], sizes: dict[str, int],
                        shapes: dict[str, tuple[int, ...]], label_shape: tuple[int, ...] = (),
                        precision: str | None = None) -> FeatureLayout:
    """Let libhdf5 lay out a feature file (``init_feature_file`` with ``preallocate``) in memory,
    without its data; ``FeatureWriter`` then writes the data. The same arguments give the same bytes."""
    image = _SparseImage()
    regions = {}
    with create_feature_file(image) as f:
        init_feature_file(f, encoder, dataset, layers, sizes, shapes, label_shape, preallocate=True, precision=precision)
        for split in sizes:
            for key in [*layers, "labels"]:
                node = f[split][key]
                offset = node.id.get_offset()
                if node.size and offset is not None:  # an empty dataset has no place
                    regions[f"{split}/{key}"] = Region(offset, node.shape, node.dtype.newbyteorder("<"))
    size = max([image.size, *(r.offset + r.nbytes for r in regions.values())])
    gaps, at = [], USERBLOCK
    for region in sorted(regions.values(), key=lambda r: r.offset):
        if region.offset < at or image.written_inside(region.offset, region.offset + region.nbytes):
            raise RuntimeError("libhdf5 laid out the feature file with overlapping datasets")  # never expected
        if region.offset > at:
            gaps.append((at, image.read_range(at, region.offset)))
        at = region.offset + region.nbytes
    if size > at:
        gaps.append((at, image.read_range(at, size)))
    return FeatureLayout(size, regions, gaps)


class FileSink:
    """A laid-out feature file on disk: data written in place with pwrite (the GIL released)."""

    SYNC_EVERY = 256 << 20  # flush to disk as it goes, so closing does not wait on a whole file

    def __init__(self, path: str | Path, layout: FeatureLayout):
        self.fd = os.open(path, os.O_RDWR)
        self.unsynced = 0
        try:
            os.ftruncate(self.fd, layout.size)
            for offset, data in layout.gaps:
                self.write(offset, memoryview(data))
        except BaseException:
            os.close(self.fd)
            raise

    def write(self, offset: int, data: memoryview) -> None:
        while data:
            n = os.pwrite(self.fd, data, offset)
            data, offset = data[n:], offset + n
            self.unsynced += n
        if self.unsynced >= self.SYNC_EVERY:
            (getattr(os, "fdatasync", None) or os.fsync)(self.fd)
            self.unsynced = 0

    def chunks(self, start: int, end: int):
        while start < end:
            data = os.pread(self.fd, min(end - start, 1 << 24), start)
            if not data:
                raise OSError(f"feature file shorter than its layout at byte {start}")
            yield data
            start += len(data)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MemorySink:
    """A laid-out feature file in memory, for a pipe (which cannot seek; the checksum block goes
    first, so nothing can go out before the last byte is in). It keeps the arrays it is given, in
    pieces, rather than copying them into one buffer: no second copy of every byte to make and
    fault in. ``pieces()`` is the whole file, in order."""

    def __init__(self, layout: FeatureLayout):
        self.size = layout.size
        self.at: dict[int, memoryview] = {0: memoryview(bytes(USERBLOCK))}  # offset → bytes from there
        for offset, data in layout.gaps:
            self.write(offset, memoryview(data))

    def write(self, offset: int, data: memoryview) -> None:
        """Keeps ``data`` (and the array under it): it must not change afterwards."""
        if len(data):
            self.at[offset] = data

    def chunks(self, start: int, end: int):
        # FeatureWriter asks for ranges that start where a write started.
        while start < end:
            piece = self.at[start][:end - start]
            yield piece
            start += len(piece)

    def pieces(self):
        return self.chunks(0, self.size)

    def getvalue(self) -> bytes:
        return b"".join(self.pieces())

class FeatureWriter:
    """Fill a laid-out feature file (in a ``FileSink`` or ``MemorySink``) and seal it.

    ``write`` hands a batch to a writer thread through a short queue and returns, so the caller's
    next forward pass runs while this batch is written and hashed (pwrite, numpy copies and sha256
    all release the GIL). The hash follows the file's byte order: a batch that lands at the point
    the hash has reached is hashed from memory at once; the rest (later datasets of a split) is
    read back and hashed as soon as everything before it is complete. ``seal`` waits for the
    thread and writes the checksum block. A failure in the thread is raised from the next
    ``write`` or ``seal``; leaving the ``with`` block on an exception stops the thread first.
    ``threaded=False`` does the same work in the caller's thread (the same bytes).
    """

    QUEUE = 16  # batches × layers in flight: a few batches ahead, a few megabytes

    def __init__(self, layout: FeatureLayout, sink: FileSink | MemorySink, threaded: bool = True):
        self.layout, self.sink = layout, sink
        self.filled = dict.fromkeys(layout.regions, 0)
        # The file after the user block, in order: (start, end, dataset key or None for metadata).
        segments = [(offset, offset + len(data), None) for offset, data in layout.gaps]
        segments += [(r.offset, r.offset + r.nbytes, key) for key, r in layout.regions.items()]
        self.segments = sorted(segments)
        self.next_segment, self.hashed = 0, USERBLOCK
        self.sha = hashlib.sha256()
        self.error: BaseException | None = None
        self.stopping = False
        self.queue: queue.Queue | None = None
        self.thread: threading.Thread | None = None
        if threaded:
            self.queue = queue.Queue(self.QUEUE)
            self.thread = threading.Thread(target=self._run, name="dimctl-feature-writer", daemon=True)
            self.thread.start()

    def write(self, split: str, key: str, start: int, values: np.ndarray) -> None:
        """Rows ``start …`` of dataset ``split/key``; each dataset's rows must come in order.
        ``values`` must not change afterwards (the thread reads it later)."""
        item = (f"{split}/{key}", start, values)
        if self.thread is None:
            self._apply(*item)
            return
        while True:
            self._raise_if_failed()
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def seal(self) -> str:
        """Wait for every write, check every dataset is complete, write the checksum block; its sha256."""
        if self.thread is not None:
            while self.thread.is_alive():
                self._raise_if_failed()
                try:
                    self.queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
            self.thread.join()
            self.thread = None
            self._raise_if_failed()
        for key, region in self.layout.regions.items():
            if self.filled[key] != region.nbytes:
                raise ValueError(f"feature dataset {key} got {self.filled[key] // region.row_bytes} of "
                                 f"{region.shape[0]} rows")
        self._advance()
        assert self.hashed == self.layout.size, (self.hashed, self.layout.size)
        digest = self.sha.hexdigest()
        self.sink.write(0, memoryview(_block(digest)))
        return digest

    def close(self) -> None:
        """Stop the thread (nothing more is written); safe to call twice."""
        if self.thread is not None:
            self.stopping = True
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                pass  # the thread sees `stopping` at its next item
            self.thread.join()
            self.thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self.stopping:
                item = self.queue.get()
                if item is None or self.stopping:
                    return
                self._apply(*item)
        except BaseException as e:  # handed to the caller's thread
            self.error = e

    def _apply(self, key: str, start: int, values: np.ndarray) -> None:
        region = self.layout.regions.get(key)
        values = np.ascontiguousarray(values, dtype=region.dtype if region else None)
        if region is None:
            if values.size:
                raise ValueError(f"no feature dataset {key} to write {values.shape} into")
            return
        if values.shape[1:] != region.shape[1:] or start + values.shape[0] > region.shape[0]:
            raise ValueError(f"feature dataset {key} is {region.shape}; cannot write rows {start}… of shape {values.shape}")
        offset = region.offset + start * region.row_bytes
        if offset != region.offset + self.filled[key]:
            raise ValueError(f"feature dataset {key}: rows written out of order (row {start})")
        data = memoryview(values.reshape(-1).view(np.uint8))
        self.sink.write(offset, data)
        self.filled[key] += len(data)
        if self.hashed == offset:  # the hash has reached this batch: hash it while it is in memory
            self.sha.update(data)
            self.hashed += len(data)
        self._advance()

    def _advance(self) -> None:
        """Hash whatever is complete from where the hash stands."""
        while self.next_segment < len(self.segments):
            start, end, key = self.segments[self.next_segment]
            ready = end if key is None else start + self.filled[key]
            if self.hashed < ready:
                for chunk in self.sink.chunks(self.hashed, ready):
                    self.sha.update(chunk)
                self.hashed = ready
            if self.hashed < end:
                return
            self.next_segment += 1


def verify_sealed(source: Path | bytes, head: bytes, size: int, name: str) -> None:
    """The checksum block of a dimctl file against the sha256 of every byte after it."""
    if len(head) < USERBLOCK or not head.startswith(MAGIC):
        raise ArtifactError(f"{name} is not a dimctl feature file (no dimctl header); make one with `dimctl extract`")
    fields = dict(item.split(b"=", 1) for item in head[len(MAGIC):].split(b"\n")[0].split() if b"=" in item)
    if fields.get(b"schema") != str(SCHEMA).encode():
        raise ArtifactError(f"{name} has feature schema {fields.get(b'schema', b'?').decode(errors='replace')}; "
                            f"this dimctl reads schema {SCHEMA}")
    digest = hashlib.sha256()
    if isinstance(source, bytes):
        digest.update(memoryview(source)[USERBLOCK:])
        superblock = source[USERBLOCK:USERBLOCK + 64]
    else:
        with open(source, "rb") as f:
            f.seek(USERBLOCK)
            superblock = f.read(64)
            f.seek(USERBLOCK)
            for chunk in iter(lambda: f.read(1 << 24), b""):
                digest.update(chunk)
    if fields.get(b"sha256") != digest.hexdigest().encode():
        if stored_end(superblock) is not None and size >= stored_end(superblock):
            raise ArtifactError(f"{name} was modified after dimctl wrote it (its checksum differs: changed by "
                                f"another tool, or damaged)")
        raise ArtifactError(f"{name} is damaged or truncated (its checksum does not match)")


def stored_end(superblock: bytes) -> int | None:
    """Where the file ends by its HDF5 superblock: its end-of-file address (for a file with a user
    block libhdf5 records the whole file's size there, the user block included), or None when the
    bytes are no superblock this reader knows (versions 0–3, 8-byte addresses)."""
    if not superblock.startswith(HDF5_SIGNATURE) or len(superblock) < 48:
        return None
    version = superblock[8]
    if version in (0, 1):  # 24 fixed bytes (+4 in version 1), then base, free space, end of file
        if superblock[13] != 8:
            return None
        at = 24 + (4 if version == 1 else 0) + 16
    elif version in (2, 3):  # 12 fixed bytes, then base, extension, end of file
        if superblock[9] != 8:
            return None
        at = 12 + 16
    else:
        return None
    return int.from_bytes(superblock[at:at + 8], "little")
