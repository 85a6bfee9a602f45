"""``summary(model, input_shape)``: a layer table — output shape, parameters, multiply-adds and
receptive field of every layer — computed by a shape-only pass through the model.

How it works: every layer with a known shape rule (Conv2d, Linear, the pools, Flatten, the
element-wise layers) has its ``forward`` replaced, for the duration of the pass, by the rule:
it returns zeros of the right shape without any arithmetic, and records the row. The model's
own ``forward`` code runs unchanged, so branches (Inception), shortcuts (ResNet) and training-only
heads (GoogLeNet's aux classifiers) appear exactly as the model uses them. A layer without a rule
runs its real forward on the zeros (cheap). ``minidl summary vgg16`` takes well under a second.

Receptive field of a unit (size r, jump j = distance between neighbouring units in input pixels),
through a layer of kernel k and stride s:  r_out = r_in + (k - 1) * j_in,  j_out = j_in * s.
Where paths join (concatenation, the residual sum) the larger field wins. Flatten and global
pooling make every following unit see the whole map. Padding is ignored (the field counts
positions, some of which may fall on padding), as is the usual convention.

Multiply-adds are per image and count convolutions and fully connected layers:
Conv2d C_out * (C_in / groups) * k_h * k_w * H_out * W_out; Linear in * out. Pooling,
normalisation and activations are listed with 0.
"""
from collections import namedtuple

import numpy as np

from minidl import backend
from minidl import nn
from minidl.autograd import Tensor, enable_grad
from minidl.kernels._geometry import conv_output_size, pair, pool_output_size

Row = namedtuple("Row", "name kind depth output_shape params madds rf jump")


# ---- shape rules: (module, input shape) -> (output shape, multiply-adds per image, kernel, stride) --
def _pair(v):
    # output_size may hold None (keep that size): a plain pair, not the kernel geometry's int check
    return (v, v) if isinstance(v, (int, np.integer)) or v is None else tuple(v)


def _check_4d(m, shape):
    if len(shape) != 4:
        raise ValueError(f"{type(m).__name__}: expected an (N, C, H, W) input, got shape {shape}")


def _conv_rule(m, shape):
    _check_4d(m, shape)
    n, c, h, w = shape
    if c != m.in_channels:
        raise ValueError(f"Conv2d: input has {c} channels, the layer expects {m.in_channels} "
                         f"(weight {tuple(m.weight.shape)}, groups={m.groups})")
    (kh, kw), (sh, sw), (ph, pw) = m.kernel_size, m.stride, m.padding
    ho, wo = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    if ho < 1 or wo < 1:
        raise ValueError(f"Conv2d: a {kh}x{kw} kernel does not fit a padded {h}x{w} input")
    madds = m.out_channels * (c // m.groups) * kh * kw * ho * wo
    return (n, m.out_channels, ho, wo), madds, (kh, kw), (sh, sw)


def _pool_rule(m, shape):
    _check_4d(m, shape)
    n, c, h, w = shape
    op = type(m).__name__
    (kh, kw), (sh, sw) = pair(op, "kernel_size", m.kernel_size), pair(op, "stride", m.stride)
    ph, pw = pair(op, "padding", m.padding)
    ho, wo = pool_output_size(h, kh, sh, ph, m.ceil_mode), pool_output_size(w, kw, sw, pw, m.ceil_mode)
    if ho < 1 or wo < 1:
        raise ValueError(f"{type(m).__name__}: a {kh}x{kw} window does not fit a {h}x{w} input")
    return (n, c, ho, wo), 0, (kh, kw), (sh, sw)


def _adaptive_window(size, out):
    """Largest window and the stride of an adaptive pool from ``size`` to ``out`` (torch's bins)."""
    k = max(-(-((i + 1) * size) // out) - (i * size) // out for i in range(out))
    return k, max(1, size // out)


def _adaptive_rule(m, shape):
    _check_4d(m, shape)
    n, c, h, w = shape
    oh, ow = _pair(m.output_size)
    oh, ow = (h if oh is None else oh), (w if ow is None else ow)
    (kh, sh), (kw, sw) = _adaptive_window(h, oh), _adaptive_window(w, ow)
    return (n, c, oh, ow), 0, (kh, kw), (sh, sw)


def _linear_rule(m, shape):
    if shape[-1] != m.in_features:
        raise ValueError(f"Linear: input has {shape[-1]} features (shape {shape}), the layer expects "
                         f"{m.in_features}")
    per_image = int(np.prod(shape[1:-1], dtype=np.int64)) if len(shape) > 2 else 1
    return shape[:-1] + (m.out_features,), per_image * m.in_features * m.out_features, (1, 1), (1, 1)


def _flatten_rule(m, shape):
    a = m.start_axis
    out = shape[:a] + (int(np.prod(shape[a:], dtype=np.int64)),)
    if len(shape) == 4:  # every output unit sees the whole map
        return out, 0, (shape[2], shape[3]), (1, 1)
    return out, 0, (1, 1), (1, 1)


def _batchnorm_rule(m, shape):
    if len(shape) < 2 or shape[1] != m.num_features:
        raise ValueError(f"BatchNorm2d: input has shape {shape}, the layer expects {m.num_features} channels")
    return shape, 0, (1, 1), (1, 1)


def _same_rule(m, shape):
    return shape, 0, (1, 1), (1, 1)


RULES = [
    (nn.Conv2d, _conv_rule),
    (nn.MaxPool2d, _pool_rule),
    (nn.AvgPool2d, _pool_rule),
    (nn.AdaptiveAvgPool2d, _adaptive_rule),
    (nn.Linear, _linear_rule),
    (nn.Flatten, _flatten_rule),
    (nn.BatchNorm2d, _batchnorm_rule),
    ((nn.ReLU, nn.Tanh, nn.Identity, nn.Dropout, nn.LocalResponseNorm), _same_rule),
]


def _rule_for(m):
    for cls, rule in RULES:
        if isinstance(m, cls):
            return rule
    return None


# ---- the pass ------------------------------------------------------------------------------------
class _Pass:
    """Holds the receptive field of every tensor the pass has seen, and the rows in call order."""

    def __init__(self):
        self.field = {}     # id(graph node) -> (node, (r_h, r_w), (j_h, j_w)); the node keeps the id alive
        self.records = []   # [name, kind, depth, is_leaf, shape, params, madds, rf, jump]
        self.leaf_madds = 0

    def mark(self, t, rf, jump):
        self.field[id(t.node)] = (t.node, rf, jump)

    def field_of(self, t):
        """(rf, jump) of tensor t: recorded, or the largest over the inputs of the op that made it."""
        memo = {}
        stack = [t.node]  # the graph links nodes (which hold no data), not tensors
        while stack:
            u = stack[-1]
            if id(u) in memo:
                stack.pop()
                continue
            hit = self.field.get(id(u))
            if hit is not None and hit[0] is u:
                memo[id(u)] = (hit[1], hit[2])
                stack.pop()
                continue
            inputs = list(u.creator.inputs) if u.creator is not None else []
            todo = [x for x in inputs if id(x) not in memo]
            if todo:
                stack.extend(todo)
                continue
            known = [memo[id(x)] for x in inputs if memo[id(x)] is not None]
            memo[id(u)] = (tuple(max(f[0][a] for f in known) for a in range(2)),
                           tuple(max(f[1][a] for f in known) for a in range(2))) if known else None
            stack.pop()
        return memo[id(t.node)] or ((1, 1), (1, 1))


def _wrap(p, name, m, depth, original):
    rule = _rule_for(m)
    is_leaf = not m._modules
    params = sum(int(q.size) for q in m.parameters())

    def forward(*args, **kwargs):
        x = args[0] if args else None
        x_field = p.field_of(x) if isinstance(x, Tensor) else ((1, 1), (1, 1))
        record = [name, type(m).__name__, depth, is_leaf, None, params, 0, None, None]
        p.records.append(record)
        madds_before = p.leaf_madds
        if is_leaf and rule is not None and isinstance(x, Tensor) and len(args) == 1 and not kwargs:
            shape, madds, k, s = rule(m, tuple(x.shape))
            xp = backend.xp_of(x.data)
            y = Tensor(xp.zeros(shape, dtype=x.dtype), requires_grad=True)
            p.leaf_madds += madds
        else:
            y = original(*args, **kwargs)
            k, s = (1, 1), (1, 1)
            if is_leaf and isinstance(x, Tensor) and isinstance(y, Tensor) and x.ndim == 4 and y.ndim == 4:
                # an unknown layer that changes the size: call it a 1x1 window with that stride
                s = tuple(max(1, round(x.shape[a] / y.shape[a])) if y.shape[a] else 1 for a in (2, 3))
        ys = y if isinstance(y, (tuple, list)) else (y,)
        first = next((t for t in ys if isinstance(t, Tensor)), None)
        if is_leaf:
            (rh, rw), (jh, jw) = x_field
            rf, jump = (rh + (k[0] - 1) * jh, rw + (k[1] - 1) * jw), (jh * s[0], jw * s[1])
            for t in ys:
                if isinstance(t, Tensor):
                    p.mark(t, rf, jump)
        else:
            rf, jump = p.field_of(first) if first is not None else x_field
        record[4] = tuple(first.shape) if first is not None else None
        record[6] = p.leaf_madds - madds_before
        record[7], record[8] = rf, jump
        return y

    return forward


def summary(model, input_shape, depth=None):
    """Run a shape-only pass and return a :class:`Summary` (print it for the table).

    input_shape: (C, H, W) for one image, or (N, C, H, W). The model runs in its current mode
    (a fresh model is in training mode: GoogLeNet's aux heads appear; call ``.eval()`` to hide them).
    depth: None lists every layer (the leaves of the module tree); 1 lists the model's children
    (e.g. one row per Inception module or ResNet stage), 2 their children, and so on.
    """
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4:
        raise ValueError(f"summary: input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")
    params = model.parameters()
    ref = params[0].data if params else np.zeros(0, dtype=np.float32)
    xp = backend.xp_of(ref)
    dtype = ref.dtype if ref.dtype.kind == "f" else np.float32

    p = _Pass()
    wrapped = []
    try:
        for name, m in model.named_modules():
            if m is model:
                continue
            had = "forward" in m.__dict__
            original = m.forward
            object.__setattr__(m, "forward", _wrap(p, name, m, name.count(".") + 1, original))
            wrapped.append((m, had, original))
        x = Tensor(xp.zeros(shape, dtype=dtype), requires_grad=True)
        p.mark(x, (1, 1), (1, 1))
        with enable_grad():
            out = model(x)
    finally:
        for m, had, original in wrapped:
            if had:
                object.__setattr__(m, "forward", original)
            else:
                object.__delattr__(m, "forward")

    outs = out if isinstance(out, (tuple, list)) else (out,)
    rows = []
    for name, kind, d, is_leaf, oshape, prm, madds, rf, jump in p.records:
        if (depth is None and is_leaf) or (depth is not None and (d == depth or (d < depth and is_leaf))):
            rows.append(Row(name, kind, d, oshape, prm, madds, rf, jump))
    return Summary(type(model).__name__, shape, rows, [tuple(t.shape) for t in outs if isinstance(t, Tensor)],
                   model.num_parameters(), p.leaf_madds, _reached_params(model, p), _aux_heads(model, p))


AuxHead = namedtuple("AuxHead", "name after params madds ran")


def _aux_heads(model, p):
    """GoogLeNet's auxiliary classifiers (training-only heads): name, the module that feeds them,
    parameters, multiply-adds in this pass, and whether they ran (not in eval mode)."""
    from minidl.models.googlenet import InceptionAux
    heads = []
    for name, m in model.named_modules():
        if not isinstance(m, InceptionAux) or m is model:
            continue
        mine = [i for i, r in enumerate(p.records) if r[0] == name or r[0].startswith(name + ".")]
        madds = sum(p.records[i][6] for i in mine if p.records[i][3])
        after = None
        if mine:  # the last top-level module that ran before the head: the one it hangs on
            before = [r[0] for r in p.records[:mine[0]] if "." not in r[0] and r[0] != name.split(".")[0]]
            after = before[-1] if before else None
        heads.append(AuxHead(name, after, m.num_parameters(), madds, bool(mine)))
    return heads


def _reached_params(model, p):
    """Parameters of the leaf layers that ran in this pass (aux heads in eval mode do not)."""
    ran = {r[0] for r in p.records if r[3]}
    return sum(sum(int(q.size) for q in m.parameters()) for name, m in model.named_modules()
               if name in ran and not m._modules)


class Summary:
    """The result of :func:`summary`: ``rows`` (name, kind, depth, output_shape, params, madds, rf,
    jump), ``total_params``, ``total_madds`` (per image), ``output_shapes``; ``str()`` is the table."""

    def __init__(self, model_name, input_shape, rows, output_shapes, total_params, total_madds,
                 reached_params, aux_heads=()):
        self.model_name, self.input_shape, self.rows = model_name, input_shape, rows
        self.output_shapes, self.total_params, self.total_madds = output_shapes, total_params, total_madds
        self.reached_params, self.aux_heads = reached_params, list(aux_heads)

    @property
    def inference_params(self):
        """Parameters without the auxiliary heads (what a trained net needs to classify)."""
        return self.total_params - sum(h.params for h in self.aux_heads)

    @property
    def inference_madds(self):
        """Multiply-adds per image without the auxiliary heads (in eval mode: the total)."""
        return self.total_madds - sum(h.madds for h in self.aux_heads)

    def row(self, name):
        """The first row whose layer name is ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"summary: no layer named {name!r}")

    def __str__(self):
        def shape_str(s):
            return "x".join(str(v) for v in s[1:]) if s else "-"

        def rf_str(v):
            return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"

        table = [("layer", "type", "output", "params", "mult-adds", "RF", "jump")]
        for r in self.rows:
            table.append((r.name, r.kind, shape_str(r.output_shape),
                          f"{r.params:,}", f"{r.madds:,}", rf_str(r.rf), rf_str(r.jump)))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        right = {3, 4, 5, 6}

        def fmt(row):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

        rule = "-" * len(fmt(table[0]))
        lines = [f"{self.model_name}, input {'x'.join(str(v) for v in self.input_shape[1:])}", rule,
                 fmt(table[0]), rule]
        lines += [fmt(row) for row in table[1:]]
        lines.append(rule)
        if self.aux_heads:
            lines += self._aux_lines(shape_str)
            return "\n".join(lines)
        lines += [f"output shape(s):        {', '.join(shape_str(s) for s in self.output_shapes)}",
                  f"total parameters:       {self.total_params:,}",
                  f"multiply-adds / image:  {self.total_madds:,} ({self.total_madds / 1e9:.2f} G)"]
        if self.reached_params != self.total_params:
            lines.append(f"parameters not used in this pass (e.g. heads used only in training): "
                         f"{self.total_params - self.reached_params:,}")
        return "\n".join(lines)

    def _aux_lines(self, shape_str):
        """Totals with and without the auxiliary heads, and what each output is."""
        ran = [h for h in self.aux_heads if h.ran]
        aux_p = sum(h.params for h in self.aux_heads)
        aux_m = sum(h.madds for h in ran)
        names = ["logits (the classifier after global pooling; the prediction)"]
        names += [f"{h.name} (auxiliary head on {h.after}; its loss is added with weight 0.3 in training)"
                  for h in ran]
        outs = [f"{n}: {shape_str(s)}" for n, s in zip(names, self.output_shapes)]
        lines = [f"outputs:                {outs[0]}"] + [f"                        {o}" for o in outs[1:]]
        if not ran:
            lines.append("                        (eval mode: the auxiliary heads do not run)")
        lines += [f"total parameters:       {self.total_params:,} = {self.inference_params:,} inference network "
                  f"+ {aux_p:,} auxiliary heads ({', '.join(h.name for h in self.aux_heads)}; training only)",
                  f"multiply-adds / image:  {self.total_madds:,} ({self.total_madds / 1e9:.2f} G)"
                  + (f" = {self.inference_madds:,} ({self.inference_madds / 1e9:.2f} G) inference network "
                     f"+ {aux_m:,} auxiliary heads" if ran else " (inference network only)")]
        if not ran:
            lines.append(f"parameters not used in this pass (the auxiliary heads, used only in training): {aux_p:,}")
        return lines

    def __repr__(self):
        return str(self)


def receptive_field(model, input_shape):
    """(size, jump) of the model's last layer's receptive field, for square inputs."""
    s = summary(model, input_shape)
    last = s.rows[-1]
    return last.rf[0], last.jump[0]

