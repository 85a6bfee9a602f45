"""blas.matmul: the batch split across threads gives np.matmul's products, and leaves BLAS as it found it."""
import os
import threading

import numpy as np
import pytest

from minidl.kernels import blas

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    return [c.num_threads for c in threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers]


@pytest.fixture
def split_everything(monkeypatch):
    """Split even the small products of these tests; record the shares each batch was cut into."""
    monkeypatch.setattr(blas, "MIN_FLOPS", 0)
    shares = []
    run = blas._run

    def recording(a, b, out, accumulate, lo, hi):
        shares.append((lo, hi))
        run(a, b, out, accumulate, lo, hi)
    monkeypatch.setattr(blas, "_run", recording)
    return shares


def _cases(rng, dtype):
    u = rng.standard_normal((36, 2, 5, 7)).astype(dtype)         # (points, groups, K, C)
    v = rng.standard_normal((36, 2, 7, 11)).astype(dtype)        # (points, groups, C, T)
    q = rng.standard_normal((36, 2, 5, 11)).astype(dtype)
    yield "forward", u, v
    yield "weight gradient, transposed view", q, v.transpose(0, 1, 3, 2)
    yield "input gradient, transposed view", u.transpose(0, 1, 3, 2), q
    yield "3-D, odd batch", rng.standard_normal((5, 3, 4)).astype(dtype), rng.standard_normal((5, 4, 6)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_numpy_into_out_and_accumulated(split_everything, dtype):
    rng = np.random.default_rng(0)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for name, a, b in _cases(rng, dtype):
        want = np.matmul(a, b)
        np.testing.assert_allclose(blas.matmul(a, b), want, err_msg=name, **tol)
        out = np.full(want.shape, np.nan, dtype=dtype)
        assert blas.matmul(a, b, out=out) is out
        np.testing.assert_allclose(out, want, err_msg=name, **tol)
        start = rng.standard_normal(want.shape).astype(dtype)
        acc = start.copy()
        blas.matmul(a, b, out=acc, accumulate=True)
        np.testing.assert_allclose(acc, start + want, err_msg=name, **tol)


def test_batch_is_cut_into_one_share_per_blas_thread(split_everything):
    threads = max(_blas_threads(), default=1)
    if threads < 2:
        pytest.skip("BLAS runs one thread here: nothing to split")
    a, b = np.ones((36, 4, 4), np.float32), np.ones((36, 4, 4), np.float32)
    blas.matmul(a, b)
    shares = sorted(split_everything)
    assert len(shares) == min(threads, 36)
    assert shares[0][0] == 0 and shares[-1][1] == 36
    assert all(hi == lo2 for (_, hi), (lo2, _) in zip(shares, shares[1:]))   # contiguous, no overlap
    assert _blas_threads() == [threads] * len(_blas_threads())   # and BLAS has its threads back


def test_unsplittable_shapes_are_plain_matmul(split_everything):
    a, b = np.ones((36, 4, 4), np.float32), np.ones((4, 3), np.float32)   # broadcast batch
    np.testing.assert_array_equal(blas.matmul(a, b), np.matmul(a, b))
    np.testing.assert_array_equal(blas.matmul(np.ones((4, 5)), np.ones((5, 2))), np.full((4, 2), 5.0))
    assert split_everything == []


def test_error_in_a_share_restores_threads_and_releases_the_lock(split_everything):
    before = _blas_threads()
    a, b = np.ones((8, 4, 4), np.float32), np.ones((8, 4, 4), np.float32)
    with pytest.raises((TypeError, ValueError)):
        blas.matmul(a, b, out=np.empty((8, 4, 4), dtype=np.int8))   # matmul cannot cast into int8
    assert _blas_threads() == before
    assert blas._lock.acquire(blocking=False)
    blas._lock.release()
    np.testing.assert_array_equal(blas.matmul(a, b), np.full((8, 4, 4), 4.0, np.float32))


def test_busy_lock_falls_back_to_numpy(split_everything):
    a, b = np.ones((8, 4, 4), np.float32), np.ones((8, 4, 4), np.float32)
    with blas._lock:   # another thread is splitting: this call must not wait for it
        got = blas.matmul(a, b)
    np.testing.assert_array_equal(got, np.full((8, 4, 4), 4.0, np.float32))
    assert split_everything == []


def test_concurrent_callers_agree(split_everything):
    rng = np.random.default_rng(1)
    pairs = [(rng.standard_normal((12, 6, 5)), rng.standard_normal((12, 5, 7))) for _ in range(4)]
    got = [None] * len(pairs)

    def work(i):
        for _ in range(20):
            got[i] = blas.matmul(*pairs[i])
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (a, b), g in zip(pairs, got):
        np.testing.assert_allclose(g, np.matmul(a, b), rtol=1e-12, atol=1e-12)


def test_accumulate_needs_out():
    with pytest.raises(ValueError, match="accumulate"):
        blas.matmul(np.ones((2, 3, 3)), np.ones((2, 3, 3)), accumulate=True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_works_in_a_forked_child(split_everything):
    a, b = np.ones((8, 4, 4)), np.ones((8, 4, 4))
    blas.matmul(a, b)        # the parent's pool exists now
    pid = os.fork()
    if pid == 0:             # the child has the pool object but not its threads
        ok = False
        try:
            ok = np.array_equal(blas.matmul(a, b), np.full((8, 4, 4), 4.0))
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_parallel_runs_each_piece_once_on_its_fixed_worker():
    threads = max(_blas_threads(), default=1)
    if threads < 2:
        pytest.skip("BLAS runs one thread here: nothing to run in parallel")
    seen, lock = [], threading.Lock()

    def piece(worker, i):
        with lock:
            seen.append((worker, i, threading.get_ident(), max(_blas_threads())))
    workers = blas.parallel(piece, 7)
    assert workers == min(threads, 7)
    assert sorted(i for _, i, _, _ in seen) == list(range(7))
    assert all(w == i % workers for w, i, _, _ in seen)    # fixed: what a worker sums is its own order
    assert {t for w, _, t, _ in seen if w == 0} == {threading.get_ident()}   # the caller is worker 0
    assert len({t for _, _, t, _ in seen}) == workers
    assert {n for *_, n in seen} == {1}                     # BLAS single-threaded inside the pieces
    assert _blas_threads() == [threads] * len(_blas_threads())


def test_parallel_error_restores_threads_and_releases_the_lock():
    if max(_blas_threads(), default=1) < 2:
        pytest.skip("BLAS runs one thread here: nothing to run in parallel")
    before = _blas_threads()

    def piece(worker, i):
        if i == 3:
            raise RuntimeError("piece 3 failed")
    with pytest.raises(RuntimeError, match="piece 3"):
        blas.parallel(piece, 6)
    assert _blas_threads() == before
    assert blas._lock.acquire(blocking=False)
    blas._lock.release()


def test_parallel_runs_nothing_where_it_cannot():
    ran = []
    with blas._lock:                                   # another caller has BLAS's threads
        assert blas.parallel(lambda w, i: ran.append(i), 4) == 0
    assert blas.parallel(lambda w, i: ran.append(i), 1) == 0   # one piece: the caller runs it
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert blas.parallel(lambda w, i: ran.append(i), 4) == 0
    assert ran == []
