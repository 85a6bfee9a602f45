"""minidl's seeded random generators (one for NumPy, one for CuPy), set by ``manual_seed``.

Dropout masks, weight initialisation and data shuffling draw from here, so one
``md.manual_seed(s)`` makes a run repeatable. ``get_state``/``set_state`` go into checkpoints.
"""
import numpy as np

_seed = 0
_np_rng = np.random.default_rng(_seed)
_cp_rng = None


def manual_seed(seed):
    """Reseed minidl's generators (CPU and, if CuPy is in use, GPU)."""
    global _seed, _np_rng, _cp_rng
    _seed = int(seed)
    _np_rng = np.random.default_rng(_seed)
    _cp_rng = None  # recreated from the new seed on first GPU use


def generator(xp=np):
    """The generator for an array module: numpy.random.Generator or cupy's equivalent."""
    global _cp_rng
    if xp is np:
        return _np_rng
    if _cp_rng is None:
        _cp_rng = xp.random.default_rng(_seed)
    return _cp_rng


def get_state():
    """A picklable snapshot of the CPU generator (for bit-exact resume on the CPU)."""
    return {"seed": _seed, "numpy": _np_rng.bit_generator.state}


def set_state(state):
    global _seed, _cp_rng
    _seed = state["seed"]
    _np_rng.bit_generator.state = state["numpy"]
    _cp_rng = None
