"""Exact Clebsch–Gordan coefficients: sympy agreement, orthogonality, the disk cache, errors."""
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st
from sympy.physics.quantum.cg import CG

import so3net.cg as cg


def _slots(l1, l2):
    for l in range(abs(l1 - l2), l1 + l2 + 1):
        for m1 in range(-l1, l1 + 1):
            for m2 in range(-l2, l2 + 1):
                if abs(m1 + m2) <= l:
                    yield l1, m1, l2, m2, l, m1 + m2


def _assert_exact_equal(ours, theirs, args):
    """Equal as exact numbers (both are sign * sqrt(rational))."""
    assert sympy.simplify(ours - theirs) == 0, (args, ours, theirs)


def _correctly_rounded(value) -> float:
    return float(sympy.N(value, 40))


@pytest.mark.slow
def test_all_coefficients_up_to_l4_equal_sympy_exactly():
    count = 0
    for l1 in range(5):
        for l2 in range(5):
            for args in _slots(l1, l2):
                theirs = CG(*args).doit()
                _assert_exact_equal(cg.cg_exact(*args), theirs, args)
                assert cg.clebsch_gordan(*args) == _correctly_rounded(theirs), args
                count += 1
    assert count == 2501


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_random_coefficients_up_to_l12_equal_sympy(data):
    l1 = data.draw(st.integers(0, 12))
    l2 = data.draw(st.integers(0, 12))
    l = data.draw(st.integers(abs(l1 - l2), min(l1 + l2, 12)))
    m1 = data.draw(st.integers(-l1, l1))
    m2 = data.draw(st.integers(max(-l2, -l - m1), min(l2, l - m1)))
    args = (l1, m1, l2, m2, l, m1 + m2)
    theirs = CG(*args).doit()
    _assert_exact_equal(cg.cg_exact(*args), theirs, args)
    assert cg.clebsch_gordan(*args) == _correctly_rounded(theirs)


def test_float_conversion_is_correctly_rounded():
    """Every stored value of a few pairs is the exact value rounded once (40-digit reference)."""
    for l1, l2 in [(5, 3), (12, 1)]:
        for args in _slots(l1, l2):
            assert cg.clebsch_gordan(*args) == _correctly_rounded(cg.cg_exact(*args)), args


@pytest.mark.parametrize("l1,l2", [(30, 2), (30, 0), (2, 30), (12, 11), (15, 15)])
def test_orthogonality_to_1e13(l1, l2):
    """Both orthogonality relations: the blocks form an orthogonal matrix of size (2l1+1)(2l2+1)."""
    n = (2 * l1 + 1) * (2 * l2 + 1)
    blocks = cg.cg_pair_blocks(l1, l2)
    M = np.concatenate([blocks[l].reshape(n, 2 * l + 1) for l in sorted(blocks)], axis=1)
    assert M.shape == (n, n)
    assert np.abs(M.T @ M - np.eye(n)).max() < 1e-13
    assert np.abs(M @ M.T - np.eye(n)).max() < 1e-13


def test_selection_rule_and_sparse_form():
    for l1, l2 in [(2, 1), (3, 3), (4, 1)]:
        for l, block in cg.cg_pair_blocks(l1, l2).items():
            i1, i2, i = np.nonzero(block)
            assert np.all((i1 - l1) + (i2 - l2) == i - l)
            m1, m2, m, value = cg.cg_sparse(l1, l2, l)
            assert np.all(m == m1 + m2) and np.all(value != 0)
            assert np.array_equal(value, block[m1 + l1, m2 + l2, m + l])
            assert list(zip(m1, m2)) == sorted(zip(m1, m2))
    assert cg.clebsch_gordan(1, 1, 1, 0, 2, 0) == 0.0  # m != m1 + m2
    assert cg.clebsch_gordan(1, 0, 1, 0, 1, 0) == 0.0  # an exact zero inside the selection rule


def test_tables_are_read_only():
    block = cg.cg_block(2, 2, 2)
    with pytest.raises(ValueError):
        block[0, 0, 0] = 1.0


@pytest.mark.parametrize("call,message", [
    (lambda: cg.cg_block(-1, 0, 1), "l1 must be a non-negative integer"),
    (lambda: cg.cg_block(1, 1.5, 1), "l2 must be a non-negative integer"),
    (lambda: cg.cg_block(True, 1, 1), "l1 must be a non-negative integer"),
    (lambda: cg.cg_block(1, 1, 3), "|l1-l2| <= l <= l1+l2"),
    (lambda: cg.clebsch_gordan(1, 2, 1, 0, 1, 2), "|m| <= 1"),
    (lambda: cg.clebsch_gordan(2, 0, 1, 0, 3, -4), "m for l=3"),
    (lambda: cg.cg_exact(1, 0, 1, 0.5, 1, 0), "m for l2=1"),
    (lambda: cg.cg_sparse(0, 0, 1), "|l1-l2| <= l <= l1+l2"),
])
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message.replace("|", r"\|").replace("+", r"\+")):
        call()


# ------------------------------------------------------------------------- the disk cache

@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SO3NET_CACHE_DIR", str(tmp_path))
    cg.clear_memory_cache()
    yield tmp_path / f"cg-v{cg.CACHE_VERSION}"
    cg.clear_memory_cache()


def _reference(l1, l2):
    return {l: np.array([[[_correctly_rounded(cg.cg_exact(l1, m1, l2, m2, l, m))
                            for m in range(-l, l + 1)] for m2 in range(-l2, l2 + 1)] for m1 in range(-l1, l1 + 1)])
            for l in range(abs(l1 - l2), l1 + l2 + 1)}


def _load_and_compare(l1, l2):
    cg.clear_memory_cache()
    blocks = cg.cg_pair_blocks(l1, l2)
    ref = _reference(l1, l2)
    assert set(blocks) == set(ref)
    for l in ref:
        assert np.array_equal(blocks[l], ref[l])


def _rewrite(path, mutate_payload=None, header_fields=None):
    """Rewrite a cache file with a mutated payload and/or header, keeping its hash valid."""
    raw = path.read_bytes()
    fields = list(cg._HEADER.unpack_from(raw))
    payload = bytearray(raw[cg._HEADER.size:])
    if mutate_payload:
        mutate_payload(payload)
    for index, value in (header_fields or {}).items():
        fields[index] = value
    fields[-1] = hashlib.sha256(payload).digest()
    path.write_bytes(cg._HEADER.pack(*fields) + bytes(payload))


def test_cache_file_written_and_reused(fresh_cache, monkeypatch):
    cg.cg_block(3, 2, 4)
    path = fresh_cache / "3_2.bin"
    assert path.exists()
    cg.clear_memory_cache()
    monkeypatch.setattr(cg, "_compute_pair", lambda *a: pytest.fail("a valid cache file was recomputed"))
    _load_and_compare(3, 2)


def _wrong_first_value(payload):
    struct.pack_into("<d", payload, 0, 0.25)


@pytest.mark.parametrize("damage", [
    "truncated", "flipped byte", "empty", "wrong magic", "wrong version", "other pair",
    "valid hash, wrong first value", "valid hash, entry outside its block",
    "valid hash, a later value changed", "valid hash, a later sign flipped"])
def test_damaged_cache_file_is_detected_and_rebuilt(fresh_cache, damage):
    l1, l2 = 3, 2
    cg.cg_block(l1, l2, 1)
    path = fresh_cache / f"{l1}_{l2}.bin"
    good = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(good[:-5])
    elif damage == "flipped byte":
        raw = bytearray(good)
        raw[cg._HEADER.size + 17] ^= 0x40
        path.write_bytes(bytes(raw))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong magic":
        path.write_bytes(b"NOTSO3CG" + good[8:])
    elif damage == "wrong version":
        _rewrite(path, header_fields={1: cg.CACHE_VERSION + 1})
    elif damage == "other pair":
        cg.cg_block(2, 3, 1)
        path.write_bytes((fresh_cache / "2_3.bin").read_bytes())
    elif damage == "valid hash, wrong first value":
        _rewrite(path, _wrong_first_value)
    elif damage == "valid hash, entry outside its block":
        count = cg._HEADER.unpack_from(good)[5]
        _rewrite(path, lambda p: struct.pack_into("<h", p, 8 * count + 2, l1 + 1))  # m1 of the second entry
    elif damage == "valid hash, a later value changed":
        _rewrite(path, lambda p: struct.pack_into("<d", p, 8 * 7, struct.unpack_from("<d", p, 8 * 7)[0] * 1.001))
    elif damage == "valid hash, a later sign flipped":
        _rewrite(path, lambda p: struct.pack_into("<d", p, 8 * 7, -struct.unpack_from("<d", p, 8 * 7)[0]))
    assert path.read_bytes() != good
    _load_and_compare(l1, l2)
    assert path.read_bytes() == good  # rebuilt with the exact values


def test_unwritable_cache_still_gives_exact_values(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SO3NET_CACHE_DIR", str(blocker))
    cg.clear_memory_cache()
    try:
        _load_and_compare(2, 2)
    finally:
        cg.clear_memory_cache()


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SO3NET_CACHE_DIR", str(tmp_path))
    assert cg.cache_dir() == tmp_path / f"cg-v{cg.CACHE_VERSION}"
    monkeypatch.delenv("SO3NET_CACHE_DIR")
    assert cg.cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "so3net" / f"cg-v{cg.CACHE_VERSION}"
