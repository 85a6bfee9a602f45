"""Part 6's checks: the student's composite modules (VGG block, Inception, residual blocks) against minidl's.

A composite gets minidl's block's (random) weights copied in and is compared forward and backward
(input and every parameter) and in its BatchNorm buffers; central differences would add nothing,
because autograd makes a composite's gradients consistent whatever it computes.
"""
import itertools

import numpy as np

import minidl as md
from minidl import nn
from minidl.assignments.checks import _case_note, _rng
from minidl.assignments.grader import Fail, Missing, compare, exception_text
from minidl.autograd import Tensor


def _float64(m):
    for p in m.parameters():
        p.data = p.data.astype(np.float64)
    for _, mod, name in m.named_buffers():
        b = getattr(mod, name)
        if b.dtype.kind == "f":
            object.__setattr__(mod, name, b.astype(np.float64))


def _randomise(m, rng):
    """Random weights everywhere, BatchNorm's scale, shift and running statistics too (so none is neutral)."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.data = rng.uniform(0.5, 1.5, mod.weight.shape)
            mod.bias.data = 0.3 * rng.standard_normal(mod.bias.shape)
            mod.running_mean = 0.3 * rng.standard_normal(mod.running_mean.shape)
            mod.running_var = rng.uniform(0.5, 2.0, mod.running_var.shape)
        elif isinstance(mod, (nn.Conv2d, nn.Linear)):
            mod.weight.data = rng.standard_normal(mod.weight.shape) * (1.5 / np.sqrt(mod.weight.data[0].size))
            if mod.bias is not None:
                mod.bias.data = 0.3 * rng.standard_normal(mod.bias.shape)


def _keys(m):
    return {k: tuple(v.shape) for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}


def check_module(label, student_module, reference_module, x_shape, seed, what, train=True, forward_hint=None):
    """Copy the reference's (random) weights into the student's module; compare forward, the gradient of
    the input and of every parameter, and the BatchNorm buffers."""
    rng = _rng(seed)
    try:
        if not isinstance(student_module, nn.Module):
            raise Fail(f"{what} must be an nn.Module, got {type(student_module).__name__}")
        mine, want = _keys(student_module), _keys(reference_module)
        if mine != want:
            missing = [k for k in want if k not in mine]
            extra = [k for k in mine if k not in want]
            shapes = [f"{k} {mine[k]} (want {want[k]})" for k in want if k in mine and mine[k] != want[k]]
            parts = ([f"missing {', '.join(missing[:6])}"] if missing else []) + \
                    ([f"unexpected {', '.join(extra[:6])}"] if extra else []) + \
                    ([f"wrong shape {', '.join(shapes[:4])}"] if shapes else [])
            raise Fail(f"the parameters differ from minidl's {what}: " + "; ".join(parts) +
                       " (use the layer names and order the starter's docstring gives)")
        _float64(reference_module)
        _float64(student_module)
        _randomise(reference_module, rng)
        student_module.load_state_dict(reference_module.state_dict())
        student_module.train(train)
        reference_module.train(train)
        x = rng.standard_normal(x_shape)
        xs, xr = Tensor(x.copy(), requires_grad=True), Tensor(x.copy(), requires_grad=True)
        y, r = student_module(xs), reference_module(xr)
        compare("forward", y, r.data, extra_hint=forward_hint)
        w = rng.standard_normal(r.shape)
        y.backward(w)
        r.backward(w)
        compare("gradient of the input x", xs.grad, xr.grad)
        params = dict(student_module.named_parameters())
        for name, p in reference_module.named_parameters():
            q = params[name]
            if q.grad is None:
                raise Fail(f"no gradient reaches the parameter {name}: forward does not use it")
            compare(f"gradient of {name}", q.grad, p.grad)
        sbuf = student_module.state_dict()
        for name, v in reference_module.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                compare(f"{name} after forward", sbuf[name], v)
    except Fail as e:
        raise _case_note(e, label) from None
    except (NotImplementedError, Missing):
        raise
    except Exception as e:
        raise _case_note(Fail(f"exception: {exception_text(e)}"), label) from None


def check_vgg_block(ns):
    from minidl.models.vgg import make_features
    for cin, cout, n, shape in ((2, 3, 2, (2, 2, 6, 7)), (1, 2, 3, (1, 1, 5, 8))):
        md.manual_seed(0)
        ref = make_features([cout] * n + ["M"], in_channels=cin)
        md.manual_seed(0)
        check_module(f"vgg_block({cin}, {cout}, {n}), x {shape}", ns.vgg_block(cin, cout, n), ref, shape, 14,
                     "VGG block (make_features)")


def _inception_hint(sizes):
    names = ["branch1 (1x1)", "branch2 (1x1 -> 3x3)", "branch3 (1x1 -> 5x5)", "branch4 (pool -> 1x1)"]
    bounds = np.cumsum([0] + list(sizes))

    def extra(got, want, bad):
        blocks = [want[:, bounds[i]:bounds[i + 1]] for i in range(4)]
        for perm in itertools.permutations(range(4)):
            if perm != (0, 1, 2, 3):
                alt = np.concatenate([blocks[i] for i in perm], axis=1)
                if alt.shape == got.shape and np.allclose(alt, got, rtol=1e-6, atol=1e-9):
                    return ("the branches are concatenated in the wrong order: yours is "
                            + ", ".join(names[i].split()[0] for i in perm)
                            + "; want branch1, branch2, branch3, branch4")
        wrong = [names[i] for i in range(4) if bad[:, bounds[i]:bounds[i + 1]].any()]
        return "wrong channels belong to " + ", ".join(wrong)
    return extra


def check_inception(ns):
    from minidl.models.googlenet import Inception
    for cfg, shape in (((3, 2, 2, 3, 1, 2, 2), (2, 3, 5, 5)), ((2, 1, 2, 2, 2, 3, 1), (1, 2, 4, 6))):
        md.manual_seed(0)
        ref = Inception(*cfg)
        md.manual_seed(0)
        check_module(f"Inception{cfg}, x {shape}", ns.Inception(*cfg), ref, shape, 15, "Inception",
                     forward_hint=_inception_hint((cfg[1], cfg[3], cfg[5], cfg[6])))


def _downsample(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


def _check_block(ns, cls_name, cases, seed):
    from minidl.models import resnet
    ref_cls = getattr(resnet, cls_name)
    for cin, planes, stride, ds, shortcut, train, shape in cases:
        md.manual_seed(0)
        down_ref = _downsample(cin, planes * ref_cls.expansion, stride) if ds else None
        ref = ref_cls(cin, planes, stride, down_ref, shortcut)
        md.manual_seed(0)
        down = _downsample(cin, planes * ref_cls.expansion, stride) if ds else None
        student = getattr(ns, cls_name)(cin, planes, stride, down, shortcut)
        label = (f"{cls_name}({cin}, {planes}, stride={stride}, downsample={'conv1x1+bn' if ds else None}, "
                 f"shortcut={shortcut}), {'training' if train else 'eval'} mode, x {shape}")
        try:
            check_module(label, student, ref, shape, seed, cls_name, train=train)
        except Fail as e:
            if "forward wrong" in str(e) and shortcut:
                # would it match without the shortcut? then the addition is what is missing
                # (both hold the same weights now, and are in the same mode)
                ref.shortcut = False
                x = _rng(seed + 100).standard_normal(shape)
                with md.no_grad():
                    plain = ref(Tensor(x)).data
                    mine = student(Tensor(x)).data
                ref.shortcut = True
                if np.allclose(mine, plain, rtol=1e-6, atol=1e-9):
                    raise Fail(f"forward wrong: it equals the block without its shortcut — add "
                               f"{'downsample(x)' if ds else 'x'} before the last ReLU [case: {label}]") from None
            raise


def check_basic_block(ns):
    _check_block(ns, "BasicBlock", [(3, 3, 1, False, True, True, (2, 3, 5, 5)),
                                    (2, 4, 2, True, True, True, (2, 2, 6, 5)),
                                    (3, 3, 1, False, True, False, (2, 3, 4, 4)),
                                    (2, 2, 1, False, False, True, (2, 2, 4, 3))], 16)


def check_bottleneck(ns):
    _check_block(ns, "Bottleneck", [(8, 2, 1, False, True, True, (2, 8, 4, 5)),
                                    (4, 2, 2, True, True, True, (2, 4, 5, 6)),
                                    (8, 2, 1, False, True, False, (1, 8, 3, 3))], 17)
