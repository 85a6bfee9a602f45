"""CPU kernels in Numba (compiled with cache=True; parallel where it pays). Same names and
signatures as minidl/kernels/gpu.py; plain NumPy versions of each live in reference.py.

Conventions shared by cpu.py, gpu.py and reference.py:
  im2col(x, kh, kw, sh, sw, ph, pw) -> col (C*kh*kw, N*oh*ow); rows ordered (c, i, j), columns (n, y, x)
  col2im(col, x_shape, kh, kw, sh, sw, ph, pw) -> x (N, C, H, W), overlapping windows summed
  max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow) -> y (N, C, oh, ow), argmax int32 (flat h*W+w in the input plane)
  max_pool_backward(gy, argmax, x_shape) -> gx
  avg_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow) -> y      (padding counted in the divisor, as PyTorch)
  avg_pool_backward(gy, x_shape, kh, kw, sh, sw, ph, pw) -> gx
  lrn_forward(x, size, alpha, beta, k) -> y, scale             (scale = k + alpha * windowed sum of x^2)
  lrn_backward(x, y, scale, gy, size, alpha, beta, k) -> gx
"""

# ==== convolution: im2col / col2im ====

# ==== pooling and local response normalisation ====
