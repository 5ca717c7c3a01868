"""HDF5 files that stay inside themselves: checked before any dataset is read.

HDF5 lets a dataset keep its bytes in another file (external raw storage), assemble itself from
other files (virtual datasets), and lets a group link to another file or path (external and
soft links). A feature or sample file that does any of this would make a reader return the bytes
of ``/etc/passwd`` as features, or block forever on a FIFO. The checksum does not help: the
format is documented, so anyone can seal such a file. dimctl's files and the foreign layouts it
reads need none of it, so readers refuse every such object by name (ArtifactError, exit 3),
through h5py's low-level API, before any data is read. The walk is bounded too: hard links can
make a small file a graph with endless paths.
"""

import h5py

from dimctl.errors import ArtifactError

MAX_OBJECTS = 10_000  # links walked; dimctl's own files have tens
STORED_INSIDE = (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT)


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
