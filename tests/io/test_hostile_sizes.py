"""Headers that ask for memory the file cannot back (issue 17): compressed HDF5 datasets that
declare gigabytes, one dataset read under many names, .npz members and .npy files whose headers
claim more than they hold, safetensors headers and network configs, sample files, and class ids far
beyond the rows. Each is refused (ArtifactError; from the CLI exit 3 and one line) before anything
of the declared size is allocated: tracemalloc sees every numpy and h5py allocation, and the
network builders are watched for a build off PyTorch's meta device. Files that are only large
where it is honest (compressed features, many classes in many rows) still load."""

import io
import json
import os
import re
import struct
import tracemalloc
import zipfile
from contextlib import contextmanager

import h5py
import numpy as np
import pytest
import torch

from dimctl.errors import ArtifactError
from dimctl.io import artifacts
from dimctl.io.artifacts import load_encoder, load_generator, save_encoder, save_generator
from dimctl.io.feature_reader import ALWAYS_ACCEPTED_CLASSES, read_features
from dimctl.io.features import SPLITS, create_feature_file, seal_bytes
from dimctl.io.hdf5_contained import EXPANSION_FLOOR, MAX_EXPANSION
from dimctl.io.memory import MemoryLimit
from dimctl.io.samples import IMAGES, read_samples, samples_bytes
from dimctl.models.encoders import EncoderConfig, build_encoder
from dimctl.models.generators import GeneratorConfig, build_generator
from tests.cli.helpers import assert_one_line_error, run_here
from tests.io.test_hostile_hdf5 import crafted

# float32 values just over what a small compressed file may declare (256 MiB): read, they would be
# allocated at once, so a refusal after reading shows up at the tracemalloc peak.
OVER_LIMIT = EXPANSION_FLOOR // 4 + (1 << 20)
REFUSAL_PEAK = 32 << 20  # what a refusal may allocate: headers, metadata, messages


@contextmanager
def peak_allocation_below(limit: int):
    """Fails if numpy, h5py or Python held ``limit`` bytes at once inside the block."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"{peak / 2**20:.0f} MiB allocated before the refusal"


def refused_unread(read, source, match: str) -> str:
    """``read(source)`` raises a one-line ArtifactError matching ``match`` without allocating."""
    with peak_allocation_below(REFUSAL_PEAK):
        with pytest.raises(ArtifactError, match=match) as caught:
            read(source)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def foreign_h5(path, make_layer, labels=(np.zeros(20, np.int64), np.zeros(20, np.int64))):
    """Another tool's feature file: /train and /test with ``labels`` and an ``emb`` made by ``make_layer(group)``."""
    with h5py.File(path, "w") as f:
        for split, split_labels in zip(SPLITS, labels):
            group = f.create_group(split)
            group["labels"] = split_labels
            make_layer(group)
    return path


# --- HDF5 feature files -----------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_a_compressed_dataset_declaring_more_than_the_file_may_expand_to_is_refused_unread(tmp_path, compression):
    # Chunks never written read as zeros: to the reader this is a few megabytes of compressed
    # zeros declaring 260 MiB, in a file of a few KiB.
    def compressed_zeros(group):
        group.create_dataset("emb", shape=(20, OVER_LIMIT // 20), dtype="f4", chunks=(1, 1 << 16),
                             compression=compression)

    path = foreign_h5(tmp_path / "zeros.h5", compressed_zeros)
    message = refused_unread(read_features, path, "may expand to")
    assert message.startswith(f"{path}: /train/emb declares (20, {OVER_LIMIT // 20}) float32"), message


def test_uncompressed_data_declared_beyond_the_file_is_refused_unread(tmp_path):
    # Chunked without a filter, nothing written: fill values, so no byte of it needs to be in the file.
    def unwritten(group):
        group.create_dataset("emb", shape=(20, OVER_LIMIT // 20), dtype="f4", chunks=(1, 1 << 16))

    path = foreign_h5(tmp_path / "unwritten.h5", unwritten)
    refused_unread(read_features, path, r"/train/emb declares .* uncompressed data to read to 260\.0 MiB, more than "
                                        r"the file's .* hold")


def test_one_dataset_read_under_many_names_is_refused_unread(tmp_path):
    # 1 MiB stored once in each split, hard-linked as 130 more layers: 273 MB to read from a 2 MB file.
    def linked(group):
        group["emb"] = np.zeros((20, 13_108), np.float32)
        for i in range(130):
            group[f"emb{i}"] = group["emb"]

    path = foreign_h5(tmp_path / "linked.h5", linked)
    refused_unread(read_features, path, r"/test/emb\d+ declares \(20, 13108\) float32, bringing the data to read "
                                        r"to 256\.\d MiB, more than the 256\.0 MiB a 2\.0 MiB file may expand to by "
                                        r"compression or links")


def test_a_test_split_linked_to_the_train_split_still_loads(tmp_path):
    # Read twice, stored once: the file holds half of what is read, which is no attack.
    path = tmp_path / "same.h5"
    with h5py.File(path, "w") as f:
        f["train/labels"] = np.arange(1000) % 10
        f["train/emb"] = np.random.default_rng(0).normal(size=(1000, 64)).astype(np.float32)
        f["test"] = f["train"]
    feats = read_features(path)
    np.testing.assert_array_equal(feats["test"]["emb"], feats["train"]["emb"])


def test_labels_of_another_length_than_the_rows_are_refused_unread(tmp_path):
    # 10 million labels (compressed, unwritten: 76 MiB declared) for 20 rows of features.
    path = tmp_path / "long_labels.h5"
    with h5py.File(path, "w") as f:
        for split in SPLITS:
            group = f.create_group(split)
            group.create_dataset("labels", shape=(10**7,), dtype="i8", chunks=(1 << 16,), compression="gzip")
            group["emb"] = np.zeros((20, 8), np.float32)
    refused_unread(read_features, path, r"/train/emb has 20 rows but /train/labels 10000000")


def test_sealed_files_that_declare_more_than_they_hold_are_refused_by_probe(sealed, tmp_path):
    """dimctl's own format, sealed again after the change as anyone can: its largest layer read
    under many names (hard links: each name is read in full), and a compressed layer, each
    declaring 1.25× what the file may expand to (64× its size)."""
    too_much = MAX_EXPANSION * sealed.stat().st_size * 5 // 4
    with h5py.File(sealed) as f:
        rows = f["train/conv"].shape[0]
        copies = too_much // (f["train/conv"].nbytes + f["test/conv"].nbytes)
    columns = too_much // (4 * rows)  # float32

    def one_layer_under_many_names(f, shape):
        names = [f"conv{i}" for i in range(copies)]
        for split in SPLITS:
            for name in names:
                f[f"{split}/{name}"] = f[f"{split}/conv"]
        f.attrs["dimctl.layers"] = json.dumps([*json.loads(f.attrs["dimctl.layers"]), *names])

    def compressed_zeros(f, shape):
        del f["train/y"]
        f.create_dataset("train/y", shape=(rows, columns), dtype="f4", chunks=(1, 1 << 12),
                         compression="gzip")

    for attack in (one_layer_under_many_names, compressed_zeros):
        path = crafted(sealed, tmp_path, attack)
        with peak_allocation_below(REFUSAL_PEAK):  # knn: quick, should a regression let it run
            result = run_here("probe", path, "--layer", "all", "--classifier", "knn")
        assert_one_line_error(result, 3)
        assert "may expand to" in result.stderr.decode() and str(path) in result.stderr.decode(), result.stderr.decode()


def test_compressed_features_that_expand_past_the_file_size_still_load(tmp_path):
    # Sparse post-ReLU features: gzip shrinks them about 20×. The old rule (declared ≤ file) refused these.
    sparse = np.zeros((2000, 256), np.float32)
    sparse[::7, ::5] = np.random.default_rng(0).random((2000 // 7 + 1, 256 // 5 + 1), np.float32)

    def gzipped(group):
        group.create_dataset("emb", data=sparse, chunks=(100, 256), compression="gzip")

    path = foreign_h5(tmp_path / "sparse.h5", gzipped, (np.arange(2000) % 10, np.arange(2000) % 10))
    assert sparse.nbytes > 2 * path.stat().st_size
    feats = read_features(path)
    np.testing.assert_array_equal(feats["train"]["emb"], sparse)


def test_more_than_the_machine_has_is_refused(tmp_path, monkeypatch):
    def emb(group):
        group["emb"] = np.ones((20, 10_000), np.float32)  # 781 KiB a split

    path = foreign_h5(tmp_path / "plain.h5", emb)
    monkeypatch.setattr("dimctl.io.hdf5_contained.usable_memory", lambda: MemoryLimit(1 << 20, from_cgroup=False))
    refused_unread(read_features, path, r"/test/emb declares .* more than this machine's 1\.0 MiB of memory")


# --- .npz and VISSL's .npy files --------------------------------------------------------------


def npz_with_forged_member(path, header: dict, body: bytes = b"", compress_type=zipfile.ZIP_DEFLATED):
    """An .npz of features whose ``train_emb.npy`` has ``header`` and ``body`` as its bytes."""
    with zipfile.ZipFile(path, "w") as archive:
        for split in SPLITS:
            with archive.open(f"{split}_labels.npy", "w") as member:
                np.lib.format.write_array(member, np.zeros(20, np.int64))
        with archive.open("test_emb.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros((20, 8), np.float32))
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        archive.writestr(zipfile.ZipInfo("train_emb.npy"), buffer.getvalue() + body, compress_type=compress_type)
    return path


def test_npz_members_whose_headers_claim_more_than_the_archive_holds_are_refused_unread(tmp_path):
    huge = {"descr": "<f4", "fortran_order": False, "shape": (20, OVER_LIMIT // 20)}
    cases = {  # how the member is stored → the refusal
        zipfile.ZIP_DEFLATED: "may expand to",  # numpy would allocate 260 MiB, then inflate into it
        zipfile.ZIP_STORED: "uncompressed data to read to",
    }
    for compress_type, message in cases.items():
        path = npz_with_forged_member(tmp_path / f"forged{compress_type}.npz", huge, bytes(4096), compress_type)
        assert refused_unread(read_features, path, message).startswith(f"{path}: train_emb.npy declares ")
    impossible = dict(huge, shape=(-1, 1 << 40))  # numpy's header parser lets negative sides through
    path = npz_with_forged_member(tmp_path / "negative.npz", impossible)
    refused_unread(read_features, path, r"train_emb.npy declares the impossible shape \(-1, ")


def test_an_npz_member_that_is_no_array_is_refused_not_read_whole(tmp_path):
    # numpy hands such a member back as bytes, read whole (a zip bomb of one member); the reader
    # looks at its first bytes only.
    path = tmp_path / "bytes.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for split in SPLITS:
            np_buffer = io.BytesIO()
            np.lib.format.write_array(np_buffer, np.zeros(20, np.int64))
            archive.writestr(f"{split}_labels.npy", np_buffer.getvalue())
            archive.writestr(f"{split}_emb.npy", b"\0" * (1 << 20))
    refused_unread(read_features, path, "not a readable .npz of features")


def test_vissl_npy_headers_that_claim_more_than_the_file_are_refused_unread(tmp_path):
    for split in SPLITS:
        np.save(tmp_path / f"r0_{split}_res5_targets.npy", np.zeros(4, np.int64))
        np.save(tmp_path / f"r0_{split}_res5_inds.npy", np.arange(4))
        np.save(tmp_path / f"r0_{split}_res5_features.npy", np.zeros((4, 8), np.float32))
    forged = tmp_path / "r0_train_res5_features.npy"
    with open(forged, "wb") as f:  # numpy's fromfile would allocate what the header says, then find 1 KiB
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (4, OVER_LIMIT)})
        f.write(bytes(1024))
    refused_unread(read_features, tmp_path, "r0_train_res5_features.npy declares .* more than the file's")


# --- class ids against rows -------------------------------------------------------------------


def npz_features(path, train_labels, test_labels=None):
    train_labels = np.asarray(train_labels)
    test_labels = train_labels if test_labels is None else np.asarray(test_labels)
    rng = np.random.default_rng(0)
    np.savez(path, train_labels=train_labels, test_labels=test_labels,
             train_emb=rng.normal(size=(len(train_labels), 4)).astype(np.float32),
             test_emb=rng.normal(size=(len(test_labels), 4)).astype(np.float32))
    return path


def test_a_class_id_beyond_the_rows_is_refused_before_a_probe_sizes_arrays_by_it(tmp_path):
    labels = np.arange(20) % 4
    labels[3] = 10_000_000  # the ADMM SVM's targets alone: 20 × 10 M float32 = 800 MB, the MLP's last layer 8 GB
    path = npz_features(tmp_path / "classes.npz", labels, np.arange(20) % 4)
    with pytest.raises(ArtifactError, match=r"/train/labels holds class 10000000, more classes than the file's 40 "
                                            r"labelled rows can have \(at most 32768 accepted\)"):
        read_features(path)
    result = run_here("probe", path)  # libsvm: sized by the classes present, safe should the check go
    assert_one_line_error(result, 3)
    assert str(path) in result.stderr.decode()
    # The limit's edge: a 20-row file may use class ids up to ALWAYS_ACCEPTED_CLASSES - 1, not that one.
    labels[3] = ALWAYS_ACCEPTED_CLASSES
    with pytest.raises(ArtifactError, match="holds class 32768"):
        read_features(npz_features(tmp_path / "edge.npz", labels))


@pytest.mark.parametrize("labels", [
    np.r_[np.arange(19) * 50, 999],  # a 20-image sample of ImageNet (1,000 classes)
    np.r_[np.arange(19), 99],  # CIFAR-100's ids in 20 rows
    np.r_[np.zeros(19, np.int64), 21_840],  # a 20-image sample of ImageNet-21k (21,841 classes)
    np.arange(40_000),  # one row per class: 40,000 classes in 40,000 rows
    np.random.default_rng(0).integers(0, 2, size=(20, 40)),  # CelebA's 40 attributes
], ids=["imagenet-sample", "cifar100-ids", "imagenet21k-sample", "a-row-per-class", "multi-label"])
def test_honest_label_sets_still_load(tmp_path, labels):
    feats = read_features(npz_features(tmp_path / "honest.npz", labels))
    np.testing.assert_array_equal(feats["train"]["labels"], labels)


# --- safetensors ------------------------------------------------------------------------------


def write_safetensors(path, header: dict, data: bytes = b"", declared_length: int | None = None):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if declared_length is None else declared_length) + raw + data)
    return path


def test_safetensors_refuses_tensors_and_headers_beyond_the_file_itself(tmp_path):
    """safetensors checks these before allocating (so dimctl adds nothing): a tensor declared 4 GiB,
    byte ranges past the end, a header length field of 1 TiB or past the end."""
    metadata = {"__metadata__": {"dimctl.kind": "encoder", "dimctl.schema": "1"}}
    cases = {
        "big_tensor": ({**metadata, "w": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 4 << 30]}},
                       bytes(16), None, "incomplete metadata"),
        "past_the_end": ({**metadata, "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                         bytes(8), None, "incomplete metadata"),
        "huge_length": (metadata, b"", 1 << 40, "header too large"),
        "length_past_the_end": (metadata, b"", 99_000_000, "invalid header length"),
    }
    for name, (header, data, length, message) in cases.items():
        path = write_safetensors(tmp_path / f"{name}.safetensors", header, data, length)
        with pytest.raises(ArtifactError, match=f"not a readable safetensors file .*{message}"):
            load_encoder(path)


def with_config(path, **changes):
    """A copy of a safetensors artifact whose dimctl.config has ``changes``: its tensors untouched."""
    raw = path.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + length])
    header["__metadata__"]["dimctl.config"] = json.dumps({**json.loads(header["__metadata__"]["dimctl.config"]),
                                                          **changes})
    return write_safetensors(path.with_name(f"crafted_{path.name}"), header, raw[8 + length:])


def meta_only(build):
    """``build``, failing where it would build a network for real (with memory)."""
    def watched(config):
        assert torch.get_default_device().type == "meta", "built for real before its shapes were checked"
        return build(config)
    return watched


@pytest.mark.parametrize("kind", ["encoder", "generator"])
def test_a_config_larger_than_the_files_tensors_is_never_built(tmp_path, monkeypatch, kind):
    """A real artifact whose header now asks for a 400,000-wide layer (gigabytes of parameters from
    a file of kilobytes, before this check) is refused, built only on the meta device."""
    if kind == "encoder":
        config = EncoderConfig(fc_dim=8, y_dim=4, width=0.25)
        path = save_encoder(tmp_path / "e.safetensors", build_encoder(config), config, {"name": "digits"}, step=1)
        load, builder, crafted_path = load_encoder, "build_encoder", with_config(path, fc_dim=400_000)
    else:
        config = GeneratorConfig(arch="dcgan", z_dim=8, width=4)
        path = save_generator(tmp_path / "g.safetensors", build_generator(config), config, {"name": "digits"}, step=1)
        load, builder, crafted_path = load_generator, "build_generator", with_config(path, z_dim=400_000)
    assert load(path).config == config  # the untouched file loads
    monkeypatch.setattr(artifacts, builder, meta_only(getattr(artifacts, builder)))
    with pytest.raises(ArtifactError, match=r"weights do not match the .* its config describes \(the config needs "
                                            r".* is \[.*\] in the config, \[.*\] in the file\); not built"):
        load(crafted_path)


def test_extract_refuses_a_crafted_config_in_one_line(tmp_path):
    config = EncoderConfig(fc_dim=8, y_dim=4, width=0.25)
    path = save_encoder(tmp_path / "e.safetensors", build_encoder(config), config, {"name": "digits"}, step=1)
    # 50,000 wide: should the check ever go, this test builds 200 MB, not gigabytes.
    result = run_here("extract", with_config(path, fc_dim=50_000), "-o", tmp_path / "f.h5", "--cpu")
    assert_one_line_error(result, 3)
    assert "its config describes" in result.stderr.decode()
    assert not (tmp_path / "f.h5").exists()


# --- sample files -----------------------------------------------------------------------------


def sample_file(make_images) -> bytes:
    """A sealed sample file whose /samples/images ``make_images(f)`` creates."""
    buffer = io.BytesIO()
    with create_feature_file(buffer) as f:
        f.attrs.update({"dimctl.kind": "samples", "dimctl.schema": 1, "dimctl.generator": "{}",
                        "dimctl.dataset": "{}", "dimctl.seed": 0})
        make_images(f)
    return seal_bytes(buffer.getvalue())


def test_sample_files_that_declare_more_than_they_hold_are_refused_unread():
    n = OVER_LIMIT * 4 // (3 * 32 * 32)  # uint8 images: 260 MiB declared

    def compressed(f):
        f.create_dataset(IMAGES, shape=(n, 3, 32, 32), dtype="u1", chunks=(64, 3, 32, 32), compression="gzip")

    def uncompressed(f):
        f.create_dataset(IMAGES, shape=(n, 3, 32, 32), dtype="u1", chunks=(64, 3, 32, 32))

    assert refused_unread(read_samples, sample_file(compressed), "may expand to").startswith(
        f"<stdin>: /{IMAGES} declares ({n}, 3, 32, 32) uint8")
    refused_unread(read_samples, sample_file(uncompressed), "uncompressed data to read to")
    images = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
    assert torch.equal(read_samples(samples_bytes(images, {}, {}, seed=0)).images, images)  # honest ones load


# --- degenerate files (issue 40) --------------------------------------------------------------
# Well-formed files nothing can be computed from: refused with exit 3 naming the file and what is
# degenerate, by the reader (no layers, zero width, zero label columns) or before a command uses a
# layer (rows and classes, which depend on the command), never an "unexpected" error or an estimate
# of 0 from an empty layer.


def npz_arrays(path, train_labels, test_labels, train_emb=None, test_emb=None):
    """An .npz of features; ``emb`` layers only where given."""
    arrays = {"train_labels": np.asarray(train_labels), "test_labels": np.asarray(test_labels)}
    if train_emb is not None:
        arrays.update(train_emb=np.asarray(train_emb, np.float32), test_emb=np.asarray(test_emb, np.float32))
    np.savez(path, **arrays)
    return path


def rows(n, width=4):
    return np.random.default_rng(n).normal(size=(n, width))


DEGENERATE = {  # case → (its file, the refusal)
    "zero-rows": (lambda p: npz_arrays(p, np.zeros(0, int), np.zeros(0, int), rows(0), rows(0)),
                  "the train split has 0 rows"),
    "zero-width-layer": (lambda p: npz_arrays(p, np.arange(6) % 2, np.arange(4) % 2, rows(6, 0), rows(4, 0)),
                         r"/train/emb has zero width \(shape \(6, 0\)\)"),
    "no-layers": (lambda p: npz_arrays(p, np.arange(6) % 2, np.arange(4) % 2), "holds no layers of features"),
    "zero-label-columns": (lambda p: npz_arrays(p, np.zeros((6, 0), int), np.zeros((4, 0), int), rows(6), rows(4)),
                           r"/train/labels has zero columns"),
    "one-training-row": (lambda p: npz_arrays(p, [0], np.arange(4) % 2, rows(1), rows(4)),
                         "the train split has 1 row; .* needs at least 2"),
}
REFUSED_BY_READER = ("zero-width-layer", "no-layers", "zero-label-columns")
COMMANDS = {  # tiny runs: a refusal comes before any training
    "probe": ["probe", "--classifier", "logreg"],
    "mi": ["mi", "--layer", "emb,labels", "--steps", "1"],
    "ndm": ["ndm", "--layer", "emb", "--steps", "1"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(DEGENERATE))
def test_degenerate_feature_files_are_refused_naming_the_file_and_the_degeneracy(tmp_path, case, command):
    make, message = DEGENERATE[case]
    path = make(tmp_path / f"{case}.npz")
    result = run_here(*COMMANDS[command][:1], path, *COMMANDS[command][1:])
    assert_one_line_error(result, 3)
    assert re.search(message, result.stderr.decode()), result.stderr.decode()
    assert str(path) in result.stderr.decode()
    if case in REFUSED_BY_READER:  # the API too: a typed error, whatever the command
        with pytest.raises(ArtifactError, match=message):
            read_features(path)


def test_a_probe_needs_two_classes_in_the_training_split(tmp_path):
    path = npz_arrays(tmp_path / "one-class.npz", np.full(6, 3), np.arange(4) % 2, rows(6), rows(4))
    result = run_here("probe", path, "--classifier", "logreg")
    assert_one_line_error(result, 3)
    assert "only one class (3); a probe needs at least two classes in the training split" in result.stderr.decode()
    # mi and ndm estimate from one class as well as from many; multi-label attributes constant in
    # training are predicted as that constant (evaluate/probes.py), so neither is refused.
    assert read_features(path).layers == ["emb"]


def test_an_empty_test_split_still_loads(tmp_path):
    """`dimctl extract` writes one for a dataset without a test split: only a command refuses it."""
    feats = read_features(npz_arrays(tmp_path / "no-test.npz", np.arange(6) % 2, np.zeros(0, int), rows(6), rows(0)))
    assert feats["test"]["emb"].shape == (0, 4)


def vissl_folder(folder, features=None, targets=None, inds=None, splits=SPLITS, prefix="r0"):
    """VISSL's extract_features output for layer res5; each array replaced where given."""
    folder.mkdir(exist_ok=True)
    for split in splits:
        for kind, default, given in (("features", rows(4).astype(np.float32), features),
                                     ("targets", np.arange(4) % 2, targets), ("inds", np.arange(4), inds)):
            np.save(folder / f"{prefix}_{split}_res5_{kind}.npy", default if given is None else np.asarray(given))
    return folder


VISSL_SHAPES = {  # case → (the arrays given, the refusal)
    "2-d-indices": ({"inds": np.arange(8).reshape(4, 2)}, r"must be .* got \(4, 4\), \(4,\) and \(4, 2\)"),
    "0-d-indices": ({"inds": np.int64(3)}, r"must be .* got \(4, 4\), \(4,\) and \(\)"),
    "0-d-targets": ({"targets": np.int64(1)}, r"must be .* got \(4, 4\), \(\) and \(4,\)"),
    "0-d-features": ({"features": np.float32(1)}, r"must be .* got \(\), \(4,\) and \(4,\)"),
    "nan-indices": ({"inds": [0.0, np.nan, 2.0, 3.0]}, "r0_train_res5_inds.npy holds float64 indices"),
}


@pytest.mark.parametrize("case", list(VISSL_SHAPES))
def test_vissl_shards_of_the_wrong_shape_are_refused_from_their_headers(tmp_path, case):
    given, message = VISSL_SHAPES[case]
    folder = vissl_folder(tmp_path / "vissl", **given)
    with pytest.raises(ArtifactError, match=message):
        read_features(folder)
    result = run_here("probe", folder, "--classifier", "logreg")
    assert_one_line_error(result, 3)
    assert str(folder) in result.stderr.decode()


def test_vissl_indices_of_shape_n_by_1_still_load(tmp_path):
    feats = read_features(vissl_folder(tmp_path / "vissl", inds=np.arange(4).reshape(4, 1)))
    assert feats["train"]["res5"].shape == (4, 4)


def test_one_vissl_shard_hard_linked_under_many_names_is_refused_unread(tmp_path):
    """One 40 MB shard under 150 names would be read 150 times (6 GB): each inode counts once
    against the folder's size, as one HDF5 dataset under many names does."""
    source = tmp_path / "shard"
    source.mkdir()
    n, width = 1000, 10_000  # 40 MB of float32, sparse on disk
    with open(source / "features.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, width)})
        f.truncate(f.tell() + n * width * 4)
    np.save(source / "targets.npy", np.arange(n) % 2)
    np.save(source / "inds.npy", np.arange(n))
    folder = tmp_path / "vissl"
    folder.mkdir()
    for rank in range(75):
        for split in SPLITS:
            for kind in ("features", "targets", "inds"):
                os.link(source / f"{kind}.npy", folder / f"r{rank}_{split}_res5_{kind}.npy")
    refused_unread(read_features, folder, r"r\d+_\w+_res5_features.npy declares \(1000, 10000\) float32, .*; refused")
    result = run_here("probe", folder)
    assert_one_line_error(result, 3)
