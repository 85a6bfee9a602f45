// ---- im2col: col[(c*kh + i)*kw + j, (n*oh + y)*ow + x] = x[n, c, y*sh - ph + i, x*sw - pw + j] ----
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ img, T* __restrict__ col,
                              int N, int C, int H, int W, int kh, int kw, int sh, int sw,
                              int ph, int pw, int oh, int ow)
{
    const long long L = (long long)N * oh * ow;           // columns of col
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        GRID_STRIDE_LOOP(q, L) {
            const int xo = (int)(q % ow);
            const long long t = q / ow;
            const int yo = (int)(t % oh);
            const int n = (int)(t / oh);
            const T* plane = img + ((long long)n * C + c) * H * W;
            const int h0 = yo * sh - ph, w0 = xo * sw - pw;
            T* out = col + (long long)c * kh * kw * L + q;
            for (int i = 0; i < kh; ++i) {
                const int h = h0 + i;
                const bool hin = (h >= 0) && (h < H);
                for (int j = 0; j < kw; ++j) {
                    const int w = w0 + j;
                    *out = (hin && w >= 0 && w < W) ? plane[(long long)h * W + w] : (T)0;
                    out += L;
                }
            }
        }
    }
}

// ---- col2im (gather): x[n, c, h, w] = sum over windows (y, x) covering (h, w) of col ----
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ col, T* __restrict__ img,
                              int N, int C, int H, int W, int kh, int kw, int sh, int sw,
                              int ph, int pw, int oh, int ow)
{
    const long long L = (long long)N * oh * ow;
    const long long HW = (long long)H * W;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        GRID_STRIDE_LOOP(p, (long long)N * HW) {
            const int n = (int)(p / HW);
            const long long r = p - n * HW;
            const int h = (int)(r / W), w = (int)(r % W);
            const int hp = h + ph, wp = w + pw;
            // windows y with 0 <= hp - y*sh < kh, 0 <= y < oh (likewise x)
            const int y0 = hp >= kh ? (hp - kh) / sh + 1 : 0;
            const int y1 = min(hp / sh + 1, oh);
            const int x0 = wp >= kw ? (wp - kw) / sw + 1 : 0;
            const int x1 = min(wp / sw + 1, ow);
            T acc = 0;
            for (int y = y0; y < y1; ++y) {
                const int i = hp - y * sh;
                for (int x = x0; x < x1; ++x) {
                    const int j = wp - x * sw;
                    acc += col[((long long)(c * kh + i) * kw + j) * L + ((long long)n * oh + y) * ow + x];
                }
            }
            img[((long long)n * C + c) * HW + r] = acc;
        }
    }
}
