// Winograd F(M x M, 3 x 3) tile transforms for minidl/kernels/winograd.py (its docstring has the
// maths and the layouts). A = M + 2 is the tile side; tile index q = (n*th + ty)*tw + tx; the
// transform arrays are (A*A, channels, T) with T = N*th*tw, so consecutive threads (consecutive
// tiles of one plane) write consecutive addresses. One thread per (plane, tile), grid-stride loops;
// the GEMMs between these kernels are cupy.matmul (cuBLAS). The 1-D transforms below are B^T, A^T,
// A and B of winograd.matrices with the zeros written out, as in the Numba version.

#define WG_GRID_STRIDE_LOOP(idx, total) \
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < (total); \
         idx += (long long)blockDim.x * gridDim.x)

// dst[j][r] = (L src[r])_j for one row r: "row in, column out", so two passes give L X L^T.
template <typename T, int M>
__device__ __forceinline__ void wg_bt_row(const T* s, T* d, int r, int ld)
{
    if (M == 2) {
        d[0 * ld + r] = s[0] - s[2];
        d[1 * ld + r] = s[1] + s[2];
        d[2 * ld + r] = s[2] - s[1];
        d[3 * ld + r] = s[3] - s[1];
    } else {
        d[0 * ld + r] = 4 * s[0] - 5 * s[2] + s[4];
        d[1 * ld + r] = 4 * (s[1] + s[2]) - s[3] - s[4];
        d[2 * ld + r] = 4 * (s[2] - s[1]) + s[3] - s[4];
        d[3 * ld + r] = 2 * (s[3] - s[1]) + s[4] - s[2];
        d[4 * ld + r] = 2 * (s[1] - s[3]) + s[4] - s[2];
        d[5 * ld + r] = 4 * s[1] - 5 * s[3] + s[5];
    }
}

template <typename T, int M>
__device__ __forceinline__ void wg_b_row(const T* s, T* d, int r, int ld)
{
    if (M == 2) {
        d[0 * ld + r] = s[0];
        d[1 * ld + r] = s[1] - s[2] - s[3];
        d[2 * ld + r] = s[1] + s[2] - s[0];
        d[3 * ld + r] = s[3];
    } else {
        d[0 * ld + r] = 4 * s[0];
        d[1 * ld + r] = 4 * (s[1] - s[2] + s[5]) + 2 * (s[4] - s[3]);
        d[2 * ld + r] = 4 * (s[1] + s[2]) - 5 * s[0] - s[3] - s[4];
        d[3 * ld + r] = s[2] - s[1] + 2 * (s[3] - s[4]) - 5 * s[5];
        d[4 * ld + r] = s[0] - s[1] - s[2] + s[3] + s[4];
        d[5 * ld + r] = s[5];
    }
}

template <typename T, int M>
__device__ __forceinline__ void wg_at_row(const T* s, T* d, int r, int ld)
{
    if (M == 2) {
        d[0 * ld + r] = s[0] + s[1] + s[2];
        d[1 * ld + r] = s[1] - s[2] + s[3];
    } else {
        const T p1 = s[1] + s[2], m1 = s[1] - s[2], p2 = s[3] + s[4], m2 = s[3] - s[4];
        d[0 * ld + r] = s[0] + p1 + p2;
        d[1 * ld + r] = m1 + 2 * m2;
        d[2 * ld + r] = p1 + 4 * p2;
        d[3 * ld + r] = m1 + 8 * m2 + s[5];
    }
}

template <typename T, int M>
__device__ __forceinline__ void wg_a_row(const T* s, T* d, int r, int ld)
{
    if (M == 2) {
        d[0 * ld + r] = s[0];
        d[1 * ld + r] = s[0] + s[1];
        d[2 * ld + r] = s[0] - s[1];
        d[3 * ld + r] = s[1];
    } else {
        const T e = s[0] + s[2], o = s[1] + s[3], e4 = s[0] + 4 * s[2], o2 = 2 * s[1] + 8 * s[3];
        d[0 * ld + r] = s[0];
        d[1 * ld + r] = e + o;
        d[2 * ld + r] = e - o;
        d[3 * ld + r] = e4 + o2;
        d[4 * ld + r] = e4 - o2;
        d[5 * ld + r] = s[3];
    }
}

// ---- input transform: v[t, c, q] = (B^T d B)[t] for the A x A input tile d (zeros outside x) ----
template <typename T, int M>
__global__ void wg_input_kernel(const T* __restrict__ x, T* __restrict__ v, long long total,
                                int C, int H, int W, int ph, int pw, int th, int tw)
{
    const int A = M + 2;
    const long long Tq = total / C;   // tiles of the batch
    WG_GRID_STRIDE_LOOP(idx, total) {
        const int tx = (int)(idx % tw);
        const long long r = idx / tw;
        const int ty = (int)(r % th);
        const long long p = r / th;                  // plane n*C + c
        const int c = (int)(p % C);
        const long long n = p / C;
        const T* plane = x + p * H * W;
        const int h0 = ty * M - ph, w0 = tx * M - pw;
        T d[A * A], tmp[A * A], out[A * A];
#pragma unroll
        for (int i = 0; i < A; ++i) {
            const int h = h0 + i;
#pragma unroll
            for (int j = 0; j < A; ++j) {
                const int w = w0 + j;
                d[i * A + j] = (h >= 0 && h < H && w >= 0 && w < W) ? plane[(long long)h * W + w] : (T)0;
            }
        }
#pragma unroll
        for (int i = 0; i < A; ++i) wg_bt_row<T, M>(d + i * A, tmp, i, A);
#pragma unroll
        for (int i = 0; i < A; ++i) wg_bt_row<T, M>(tmp + i * A, out, i, A);
        const long long q = (n * th + ty) * tw + tx;
#pragma unroll
        for (int t = 0; t < A * A; ++t) v[((long long)t * C + c) * Tq + q] = out[t];
    }
}

// ---- output transform: y[n, k] tile = A^T M A (cropped) + bias[k] ----
template <typename T, int M>
__global__ void wg_output_kernel(const T* __restrict__ mm, const T* __restrict__ bias, T* __restrict__ y,
                                 long long total, int has_bias, int K, int oh, int ow, int th, int tw)
{
    const int A = M + 2;
    const long long Tq = total / K;
    WG_GRID_STRIDE_LOOP(idx, total) {
        const int tx = (int)(idx % tw);
        const long long r = idx / tw;
        const int ty = (int)(r % th);
        const long long p = r / th;                  // plane n*K + k
        const int k = (int)(p % K);
        const long long n = p / K;
        const long long q = (n * th + ty) * tw + tx;
        T s[A * A], tmp[M * A], out[M * M];
#pragma unroll
        for (int t = 0; t < A * A; ++t) s[t] = mm[((long long)t * K + k) * Tq + q];
#pragma unroll
        for (int i = 0; i < A; ++i) wg_at_row<T, M>(s + i * A, tmp, i, A);
#pragma unroll
        for (int i = 0; i < M; ++i) wg_at_row<T, M>(tmp + i * A, out, i, M);
        const T b = has_bias ? bias[k] : (T)0;
        T* plane = y + p * oh * ow;
        for (int i = 0; i < M && ty * M + i < oh; ++i)
            for (int j = 0; j < M && tx * M + j < ow; ++j)
                plane[(long long)(ty * M + i) * ow + tx * M + j] = out[i * M + j] + b;
    }
}

// ---- gy transform: q[t, k, q] = (A g A^T)[t] for the M x M gy tile g (zeros past the edge) ----
template <typename T, int M>
__global__ void wg_grad_output_kernel(const T* __restrict__ gy, T* __restrict__ qq, long long total,
                                      int K, int oh, int ow, int th, int tw)
{
    const int A = M + 2;
    const long long Tq = total / K;
    WG_GRID_STRIDE_LOOP(idx, total) {
        const int tx = (int)(idx % tw);
        const long long r = idx / tw;
        const int ty = (int)(r % th);
        const long long p = r / th;
        const int k = (int)(p % K);
        const long long n = p / K;
        const T* plane = gy + p * oh * ow;
        T g[M * M], tmp[A * M], out[A * A];
#pragma unroll
        for (int i = 0; i < M; ++i) {
            const int yy = ty * M + i;
#pragma unroll
            for (int j = 0; j < M; ++j) {
                const int xx = tx * M + j;
                g[i * M + j] = (yy < oh && xx < ow) ? plane[(long long)yy * ow + xx] : (T)0;
            }
        }
#pragma unroll
        for (int i = 0; i < M; ++i) wg_a_row<T, M>(g + i * M, tmp, i, M);
#pragma unroll
        for (int i = 0; i < A; ++i) wg_a_row<T, M>(tmp + i * M, out, i, A);
        const long long q = (n * th + ty) * tw + tx;
#pragma unroll
        for (int t = 0; t < A * A; ++t) qq[((long long)t * K + k) * Tq + q] = out[t];
    }
}

// ---- input gradient, a gather: one thread per M x M block (by, bx) of gx, whose pixels
// h = by*M - ph + i (0 <= i < M) lie in tile by at row i and, for i < 2, in tile by-1 at row i+M
// (tiles step by M and overlap by 2). Each covering tile's B Z B^T is summed in: no atomics.
template <typename T, int M>
__global__ void wg_grad_input_kernel(const T* __restrict__ z, T* __restrict__ gx, long long total,
                                     int C, int H, int W, int ph, int pw, int th, int tw, int bh, int bw)
{
    const int A = M + 2;
    WG_GRID_STRIDE_LOOP(idx, total) {
        const int bx = (int)(idx % bw);
        const long long r = idx / bw;
        const int by = (int)(r % bh);
        const long long p = r / bh;                  // plane n*C + c
        const int c = (int)(p % C);
        const long long n = p / C;
        const long long Tq = (total / ((long long)bh * bw) / C) * th * tw;   // N * th * tw
        T acc[M * M];
#pragma unroll
        for (int t = 0; t < M * M; ++t) acc[t] = 0;
        for (int dy = 0; dy < 2; ++dy) {
            const int ty = by - dy;
            if (ty < 0 || ty >= th) continue;
            for (int dx = 0; dx < 2; ++dx) {
                const int tx = bx - dx;
                if (tx < 0 || tx >= tw) continue;
                const long long q = (n * th + ty) * tw + tx;
                T s[A * A], tmp[A * A], out[A * A];
#pragma unroll
                for (int t = 0; t < A * A; ++t) s[t] = z[((long long)t * C + c) * Tq + q];
#pragma unroll
                for (int i = 0; i < A; ++i) wg_b_row<T, M>(s + i * A, tmp, i, A);
#pragma unroll
                for (int i = 0; i < A; ++i) wg_b_row<T, M>(tmp + i * A, out, i, A);
                // block pixel (i, j) is tile pixel (i + dy*M, j + dx*M), inside the tile when < A
                for (int i = dy * M; i < A && i < dy * M + M; ++i)
                    for (int j = dx * M; j < A && j < dx * M + M; ++j)
                        acc[(i - dy * M) * M + (j - dx * M)] += out[i * A + j];
            }
        }
        T* plane = gx + p * H * W;
        for (int i = 0; i < M; ++i) {
            const int h = by * M - ph + i;
            if (h < 0 || h >= H) continue;
            for (int j = 0; j < M; ++j) {
                const int w = bx * M - pw + j;
                if (w >= 0 && w < W) plane[(long long)h * W + w] = acc[i * M + j];
            }
        }
    }
}
