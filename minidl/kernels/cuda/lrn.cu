// ---- local response normalisation across channels (x viewed as (N, C, L)) ----
template <typename T>
__device__ __forceinline__ T pow_neg(T s, T beta)
{
    // s ** -beta; AlexNet's beta = 0.75 as two square roots, as on the CPU
    if (beta == (T)0.75) return (T)1 / sqrt(s * sqrt(s));
    return pow(s, -beta);
}

template <typename T>
__global__ void lrn_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ scale,
                               long long total, int C, long long L, int size, T alpha, T beta, T k)
{
    const int before = size / 2, after = (size - 1) / 2;   // channels c - size//2 ... c + (size-1)//2
    GRID_STRIDE_LOOP(idx, total) {
        const long long l = idx % L;
        const long long t = idx / L;
        const int c = (int)(t % C);
        const long long base = (t - c) * L + l;            // element (n, 0, l)
        const int c0 = max(c - before, 0), c1 = min(c + after, C - 1);
        T acc = 0;
        for (int cc = c0; cc <= c1; ++cc) {
            const T v = x[base + cc * L];
            acc += v * v;
        }
        const T s = k + alpha * acc;
        scale[idx] = s;
        y[idx] = x[idx] * pow_neg(s, beta);
    }
}

template <typename T>
__global__ void lrn_bwd_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ scale,
                               const T* __restrict__ gy, T* __restrict__ gx,
                               long long total, int C, long long L, int size, T alpha, T beta)
{
    const int before = size / 2, after = (size - 1) / 2;
    GRID_STRIDE_LOOP(idx, total) {
        const long long l = idx % L;
        const long long t = idx / L;
        const int c = (int)(t % C);
        const long long base = (t - c) * L + l;
        // input channel c lies in the windows of outputs c - after ... c + before
        const int c0 = max(c - after, 0), c1 = min(c + before, C - 1);
        T acc = 0;
        for (int cc = c0; cc <= c1; ++cc) {
            const long long e = base + cc * L;
            acc += gy[e] * y[e] / scale[e];
        }
        gx[idx] = gy[idx] * pow_neg(scale[idx], beta) - (T)2 * alpha * beta * x[idx] * acc;
    }
}
