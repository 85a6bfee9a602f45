// ---- batch normalisation, x viewed as (N, C, L) ----
// Every kernel below runs channel c = blockIdx.y (grid-stride over C) and, for each sample n, the
// positions l of the plane (n, c) over grid.x: consecutive threads read consecutive addresses and
// no thread divides an index. Per-channel sums are accumulated in double in two steps, with no
// atomics so that every run adds in the same order (the same result bit for bit): each of the P
// threads of grid.x writes its partial sums to parts[(2c + s) * P + t], and the statistics
// kernels add a channel's P partials in index order (sum_parts).
//   mode 0 (forward):  sum 0 of x - x[0, c, 0],  sum 1 of (x - x[0, c, 0])^2
//                      (shifted by the channel's first value, so var = E[u^2] - E[u]^2 does not cancel)
//   mode 1 (backward): sum 0 of gy,              sum 1 of gy * (x - mean[c])
// a = x (mode 0) or gy (mode 1); b = x (mode 1); the shift of channel c is center[c * center_stride].
template <typename T>
__global__ void bn_sums_kernel(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ center,
                               long long center_stride, double* __restrict__ parts, int mode, int N, int C, long long L)
{
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        const double mu = (double)center[c * center_stride];
        double s1 = 0, s2 = 0;
        for (int n = 0; n < N; ++n) {
            const long long base = ((long long)n * C + c) * L;
            for (long long l = first; l < L; l += step) {
                if (mode == 0) {
                    const double u = (double)a[base + l] - mu;
                    s1 += u;
                    s2 += u * u;
                } else {
                    const double g = (double)a[base + l];
                    s1 += g;
                    s2 += g * ((double)b[base + l] - mu);
                }
            }
        }
        parts[(2LL * c) * step + first] = s1;      // every thread writes, 0 when it had no element
        parts[(2LL * c + 1) * step + first] = s2;
    }
}

// Per-channel statistics into stats (3, C): mean, inv_std = 1/sqrt(var + eps), biased var.
// mode 0: from the sums of bn_sums_kernel (m values per channel); with update, the running
// buffers move towards them (the variance unbiased, m / (m - 1)). mode 1 (eval): from the buffers.
// sum number s of channel c: its P partials added in index order
__device__ __forceinline__ double sum_parts(const double* parts, long long P, int c, int s)
{
    const double* p = parts + (2LL * c + s) * P;
    double acc = 0;
    for (long long t = 0; t < P; ++t)
        acc += p[t];
    return acc;
}

template <typename T>
__global__ void bn_stats_kernel(const double* __restrict__ parts, long long P, const T* __restrict__ center,
                                long long center_stride, T* __restrict__ stats, T* running_mean,
                                T* running_var, int C, long long m, double eps, double momentum,
                                int mode, int update)
{
    GRID_STRIDE_LOOP(c, C) {
        double mean, var;
        if (mode == 1) {
            mean = (double)running_mean[c];
            var = (double)running_var[c];
        } else {
            const double d = sum_parts(parts, P, c, 0) / (double)m;
            mean = (double)center[c * center_stride] + d;
            var = sum_parts(parts, P, c, 1) / (double)m - d * d;
            if (var < 0) var = 0;
            if (update) {
                running_mean[c] = (T)((1 - momentum) * (double)running_mean[c] + momentum * mean);
                running_var[c] = (T)((1 - momentum) * (double)running_var[c]
                                     + momentum * var * (double)m / (double)(m - 1));
            }
        }
        stats[c] = (T)mean;
        stats[C + c] = (T)(1.0 / sqrt(var + eps));
        stats[2 * C + c] = (T)var;
    }
}

// y = (x - mean[c]) * (inv_std[c] * weight[c]) + bias[c]
template <typename T>
__global__ void bn_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, const T* __restrict__ stats,
                              const T* __restrict__ weight, const T* __restrict__ bias, int has_weight,
                              int has_bias, int N, int C, long long L)
{
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        const T mean = stats[c];
        const T scale = has_weight ? stats[C + c] * weight[c] : stats[C + c];
        const T shift = has_bias ? bias[c] : (T)0;
        for (int n = 0; n < N; ++n) {
            const long long base = ((long long)n * C + c) * L;
            for (long long l = first; l < L; l += step)
                y[base + l] = (x[base + l] - mean) * scale + shift;
        }
    }
}

// From the backward sums (sum gy, sum gy*(x - mean)): the parameter gradients and coef (3, C) of
//   gx = coef[0] * (gy - coef[1]) - (x - mean) * coef[2]
// training: coef = (w*inv_std, mean(gy), w*inv_std^3*mean(gy*(x - mean))); eval: (w*inv_std, 0, 0).
template <typename T>
__global__ void bn_bwd_stats_kernel(const double* __restrict__ parts, long long P, const T* __restrict__ stats,
                                    const T* __restrict__ weight, int has_weight, T* __restrict__ coef,
                                    T* __restrict__ gw, T* __restrict__ gb, int C, long long m, int training)
{
    GRID_STRIDE_LOOP(c, C) {
        const double inv_std = (double)stats[C + c];
        const double w = has_weight ? (double)weight[c] : 1.0;
        const double s1 = sum_parts(parts, P, c, 0), s2 = sum_parts(parts, P, c, 1);
        gw[c] = (T)(s2 * inv_std);
        gb[c] = (T)s1;
        coef[c] = (T)(w * inv_std);
        coef[C + c] = training ? (T)(s1 / (double)m) : (T)0;
        coef[2 * C + c] = training ? (T)(w * inv_std * inv_std * inv_std * s2 / (double)m) : (T)0;
    }
}

template <typename T>
__global__ void bn_bwd_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ stats,
                              const T* __restrict__ coef, T* __restrict__ gx, int N, int C, long long L)
{
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long step = (long long)blockDim.x * gridDim.x;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        const T mean = stats[c], k1 = coef[c], mgy = coef[C + c], k2 = coef[2 * C + c];
        for (int n = 0; n < N; ++n) {
            const long long base = ((long long)n * C + c) * L;
            for (long long l = first; l < L; l += step)
                gx[base + l] = k1 * (gy[base + l] - mgy) - (x[base + l] - mean) * k2;
        }
    }
}
