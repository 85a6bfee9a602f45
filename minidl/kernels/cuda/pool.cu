// ---- max pooling forward, with switches: the index (h - h_start) * kw + (w - w_start) of each
// maximum inside its kh x kw window (window start = i*sh - ph, j*sw - pw, in the padded frame) ----
template <typename T>
__global__ void max_pool_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int* __restrict__ switches,
                                    long long total, int H, int W, int kh, int kw, int sh, int sw,
                                    int ph, int pw, int oh, int ow)
{
    GRID_STRIDE_LOOP(idx, total) {
        const int j = (int)(idx % ow);
        const long long t = idx / ow;
        const int i = (int)(t % oh);
        const long long p = t / oh;
        const T* plane = x + p * H * W;
        const int hs = i * sh - ph, ws = j * sw - pw;
        const int h0 = max(hs, 0), h1 = min(hs + kh, H);      // padding is never a candidate
        const int w0 = max(ws, 0), w1 = min(ws + kw, W);
        T best = plane[h0 * W + w0];
        int bh = h0, bw = w0;
        for (int h = h0; h < h1; ++h) {
            for (int w = w0; w < w1; ++w) {
                const T v = plane[h * W + w];
                if (v > best || (v != v && best == best)) {   // the first NaN wins, as np.argmax
                    best = v;
                    bh = h;
                    bw = w;
                }
            }
        }
        y[idx] = best;
        switches[idx] = (bh - hs) * kw + (bw - ws);
    }
}

// ---- max pooling backward, a gather: one thread per input pixel (h, w) adds the gy of every
// window covering it whose switch points at it. Each gx written once, in a fixed order: no
// atomics, the same gradient bit for bit on every run ----
template <typename T>
__global__ void max_pool_bwd_kernel(const T* __restrict__ gy, const int* __restrict__ switches,
                                    T* __restrict__ gx, long long total, int H, int W, int kh, int kw,
                                    int sh, int sw, int ph, int pw, int oh, int ow)
{
    GRID_STRIDE_LOOP(idx, total) {
        const int w = (int)(idx % W);
        const long long t = idx / W;
        const int h = (int)(t % H);
        const long long o = (t / H) * oh * ow;             // this plane's first output
        const int hp = h + ph, wp = w + pw;
        const int i0 = hp >= kh ? (hp - kh) / sh + 1 : 0, i1 = min(hp / sh + 1, oh);
        const int j0 = wp >= kw ? (wp - kw) / sw + 1 : 0, j1 = min(wp / sw + 1, ow);
        T acc = 0;
        for (int i = i0; i < i1; ++i)
            for (int j = j0; j < j1; ++j) {
                const long long q = o + (long long)i * ow + j;
                if (switches[q] == (hp - i * sh) * kw + (wp - j * sw))
                    acc += gy[q];
            }
        gx[idx] = acc;
    }
}

// ---- average pooling: PyTorch's divisor (padding counted, nothing past the right padding) ----
template <typename T>
__global__ void avg_pool_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, long long total,
                                    int H, int W, int kh, int kw, int sh, int sw, int ph, int pw,
                                    int oh, int ow)
{
    GRID_STRIDE_LOOP(idx, total) {
        const int j = (int)(idx % ow);
        const long long t = idx / ow;
        const int i = (int)(t % oh);
        const long long p = t / oh;
        const T* plane = x + p * H * W;
        int h0 = i * sh - ph, h1 = min(h0 + kh, H + ph);
        int w0 = j * sw - pw, w1 = min(w0 + kw, W + pw);
        const int area = (h1 - h0) * (w1 - w0);
        h0 = max(h0, 0); h1 = min(h1, H);
        w0 = max(w0, 0); w1 = min(w1, W);
        T acc = 0;
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w)
                acc += plane[h * W + w];
        y[idx] = acc / (T)area;
    }
}

template <typename T>
__global__ void avg_pool_bwd_kernel(const T* __restrict__ gy, T* __restrict__ gx, long long total,
                                    int H, int W, int kh, int kw, int sh, int sw, int ph, int pw,
                                    int oh, int ow)
{
    GRID_STRIDE_LOOP(idx, total) {
        const int w = (int)(idx % W);
        const long long t = idx / W;
        const int h = (int)(t % H);
        const long long p = t / H;
        const T* g = gy + p * oh * ow;
        const int hp = h + ph, wp = w + pw;
        const int i0 = hp >= kh ? (hp - kh) / sh + 1 : 0;
        const int i1 = min(hp / sh + 1, oh);
        const int j0 = wp >= kw ? (wp - kw) / sw + 1 : 0;
        const int j1 = min(wp / sw + 1, ow);
        T acc = 0;
        for (int i = i0; i < i1; ++i) {
            const int a0 = i * sh - ph;
            const int dh = min(a0 + kh, H + ph) - a0;
            for (int j = j0; j < j1; ++j) {
                const int b0 = j * sw - pw;
                const int dw = min(b0 + kw, W + pw) - b0;
                acc += g[i * ow + j] / (T)(dh * dw);
            }
        }
        gx[idx] = acc;
    }
}
