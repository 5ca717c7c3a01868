"""The overlapped feature writer (`dimctl extract`'s): a file laid out by libhdf5, filled from a
thread and hashed as it goes, reads back exactly what was written, with a valid seal, and the
same bytes whether threaded or not, on disk or in memory; a failure in the thread reaches the caller."""

import io
import threading

import numpy as np
import pytest

from dimctl.io.feature_reader import read_features
from dimctl.io.features import (USERBLOCK, FeatureWriter, FileSink, MemorySink, create_feature_file,
                                init_feature_file, layout_feature_file, seal_bytes, verify_seal)

DATASET = {"name": "digits", "channels": 1, "image_size": 32}
ENCODER = {"sha256": "ab", "kind": "encoder"}
SHAPES = {"conv": (4, 2, 2), "fc": (8,), "y": (3,)}


def _arrays(sizes, label_shape=(), seed=0):
    rng = np.random.default_rng(seed)
    return {split: {**{layer: rng.standard_normal((n, *shape)).astype(np.float32) for layer, shape in SHAPES.items()},
                    "labels": rng.integers(0, 2, (n, *label_shape)).astype(np.int64)}
            for split, n in sizes.items()}


def _write(layout, sink, arrays, threaded, batch=5):
    with FeatureWriter(layout, sink, threaded=threaded) as writer:
        for split, values in arrays.items():
            writer.write(split, "labels", 0, values["labels"])
            for start in range(0, values["labels"].shape[0], batch):
                for layer in ("y", "conv", "fc"):  # any order within a batch
                    writer.write(split, layer, start, values[layer][start:start + batch])
        return writer.seal()


def _h5py_bytes(sizes, arrays, label_shape):
    """The way extract wrote files before: libhdf5 writes the data, the seal over the bytes."""
    buf = io.BytesIO()
    with create_feature_file(buf) as f:
        init_feature_file(f, ENCODER, DATASET, list(SHAPES), sizes, SHAPES, label_shape)
        for split, values in arrays.items():
            for key, a in values.items():
                f[split][key][:] = a
    return seal_bytes(buf.getvalue())


@pytest.mark.parametrize("sizes,label_shape", [({"train": 23, "test": 7}, ()),
                                               ({"train": 12, "test": 0}, (5,))])  # multi-label; empty split
def test_threaded_file_and_memory_agree_byte_for_byte_and_read_back(tmp_path, sizes, label_shape):
    arrays = _arrays(sizes, label_shape)
    layout = layout_feature_file(ENCODER, DATASET, list(SHAPES), sizes, SHAPES, label_shape)
    outputs = {}
    for threaded in (True, False):
        path = tmp_path / f"f{threaded}.h5"
        path.touch()
        with FileSink(path, layout) as sink:
            _write(layout, sink, arrays, threaded)
        outputs[f"file threaded={threaded}"] = path.read_bytes()
        memory = MemorySink(layout)
        _write(layout, memory, arrays, threaded)
        outputs[f"memory threaded={threaded}"] = memory.getvalue()
    first = outputs["file threaded=True"]
    assert len(first) == layout.size
    assert all(data == first for data in outputs.values()), [k for k, v in outputs.items() if v != first]
    verify_seal(first, "f.h5")
    ours, theirs = read_features(first), read_features(_h5py_bytes(sizes, arrays, label_shape))
    assert ours.layers == theirs.layers == list(SHAPES)
    assert ours.encoder == ENCODER and ours.dataset == DATASET
    for split, values in arrays.items():
        for key, a in values.items():
            assert np.array_equal(ours.layer(split, key), a) and np.array_equal(theirs.layer(split, key), a)
            assert ours.layer(split, key).dtype == a.dtype


def test_the_layout_keeps_libhdf5_metadata_and_leaves_room_for_every_dataset():
    sizes = {"train": 40, "test": 10}
    layout = layout_feature_file(ENCODER, DATASET, list(SHAPES), sizes, SHAPES)
    spans = sorted([(r.offset, r.offset + r.nbytes) for r in layout.regions.values()]
                   + [(offset, offset + len(data)) for offset, data in layout.gaps])
    assert spans[0][0] == USERBLOCK and spans[-1][1] == layout.size
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # the whole file, nothing twice
    assert sum(len(data) for _, data in layout.gaps) < 64 << 10  # metadata only
    assert layout.regions["train/conv"].nbytes == 40 * 16 * 4


def test_a_failure_in_the_writer_thread_reaches_the_caller_and_stops_the_thread():
    sizes = {"train": 30, "test": 10}
    arrays = _arrays(sizes)
    layout = layout_feature_file(ENCODER, DATASET, list(SHAPES), sizes, SHAPES)

    class Full(MemorySink):
        calls = 0

        def write(self, offset, data):
            Full.calls += 1
            if Full.calls == 12:
                raise OSError(28, "No space left on device")
            super().write(offset, data)

    with pytest.raises(OSError, match="No space left"):
        _write(layout, Full(layout), arrays, threaded=True, batch=2)
    assert not [t for t in threading.enumerate() if t.name == "dimctl-feature-writer"]


def test_wrong_shapes_and_missing_rows_are_refused():
    sizes = {"train": 6, "test": 2}
    layout = layout_feature_file(ENCODER, DATASET, list(SHAPES), sizes, SHAPES)
    arrays = _arrays(sizes)
    for threaded in (True, False):
        with pytest.raises(ValueError, match="cannot write rows"):
            with FeatureWriter(layout, MemorySink(layout), threaded=threaded) as writer:
                writer.write("train", "y", 0, np.zeros((6, 4), np.float32))
                writer.seal()
        with pytest.raises(ValueError, match="got 3 of 6 rows"):
            with FeatureWriter(layout, MemorySink(layout), threaded=threaded) as writer:
                for split, values in arrays.items():
                    for key, a in values.items():
                        writer.write(split, key, 0, a[:3] if (split, key) == ("train", "fc") else a)
                writer.seal()
