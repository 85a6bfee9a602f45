"""AlexNet's two towers on two ranks compute exactly what the grouped single-process model computes."""
import pytest

pytestmark = pytest.mark.mpi


def test_two_tower_alexnet_equals_grouped_model(mpirun):
    run = mpirun("towers", True)
    assert run.returncode == 0, run.stderr[-3000:]
    r = run.result
    assert r["keys_match"] and r["weights"] == 0.0   # the towers reassemble into the grouped weights
    assert r["loss"] <= 1e-12
    bad = {k: e for k, e in r["grads"].items() if e > 1e-10}
    assert not bad, bad                               # every parameter's gradient, float64
    assert r["tower_params"] < 0.6 * r["grouped_params"]  # each rank holds about half the net
    assert r["same_as_entry"]                         # two_tower_alexnet() builds this tower


def test_per_tower_lrn_is_the_papers_not_the_grouped_models(mpirun):
    # without the 2-channel halo each tower normalises only its own maps (the paper's GPUs did so);
    # the grouped model normalises across the tower boundary, so the two then differ
    run = mpirun("towers", False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["loss"] > 1e-9


def test_models_point_to_the_distributed_entry_point():
    from minidl import models
    with pytest.raises(ValueError, match="two_tower_alexnet"):
        models.alexnet(towers="mpi")
