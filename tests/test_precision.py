"""`--precision auto`: which CPUs get bf16, and the timing that decides where the flags cannot."""

import pytest

from dimctl import precision


@pytest.fixture
def cpu(monkeypatch):
    """Set the CPU's flags and its bf16 matmul speed-up; counts how often the speed-up is timed."""
    timed = []

    def set_cpu(flags: set[str], speedup: float = 1.0):
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(precision, "cpu_bf16_matmul_speedup", lambda: timed.append(1) or speedup)
        return timed
    return set_cpu


def test_amx_means_bf16_without_timing(cpu):
    timed = cpu({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, speedup=0.1)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    assert timed == []


@pytest.mark.parametrize("speedup, chosen", [(2.5, "bf16"), (1.3, "bf16"), (1.2, "fp32"), (0.55, "fp32")])
def test_avx512_bf16_without_amx_is_decided_by_the_measured_speedup(cpu, speedup, chosen):
    # 2.5: Zen 4; 0.55: an Intel Xeon whose AMX is hidden (both measured).
    timed = cpu({"avx512f", "avx512_bf16"}, speedup=speedup)
    assert precision.resolve_precision("auto", "cpu") == chosen
    assert timed == [1]


def test_no_bf16_flags_means_fp32_without_timing(cpu):
    timed = cpu({"avx2", "fma"}, speedup=100.0)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert timed == []


def test_an_explicit_precision_is_kept(cpu):
    cpu({"amx_bf16"})
    assert [precision.resolve_precision(p, "cpu") for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]


def test_the_measured_speedup_is_a_real_timing():
    precision.cpu_bf16_matmul_speedup.cache_clear()
    speedup = precision.cpu_bf16_matmul_speedup(size=256)
    # Emulated bf16 runs ~100× slower than fp32, native up to ~10× faster: any real timing lies between.
    assert 1e-4 < speedup < 100
