"""Data parallel on 2 ranks: the same SGD trajectory as one process with the doubled batch."""
import pytest

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped-buckets", "after-backward"])
def test_two_ranks_equal_one_rank_with_double_batch(mpirun, overlap):
    run = mpirun("data_parallel", overlap)
    assert run.returncode == 0, run.stderr[-3000:]
    r = run.result
    assert r["moved"] > 1e-3                 # the weights did change over the steps
    assert r["max_rel_err"] <= 1e-10         # float64, 5 SGD steps with momentum and weight decay
    assert r["ranks_identical"] is True      # broadcast + averaging keep the replicas bit-identical
    assert r["buckets"] >= 3                 # tiny buckets: several messages per step
    assert r["unused_grad_is_none"]          # a parameter backward never reached gets no (zero) gradient
    if overlap:  # every bucket was started by the gradient hooks before backward returned — from the
        # second step on: the first step learns that one parameter is never used
        assert all(n == r["buckets"] for n in r["started_in_backward"][1:])
    else:
        assert all(n == 0 for n in r["started_in_backward"])


def test_collectives_gradients_match_single_process(mpirun):
    run = mpirun("collectives")
    assert run.returncode == 0, run.stderr[-3000:]
    r = run.result
    assert r["loss"] <= 1e-12
    assert max(r["grads"]) <= 1e-12           # all_gather (reduce-scatter back) and all_reduce
    assert r["pipeline"] <= 1e-12             # send/recv: the gradient travels back


def test_sync_batchnorm_equals_batchnorm_on_combined_batch(mpirun):
    run = mpirun("sync_bn")
    assert run.returncode == 0, run.stderr[-3000:]
    r = run.result
    for key in ("y", "gx", "gweight", "gbias", "running_mean", "running_var"):
        assert r[key] <= 1e-12, (key, r[key])
    assert r["per_rank_differs"]              # and per-rank BN would have given something else


def test_sync_batchnorm_single_values_and_its_own_communicator(mpirun):
    run = mpirun("sync_bn_edges")
    assert run.returncode == 0, run.stderr[-3000:]
    r = run.result
    assert r["pair"] <= 1e-12                 # one value per rank: two per channel over the job
    # one value over the whole job: PyTorch's rule (an error), raised on every rank so none hangs
    assert all(s and "more than 1 value per channel" in s and "got 1" in s for s in r["singles"]), r["singles"]
    assert not r["own_comm_synced"] and r["own_comm_plain"] == 0.0   # a 1-rank communicator: plain BN
