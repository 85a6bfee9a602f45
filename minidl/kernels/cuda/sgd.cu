// ---- SGD, one pass per parameter: weight decay, momentum (PyTorch's form), Nesterov, update ----
// mode bits: 1 momentum, 2 first step (the buffer starts as the gradient), 4 Nesterov
template <typename T>
__global__ void sgd_kernel(T* p, const T* g, T* v, long long total, T lr, T mu, T wd, int mode)
{
    GRID_STRIDE_LOOP(i, total) {
        T d = g[i];
        if (wd != (T)0) d = d + wd * p[i];
        if (mode & 1) {
            const T vi = (mode & 2) ? d : mu * v[i] + d;
            v[i] = vi;
            d = (mode & 4) ? d + mu * vi : vi;
        }
        p[i] = p[i] - lr * d;
    }
}
