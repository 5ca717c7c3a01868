"""HDF5 files that stay inside themselves: checked before any dataset is read.

HDF5 lets a dataset keep its bytes in another file (external raw storage), assemble itself from
other files (virtual datasets), and lets a group link to another file or path (external and
soft links). A feature or sample file that does any of this would make a reader return the bytes
of ``/etc/passwd`` as features, or block forever on a FIFO. The checksum does not help: the
format is documented, so anyone can seal such a file. dimctl's files and the foreign layouts it
reads need none of it, so readers refuse every such object by name (ArtifactError, exit 3),
through h5py's low-level API, before any data is read. The walk is bounded too: hard links can
make a small file a graph with endless paths.

Sizes are checked before anything is read, too. A dataset's header can declare any shape, and
reading it allocates that much at once: a few megabytes of gzip-compressed zeros, or one dataset
hard-linked under hundreds of names (each name is read, and allocated, anew), would have
``probe`` ask for gigabytes. Readers hand every dataset they are about to read to
``check_declared_sizes`` (one rule for HDF5, .npz and .npy files), which refuses (ArtifactError,
exit 3, naming the file and the dataset) when:

- the datasets stored as they are (contiguous, compact, or chunked without a filter) declare more
  bytes together than the whole file holds, each counted once however many names it has: their
  bytes must be in it;
- all of them, compressed ones included and each counted once per name it is read under, declare
  more than ``MAX_EXPANSION`` (64) times the file's size, or ``EXPANSION_FLOOR`` (256 MiB) when
  that is more: gzip or lzf shrink float features a few times at most (labels more, but they are
  small), while zeros shrink 1000×; a file whose test split links to its train split reads 2×;
- they declare more than this process may use, the machine's memory or its cgroup's cap
  (``dimctl.io.memory``): an honest file that large could not be read either.
"""

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import h5py
import numpy as np

from dimctl.errors import ArtifactError
from dimctl.io.memory import usable_memory

MAX_OBJECTS = 10_000  # links walked; dimctl's own files have tens
STORED_INSIDE = (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT)
MAX_EXPANSION = 64  # compressed data may declare this many times the file's size …
EXPANSION_FLOOR = 256 << 20  # … or this many bytes, when that is more


def check_contained(f: h5py.File, name: str, max_objects: int = MAX_OBJECTS) -> None:
    """Refuse a file with links other than hard links, datasets stored outside it, named
    datatypes, or more than ``max_objects`` links in all."""
    walked = 0
    pending = [f]
    while pending:
        group = pending.pop()
        for key in group.keys():  # the link names; nothing is resolved yet
            walked += 1
            if walked > max_objects:
                raise ArtifactError(f"{name}: more than {max_objects} HDF5 objects (a looped or amplified link "
                                    f"graph?); refused")
            path = f"{group.name.rstrip('/')}/{key}"
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
                raise ArtifactError(f"{name}: {path} is {kind}; feature files must hold their data themselves")
            node = group[key]
            if isinstance(node, h5py.Group):
                pending.append(node)
            elif isinstance(node, h5py.Dataset):
                _check_storage(node, path, name)
            else:
                raise ArtifactError(f"{name}: {path} is a {type(node).__name__}, which no feature file holds")


def _check_storage(node: h5py.Dataset, path: str, name: str) -> None:
    plist = node.id.get_create_plist()
    if plist.get_layout() not in STORED_INSIDE:
        raise ArtifactError(f"{name}: {path} is a virtual dataset (its data lives in other files); refused")
    if plist.get_external_count() > 0:
        outside = plist.get_external(0)[0].decode(errors="replace")
        raise ArtifactError(f"{name}: {path} keeps its data in another file ({outside!r}); refused")


@dataclass(frozen=True)
class DeclaredArray:
    """An array a reader is about to read, as its header declares it."""
    label: str  # how messages name it: "/train/y", "train_y.npy"
    shape: tuple[int, ...]
    dtype: np.dtype
    compressed: bool  # its bytes may expand when read (an HDF5 filter, a deflated zip member)
    stored_as: Hashable  # its bytes in the file (an HDF5 object, a zip member): two names of one are stored once

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: a crafted shape cannot overflow


def declared(node: h5py.Dataset, label: str) -> DeclaredArray:
    """What reading an HDF5 dataset will allocate, from its header alone."""
    compressed = node.id.get_create_plist().get_nfilters() > 0
    return DeclaredArray(label, tuple(node.shape), node.dtype, compressed, stored_as=node.id)  # equal for hard links


def check_declared_sizes(arrays: Iterable[DeclaredArray], file_size: int, name: str) -> None:
    """Refuse (ArtifactError) before reading when the arrays declare more bytes than the file of
    ``file_size`` bytes can hold or expand to, or than this process may use (module docstring)."""
    expansion_limit = max(MAX_EXPANSION * file_size, EXPANSION_FLOOR)
    memory = usable_memory()
    stored, total, counted = 0, 0, set()
    for array in arrays:
        if any(side < 0 for side in array.shape):  # .npy headers can say so; a negative size would hide others
            raise ArtifactError(f"{name}: {array.label} declares the impossible shape {array.shape}; refused")
        total += array.nbytes
        if not array.compressed and array.stored_as not in counted:
            counted.add(array.stored_as)
            stored += array.nbytes
        claim = f"{name}: {array.label} declares {array.shape} {array.dtype}, bringing the"
        if stored > file_size:
            raise ArtifactError(f"{claim} uncompressed data to read to {_size(stored)}, more than the file's "
                                f"{_size(file_size)} hold (a crafted header?); refused")
        if total > expansion_limit:
            raise ArtifactError(f"{claim} data to read to {_size(total)}, more than the {_size(expansion_limit)} a "
                                f"{_size(file_size)} file may expand to by compression or links ({MAX_EXPANSION}×, "
                                f"at least {_size(EXPANSION_FLOOR)}); refused")
        if memory is not None and total > memory.bytes:
            raise ArtifactError(f"{claim} data to read to {_size(total)}, more than "
                                f"{memory.describe(_size(memory.bytes))}; refused")


def _size(n: int) -> str:
    """Bytes for a message: "512 bytes", "3.2 MiB", "12,345 TiB"."""
    if n < 1024:
        return f"{n} bytes"
    for power, unit in ((1, "KiB"), (2, "MiB"), (3, "GiB")):
        if n < 1024 ** (power + 1):
            return f"{n / 1024 ** power:.1f} {unit}"
    return f"{n // 1024 ** 4:,} TiB"  # in integers: a crafted shape's product can exceed any float
