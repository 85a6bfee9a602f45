"""Raw-array kernels without autograd: ``cpu`` (Numba) and ``gpu`` (CuPy), same names and signatures.

``kernels.of(array)`` picks the module from the array's type — never from a global flag — so a
Function calls ``kernels.of(x).im2col(...)`` and runs unchanged on either device.
"""
from minidl import backend


def of(array):
    """The kernel module for ``array``: minidl.kernels.gpu for cupy arrays, else minidl.kernels.cpu."""
    if backend._is_cupy_array(array):
        from minidl.kernels import gpu
        return gpu
    from minidl.kernels import cpu
    return cpu
