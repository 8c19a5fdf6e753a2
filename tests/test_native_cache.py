"""The compiled-kernel cache is verified, not trusted by name: a build records the SHA-256 of its
library, and a cached library that does not match (truncated: SIGBUS on load; a flipped byte:
crashes or wrong gradients) is rebuilt with a warning before ctypes ever loads it. A fake
compiler keeps these tests fast; the real build is covered by tests/test_native_kernels.py."""
import hashlib
import os

import pytest

from so3net.kernels import native

LIBRARY = b"\x7fELF a stand-in for the compiled kernels" * 64


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """``_build`` with a compiler that writes LIBRARY and logs each compilation; returns a counter."""
    log = tmp_path / "compilations"
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo fake 1.0; exit 0; fi\n"
                  f"echo built >> {log}\n"
                  "while [ $# -gt 0 ]; do if [ \"$1\" = -o ]; then out=\"$2\"; fi; shift; done\n"
                  f"cp {tmp_path / 'library'} \"$out\"\n")
    cc.chmod(0o755)
    (tmp_path / "library").write_bytes(LIBRARY)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("SO3NET_CACHE_DIR", str(tmp_path / "cache"))
    return lambda: len(log.read_text().splitlines()) if log.exists() else 0


def test_a_verified_build_is_reused(fake_build):
    first = native.build._build()
    assert first.read_bytes() == LIBRARY and fake_build() == 1
    record = list(first.parent.glob("*.sha256"))
    assert len(record) == 1 and hashlib.sha256(LIBRARY).hexdigest() in record[0].read_text()
    assert native.build._build() == first and fake_build() == 1


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "emptied", "deleted"])
def test_a_damaged_cached_library_is_rebuilt_with_a_warning(fake_build, damage):
    first = native.build._build()
    if damage == "truncated":
        first.write_bytes(LIBRARY[: len(LIBRARY) // 2])
    elif damage == "flipped byte":
        raw = bytearray(LIBRARY)
        raw[100] ^= 0x08
        first.write_bytes(bytes(raw))
    elif damage == "emptied":
        first.write_bytes(b"")
    else:
        first.unlink()
    with pytest.warns(RuntimeWarning, match=r"(?s)compiled kernels .*full_cg-.*\.so.*SHA-256.*rebuilding"):
        again = native.build._build()
    assert again.read_bytes() == LIBRARY and fake_build() == 2
    assert native.build._build() == again and fake_build() == 2


def test_a_damaged_checksum_record_is_rebuilt_with_a_warning(fake_build):
    first = native.build._build()
    record = next(first.parent.glob("*.sha256"))
    record.write_text("not a checksum\n")
    with pytest.warns(RuntimeWarning, match=r"(?s)checksum record .*\.sha256.*rebuilding"):
        assert native.build._build().read_bytes() == LIBRARY
    assert fake_build() == 2


def test_cpu_summary_names_the_model_cpus_and_vector_isa():
    """Benchmark headers print it: CPU figures differ by an order of magnitude across vector ISAs."""
    from so3net.kernels.native import cpu_summary
    text = cpu_summary()
    assert f"{os.cpu_count()} logical CPUs" in text
    assert any(isa in text for isa in ("AVX-512", "AVX2 (no AVX-512)", "AVX", "no AVX", "vector ISA unknown"))
