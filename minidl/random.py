"""minidl's seeded random generators (one for NumPy, one for CuPy), set by ``manual_seed``.

Dropout masks, weight initialisation and data shuffling draw from here, so one
``md.manual_seed(s)`` makes a run repeatable. ``get_state``/``set_state`` go into checkpoints.
"""
import numpy as np

_seed = 0
_stream = 0  # 0, or this process's own stream (an MPI rank > 0): see fold_in
_np_rng = np.random.default_rng(_seed)
_cp_rng = None


def manual_seed(seed):
    """Reseed minidl's generators (CPU and, if CuPy is in use, GPU)."""
    global _seed, _np_rng, _cp_rng, _stream
    _seed = int(seed)
    _np_rng = np.random.default_rng(_seed)
    _cp_rng = None  # recreated from the new seed on first GPU use
    _stream = 0     # back to a single process's stream: a rank calls fold_in again


def generator(xp=np):
    """The generator for an array module: numpy.random.Generator or cupy's equivalent."""
    global _cp_rng
    if xp is np:
        return _np_rng
    if _cp_rng is None:
        # an int seed (what every CuPy version takes), distinct per stream
        seed = int(np.random.SeedSequence([_seed, _stream]).generate_state(1)[0]) if _stream else _seed
        _cp_rng = xp.random.default_rng(seed)
    return _cp_rng


def fold_in(stream):
    """Give this process a stream of its own, derived from the current state and ``stream``.

    Data-parallel ranks start from one seed (same initial weights) but must not draw the same
    dropout masks: rank r calls ``fold_in(r)``. Stream 0 keeps the state as it is, so rank 0 (and a
    single process) stay bit-exact; ``set_state`` folds the restored state in again.
    """
    global _stream, _np_rng, _cp_rng
    _stream = int(stream)
    if _stream:
        _np_rng = np.random.default_rng([int(_np_rng.bit_generator.random_raw()), _stream])
        _cp_rng = None


def get_state():
    """A picklable snapshot of the CPU generator (for bit-exact resume on the CPU)."""
    return {"seed": _seed, "numpy": _np_rng.bit_generator.state}


def set_state(state):
    global _seed, _cp_rng
    _seed = state["seed"]
    _np_rng.bit_generator.state = state["numpy"]
    _cp_rng = None
    if _stream:
        fold_in(_stream)
