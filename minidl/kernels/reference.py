"""Plain NumPy reference versions of every kernel in cpu.py / gpu.py: slow, obvious, for tests.

Same names and signatures as minidl/kernels/cpu.py (see its docstring for the conventions).
"""
import numpy as np  # noqa: F401

# ==== convolution: im2col / col2im ====

# ==== pooling and local response normalisation ====
