// ---- ReLU: forward writes y and a bit mask (1 bit per element, 8 to a byte); backward reads it ----
// Byte q holds elements q, q + Q, ..., q + 7Q (Q = number of bytes): thread q touches those 8, so
// each of its 8 loads and stores is coalesced across the warp.
template <typename T>
__global__ void relu_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, unsigned char* __restrict__ bits,
                                long long total)
{
    const long long Q = (total + 7) / 8;
    GRID_STRIDE_LOOP(q, Q) {
        unsigned int b = 0;
        for (int j = 0; j < 8; ++j) {
            const long long i = q + j * Q;
            if (i < total) {
                const T v = x[i];
                const bool pos = v > (T)0;
                y[i] = (pos || v != v) ? v : (T)0;     // NaN stays NaN, as x * (x > 0) does
                b |= (unsigned int)pos << j;
            }
        }
        bits[q] = (unsigned char)b;
    }
}

template <typename T>
__global__ void relu_bwd_kernel(const unsigned char* __restrict__ bits, const T* __restrict__ gy,
                                T* __restrict__ gx, long long total)
{
    const long long Q = (total + 7) / 8;
    GRID_STRIDE_LOOP(q, Q) {
        const unsigned int b = bits[q];
        for (int j = 0; j < 8; ++j) {
            const long long i = q + j * Q;
            if (i < total)
                gx[i] = ((b >> j) & 1u) ? gy[i] : (T)0;
        }
    }
}
