"""One check per task: the student's code against minidl's own op (or module) on the same inputs.

Every check runs in float64 on cases chosen so that each term of the formula matters (odd sizes,
batch > 1, several channels, padding, overlapping windows, an LRN alpha large enough for the
cross-channel term): the forward is compared with minidl's, every gradient with minidl's backward
and, at sampled elements, with central differences of the student's own forward. The composite
modules of part 6 (VGG block, Inception, residual blocks) are checked in minidl.assignments.composites.
"""
import itertools

import numpy as np

import minidl as md
from minidl import functional as F
from minidl import metrics
from minidl.assignments.grader import Fail, Missing, as_array, central_differences, compare, exception_text
from minidl.autograd import Tensor


def _rng(seed):
    return np.random.default_rng([seed, 12])


def _weights_rng(seed):
    """The upstream gradients' stream: apart from the inputs' (weights equal to an input can hide a mistake)."""
    return np.random.default_rng([seed, 99])


def _case_note(e, label):
    return Fail(f"{e} [case: {label}]")


def check_op(label, student, reference, arrays, input_names, seed=0, numeric=True, hints=None,
             forward_hint=None):
    """Forward, gradients and central differences of ``student`` (Tensors -> Tensor, the student's Function)
    against ``reference`` (minidl's op). input_names: a name per array, None for ones without a gradient."""
    rng = _weights_rng(seed)
    hints = hints or {}
    try:
        ts = [Tensor(a.copy(), requires_grad=n is not None) for a, n in zip(arrays, input_names)]
        y = student(*ts)
        rs = [Tensor(a.copy(), requires_grad=n is not None) for a, n in zip(arrays, input_names)]
        r = reference(*rs)
        compare("forward", y, r.data, extra_hint=forward_hint)
        if not isinstance(y, Tensor) or y.creator is None:
            raise Fail("forward returned a plain array: call the Function on Tensors (it must subclass "
                       "minidl.Function and return its output from forward)")
        w = rng.standard_normal(r.shape)
        y.backward(w.astype(y.dtype))
        r.backward(w)
        for t, rt, name in zip(ts, rs, input_names):
            if name is None:
                continue
            if t.grad is None:
                raise Fail(f"backward returns no gradient for {name} (return one gradient per input of forward)")
            compare(f"gradient of {name}", t.grad, rt.grad, extra_hint=hints.get(name))
        if numeric:
            def forward(*xs):
                with md.no_grad():
                    return student(*[Tensor(a) for a in xs])
            for i, (t, name) in enumerate(zip(ts, input_names)):
                if name is not None:
                    central_differences(f"gradient of {name}", forward, arrays, i, as_array(t.grad, name), w, rng)
    except Fail as e:
        raise _case_note(e, label) from None
    except (NotImplementedError, Missing):
        raise
    except Exception as e:
        raise _case_note(Fail(f"exception: {exception_text(e)}"), label) from None


def _away_from_zero(rng, shape, low=0.05):
    """Values with |v| >= low (no kink of ReLU or max within the central differences' reach)."""
    v = rng.standard_normal(shape)
    return np.where(np.abs(v) < low, np.sign(v + 1e-12) * low * (1 + rng.random(shape)), v)


def _distinct(rng, shape, spikes=()):
    """A random permutation of well-separated values (no ties in a max), with large values at ``spikes``."""
    n = int(np.prod(shape))
    x = (rng.permutation(n) / n * 4 - 2 + rng.uniform(0, 0.2 / n, n)).reshape(shape)
    for idx in spikes:
        x[idx] = 3 + 0.01 * rng.random()
    return x


def _overlap_hint(counts):
    """For col2im / pooling backward: 'not summed' when the wrong elements are the ones several windows share."""
    def extra(got, want, bad):
        if bad.any() and (counts[bad] > 1).all():
            return ("wrong only where windows overlap: the contributions of overlapping windows must be "
                    "summed (+=, not =)")
        return None
    return extra


# ==== part 1: ReLU, linear, softmax + cross-entropy =================================================
def check_relu(ns):
    rng = _rng(1)
    for shape in ((4, 5), (2, 3, 5, 4)):
        x = _away_from_zero(rng, shape)
        check_op(f"x {shape}", lambda x: ns.ReLU()(x), F.relu, [x], ["x"])


def check_linear(ns):
    rng = _rng(2)
    for n, i, o in ((5, 7, 3), (1, 4, 6)):
        x, w, b = rng.standard_normal((n, i)), rng.standard_normal((o, i)), rng.standard_normal(o)
        check_op(f"x ({n}, {i}), weight ({o}, {i}), bias ({o},)", lambda x, w, b: ns.Linear()(x, w, b),
                 F.linear, [x, w, b], ["x", "weight", "bias"])


def check_softmax_cross_entropy(ns):
    rng = _rng(3)
    cases = [("logits (6, 5)", 3 * rng.standard_normal((6, 5)), True),
             ("logits (4, 7) of size 1000 (needs the max shift)", 1000 * rng.standard_normal((4, 7)), False)]
    for label, z, numeric in cases:
        t = rng.integers(0, z.shape[1], z.shape[0])

        def student(z, t=t):
            y = ns.SoftmaxCrossEntropy(t.copy())(z)
            if isinstance(y, Tensor) and y.size == 1 and y.shape != ():
                raise Fail(f"forward returns shape {y.shape}; return the mean loss as a 0-d array (a scalar)")
            return y

        check_op(label, student, lambda z, t=t: F.cross_entropy(z, t), [z], ["logits"], numeric=numeric)


# ==== part 2: im2col / col2im, convolution ===========================================================
def _eye_weight(c, kh, kw):
    """Weights (C*kh*kw, C, kh, kw) whose convolution copies each receptive-field element into its own
    channel: conv2d with them is im2col (rows (c, i, j)) in another layout."""
    w = np.zeros((c * kh * kw, c, kh, kw))
    for ci, i, j in itertools.product(range(c), range(kh), range(kw)):
        w[(ci * kh + i) * kw + j, ci, i, j] = 1.0
    return w


def reference_im2col(x, kh, kw, stride, padding):
    """minidl's im2col layout through F.conv2d: (C*kh*kw, N*oh*ow), rows (c, i, j), columns (n, y, x)."""
    y = F.conv2d(Tensor(x), Tensor(_eye_weight(x.shape[1], kh, kw)), None, stride, padding).data
    return y.transpose(1, 0, 2, 3).reshape(y.shape[1], -1)


def reference_col2im(col, x_shape, kh, kw, stride, padding):
    """The adjoint of im2col (each column entry added back to its pixel), as F.conv2d's input gradient."""
    x = Tensor(np.zeros(x_shape), requires_grad=True)
    y = F.conv2d(x, Tensor(_eye_weight(x_shape[1], kh, kw)), None, stride, padding)
    n, k, oh, ow = y.shape
    y.backward(col.reshape(k, n, oh, ow).transpose(1, 0, 2, 3))
    return x.grad


IM2COL_CASES = [((2, 3, 7, 6), 3, 3, 2, 1), ((1, 2, 5, 6), 2, 3, 1, 0), ((2, 1, 6, 7), 3, 2, 2, 2)]


def _geom(x_shape, kh, kw, s, p):
    return f"x {x_shape}, kernel {kh}x{kw}, stride {s}, padding {p}"


def check_im2col(ns):
    rng = _rng(4)
    for shape, kh, kw, s, p in IM2COL_CASES:
        x = rng.standard_normal(shape)
        try:
            got = ns.im2col(x.copy(), kh, kw, s, p)
            compare("im2col", got, reference_im2col(x, kh, kw, s, p))
        except Fail as e:
            raise _case_note(e, _geom(shape, kh, kw, s, p)) from None


def check_col2im(ns):
    rng = _rng(5)
    for shape, kh, kw, s, p in IM2COL_CASES:
        n, c, h, w = shape
        oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
        col = rng.standard_normal((c * kh * kw, n * oh * ow))
        counts = reference_col2im(np.ones_like(col), shape, kh, kw, s, p)
        try:
            got = ns.col2im(col.copy(), shape, kh, kw, s, p)
            compare("col2im", got, reference_col2im(col, shape, kh, kw, s, p), extra_hint=_overlap_hint(counts))
        except Fail as e:
            raise _case_note(e, _geom(shape, kh, kw, s, p)) from None


def _check_conv_cases(ns, cases, seed):
    rng = _rng(seed)
    for x_shape, w_shape, s, p, g in cases:
        x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
        n, c, h, wd = x_shape
        kh, kw = w_shape[2:]
        cols = c * kh * kw, n * ((h + 2 * p - kh) // s + 1) * ((wd + 2 * p - kw) // s + 1)
        counts = reference_col2im(np.ones(cols), x_shape, kh, kw, s, p)
        check_op(f"x {x_shape}, weight {w_shape}, stride {s}, padding {p}, groups {g}",
                 lambda x, w, b: ns.Conv2d(s, p, g)(x, w, b),
                 lambda x, w, b: F.conv2d(x, w, b, s, p, g), [x, w, b], ["x", "weight", "bias"], seed=seed,
                 hints={"x": _overlap_hint(counts)})


def check_conv(ns):
    _check_conv_cases(ns, [((2, 3, 7, 6), (4, 3, 3, 3), 2, 1, 1), ((2, 2, 5, 6), (3, 2, 2, 3), 1, 1, 1),
                           ((1, 3, 4, 5), (5, 3, 1, 1), 1, 0, 1)], 6)


def check_conv_groups(ns):
    _check_conv_cases(ns, [((2, 4, 6, 5), (6, 2, 3, 3), 1, 1, 2), ((1, 6, 5, 5), (3, 2, 3, 3), 2, 0, 3)], 7)


# ==== part 3: pooling ===================================================================================
POOL_CASES = [((2, 3, 7, 7), 3, 2, 0, False), ((2, 2, 8, 8), 3, 2, 0, True), ((1, 3, 6, 5), 3, 2, 1, False),
              ((2, 2, 7, 6), 3, 2, 1, True)]


def _pool_label(shape, k, s, p, ceil):
    return f"x {shape}, {k}x{k} stride {s}, padding {p}, ceil_mode {ceil}"


def check_max_pool(ns):
    rng = _rng(8)
    for shape, k, s, p, ceil in POOL_CASES:
        # large values on the rows and columns two windows share, so some pixel is the max of both
        x = _distinct(rng, shape, spikes=[(0, 0, 2, 2), (0, 1, 2, 4), (-1, -1, 4, 2)])
        ref = lambda x, k=k, s=s, p=p, ceil=ceil: F.max_pool2d(x, k, s, p, ceil)  # noqa: E731
        xt = Tensor(x, requires_grad=True)
        y = ref(xt)
        y.backward(np.ones(y.shape))
        check_op(_pool_label(shape, k, s, p, ceil), lambda x: ns.MaxPool2d(k, s, p, ceil)(x), ref, [x], ["x"],
                 seed=8, hints={"x": _overlap_hint(xt.grad)})


def _window_counts(shape, k, s, p, ceil):
    """How many pooling windows hold each input pixel (> 1 where windows overlap)."""
    def pool_output_size(size, kernel, stride, pad, ceil_mode):  # PyTorch's rule, as F.max_pool2d's
        span = size + 2 * pad - kernel
        out = (-(-span // stride) if ceil_mode else span // stride) + 1
        return out - 1 if ceil_mode and (out - 1) * stride >= size + pad else out

    counts = np.zeros(shape)
    h, w = shape[2:]
    for i in range(pool_output_size(h, k, s, p, ceil)):
        for j in range(pool_output_size(w, k, s, p, ceil)):
            counts[:, :, max(i * s - p, 0):max(i * s - p + k, 0), max(j * s - p, 0):max(j * s - p + k, 0)] += 1
    return counts


def check_avg_pool(ns):
    rng = _rng(9)
    for shape, k, s, p, ceil in POOL_CASES:
        x = rng.standard_normal(shape)
        ref = lambda x, k=k, s=s, p=p, ceil=ceil: F.avg_pool2d(x, k, s, p, ceil)  # noqa: E731
        counts = _window_counts(shape, k, s, p, ceil)
        check_op(_pool_label(shape, k, s, p, ceil), lambda x: ns.AvgPool2d(k, s, p, ceil)(x), ref, [x], ["x"],
                 seed=9, hints={"x": _overlap_hint(counts)})


# ==== part 4: LRN and dropout ========================================================================
LRN_CASES = [((2, 7, 3, 3), 5, 0.1, 0.75, 2.0), ((2, 3, 2, 3), 5, 0.5, 0.75, 1.0), ((1, 6, 2, 2), 4, 0.3, 0.6, 1.5)]


def _lrn_forward_hint(x, size, alpha, beta, k):
    def extra(got, want, bad):
        for other in (size - 1, size + 1):
            if other >= 1:
                alt = F.local_response_norm(Tensor(x), other, alpha, beta, k).data
                if np.allclose(got, alt, rtol=1e-6, atol=1e-9):
                    return (f"your window holds {other} channels, want {size}: channels c - {size // 2} ... "
                            f"c + {(size - 1) // 2} (the window is off by one)")
        if np.allclose(got, x / (k + alpha * x * x) ** beta, rtol=1e-6, atol=1e-9):
            return "you normalise each channel by itself only: the sum runs over the neighbouring channels"
        if np.allclose(got, F.local_response_norm(Tensor(x), size, alpha / size, beta, k).data, rtol=1e-6):
            return "alpha is divided by the window size (PyTorch's convention); the paper's formula does not"
        return None
    return extra


def _lrn_grad_hint(x, size, alpha, beta, k, w):
    sq = x * x
    scale = np.full_like(x, k)
    c = x.shape[1]
    for ci in range(c):
        lo, hi = max(ci - size // 2, 0), min(ci + (size - 1) // 2, c - 1)
        scale[:, ci] += alpha * sq[:, lo:hi + 1].sum(axis=1)
    direct = w * scale ** -beta

    def extra(got, want, bad):
        if np.allclose(got, direct, rtol=1e-6, atol=1e-9):
            return ("only the direct term gy * scale^-beta: the cross-channel term "
                    "-2 alpha beta x_j sum_c gy_c b_c / scale_c (over the windows c that contain j) is missing")
        return None
    return extra


def check_lrn(ns):
    rng = _rng(10)
    for shape, size, alpha, beta, k in LRN_CASES:
        x = rng.standard_normal(shape)
        w = _weights_rng(10).standard_normal(shape)  # check_op's first draw: the upstream gradient
        check_op(f"x {shape}, size {size}, alpha {alpha}, beta {beta}, k {k}",
                 lambda x: ns.LocalResponseNorm(size, alpha, beta, k)(x),
                 lambda x: F.local_response_norm(x, size, alpha, beta, k), [x], ["x"], seed=10,
                 forward_hint=_lrn_forward_hint(x, size, alpha, beta, k),
                 hints={"x": _lrn_grad_hint(x, size, alpha, beta, k, w)})


def check_dropout(ns):
    rng = _rng(11)
    p = 0.3
    x = _away_from_zero(rng, (40, 500), 0.1)
    # eval: the identity, forward and backward (as minidl's F.dropout(x, p, training=False))
    xt = Tensor(x.copy(), requires_grad=True)
    y = ns.Dropout(p, False)(xt)
    try:
        compare("forward in eval mode", y, F.dropout(Tensor(x), p, training=False).data)
    except Fail as e:
        raise Fail(f"{e} (at test time inverted dropout is the identity: the scaling happened in training)") from None
    w = rng.standard_normal(x.shape)
    if isinstance(y, Tensor) and y.creator is not None:
        y.backward(w)
        compare("gradient of x in eval mode", xt.grad, w)
    # training: y is 0 or x / (1 - p); about 1 - p of the units kept; a fresh mask per call
    xt = Tensor(x.copy(), requires_grad=True)
    y = ns.Dropout(p, True)(xt)
    ya = as_array(y, "forward in training")
    if ya.shape != x.shape:
        raise Fail(f"forward in training wrong: shape {ya.shape}, want {x.shape}")
    if not np.all(np.isfinite(ya)):
        raise Fail("forward in training gives NaN or Inf")
    kept = ya != 0
    if kept.all():
        raise Fail("forward in training drops nothing (every unit kept): multiply by a random 0/1 mask")
    if np.allclose(ya[kept], x[kept], rtol=1e-9):
        raise Fail("forward in training: the kept units equal x, want x / (1 - p): inverted dropout rescales "
                   "at training time (the division by 1 - p is missing)")
    if np.allclose(ya[kept], x[kept] * (1 - p), rtol=1e-9):
        raise Fail("forward in training: the kept units are x * (1 - p), want x / (1 - p) (inverted dropout "
                   "divides by the keep probability)")
    compare("forward in training (each unit is 0 or x / (1 - p))", ya[kept], x[kept] / (1 - p))
    frac, sd = kept.mean(), np.sqrt(p * (1 - p) / x.size)
    if abs(frac - (1 - p)) > 6 * sd:
        raise Fail(f"forward in training keeps {frac:.3f} of the units, want 1 - p = {1 - p:.2f} "
                   f"(p = {p} is the probability to drop a unit)")
    again = as_array(ns.Dropout(p, True)(Tensor(x.copy())), "forward in training")
    if np.array_equal(again != 0, kept):
        raise Fail("forward in training draws the same mask every call: draw a fresh one in each forward")
    if not (isinstance(y, Tensor) and y.creator is not None):
        raise Fail("forward returned a plain array: it must be a minidl.Function called on Tensors")
    y.backward(w)
    if xt.grad is None:
        raise Fail("backward returns no gradient for x")
    compare("gradient of x in training (gy times the same mask / (1 - p))", xt.grad, w * kept / (1 - p))

    # central differences, with the mask held fixed by reseeding the generators before each forward
    def seeded(*xs):
        md.manual_seed(5)
        np.random.seed(5)
        with md.no_grad():
            return ns.Dropout(p, True)(Tensor(xs[0]))

    small = x[:4, :30].copy()
    if np.array_equal(as_array(seeded(small), "forward"), as_array(seeded(small), "forward")):
        md.manual_seed(5)
        np.random.seed(5)
        st = Tensor(small.copy(), requires_grad=True)
        ys = ns.Dropout(p, True)(st)
        ws = w[:4, :30]
        ys.backward(ws)
        central_differences("gradient of x in training", seeded, [small], 0, as_array(st.grad, "x"), ws, rng)


# ==== part 5: batch normalisation =========================================================================
BN_CASES = [(4, 3, 3, 2), (6, 4), (2, 2, 3, 3)]


def _bn_grad_hint(x_shape, training):
    axes = (0,) + tuple(range(2, len(x_shape)))

    def extra(got, want, bad):
        if not training:
            return None
        s = got.sum(axis=axes)
        if np.abs(s).max() > 1e-6 * max(np.abs(got).max(), 1e-12) * got.size:
            return ("in training the gradient of x must sum to 0 over each channel: the term through the batch "
                    "mean (- mean of gy*weight over the batch) is missing or wrong")
        return "the term through the batch variance (- xhat * mean(gy*weight * xhat)) looks wrong"
    return extra


def _check_bn(ns, training, seed):
    rng = _rng(seed)
    for shape in BN_CASES:
        c = shape[1]
        x = 3 + 2 * rng.standard_normal(shape)
        gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
        rm0, rv0 = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
        label = f"x {shape}, training {training}"
        bufs = {}

        def student(x, g, b):
            bufs["s"] = (rm0.copy(), rv0.copy())
            return ns.BatchNorm(bufs["s"][0], bufs["s"][1], training, 0.1, 1e-5)(x, g, b)

        def reference(x, g, b):
            bufs["r"] = (rm0.copy(), rv0.copy())
            return F.batch_norm(x, bufs["r"][0], bufs["r"][1], g, b, training, 0.1, 1e-5)

        check_op(label, student, reference, [x, gamma, beta], ["x", "weight", "bias"], seed=seed,
                 hints={"x": _bn_grad_hint(shape, training)})
        # the buffers of the last forward of each (check_op's numeric loop ran the student last)
        student(Tensor(x), Tensor(gamma), Tensor(beta))
        reference(Tensor(x), Tensor(gamma), Tensor(beta))
        for i, name in enumerate(("running_mean", "running_var")):
            try:
                note = None
                if training and name == "running_var":
                    m = x.size // c
                    biased = (1 - 0.1) * rv0 + 0.1 * x.var(axis=(0,) + tuple(range(2, x.ndim)))
                    if np.allclose(bufs["s"][1], biased):
                        note = f"the buffer takes the unbiased batch variance (times m / (m - 1), m = {m})"

                def buffer_hint(got, want, bad, note=note):
                    return note or ("the buffers must not change in eval mode" if not training else
                                    "r = (1 - momentum) * r + momentum * batch statistic, in place")
                compare(f"{name} after forward" + (" (updated in place)" if training else ""), bufs["s"][i],
                        bufs["r"][i], extra_hint=buffer_hint)
            except Fail as e:
                raise _case_note(e, label) from None


def check_batchnorm_train(ns):
    _check_bn(ns, True, 12)


def check_batchnorm_eval(ns):
    _check_bn(ns, False, 13)


# ==== part 7: top-k error ===========================================================================
def check_topk_error(ns):
    rng = _rng(18)
    for n, classes, k in ((30, 7, 3), (64, 10, 5), (64, 10, 1), (20, 4, 4)):
        scores = _distinct(rng, (n, classes))
        # targets often near the k-th place, so off-by-one ranks change the answer
        order = np.argsort(-scores, axis=1)
        ranks = rng.integers(max(k - 2, 0), min(k + 2, classes), n)
        targets = order[np.arange(n), ranks]
        label = f"scores ({n}, {classes}), k {k}"
        got = ns.topk_error(scores.copy(), targets.copy(), k)
        try:
            got = float(np.asarray(as_array(got, "topk_error")).reshape(()))
        except ValueError:
            raise Fail(f"topk_error returns shape {np.shape(got)}: return one number [case: {label}]") from None
        want = metrics.topk_error(scores, targets, k)
        if abs(got - want) <= 1e-12:
            continue
        note = ""
        if abs(got - (1 - want)) < 1e-12:
            note = " — that is the accuracy (the fraction correct); the error is 1 minus it"
        elif abs(got - metrics.topk_error(-scores, targets, k)) < 1e-12:
            note = " — you take the k lowest scores; sort descending"
        else:
            for other in (k - 1, k + 1):
                if 1 <= other <= classes and abs(got - metrics.topk_error(scores, targets, other)) < 1e-12:
                    note = f" — that is the top-{other} error: the number of classes kept is off by one"
        raise Fail(f"topk_error wrong: got {got:.6g}, want {want:.6g}{note} [case: {label}]")
