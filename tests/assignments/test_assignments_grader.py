"""The grader: unfinished starters never pass, the solutions pass, and classic mistakes fail naming the part."""
import os
import shutil

import numpy as np
import pytest

from minidl import assignments
from minidl.assignments.tasks import FILES, TASKS


def copy_of(source, folder):
    os.makedirs(folder, exist_ok=True)
    for f in FILES:
        shutil.copyfile(os.path.join(source, f), os.path.join(folder, f))
    return str(folder)


@pytest.fixture(scope="module")
def solutions(tmp_path_factory):
    return copy_of(assignments.SOLUTIONS, tmp_path_factory.mktemp("solutions"))


def test_every_unfinished_starter_task_is_not_started_or_fails(tmp_path):
    results = assignments.check_dir(copy_of(assignments.STARTERS, tmp_path))
    assert [r.task for r in results] == list(TASKS)
    for r in results:
        assert r.verdict in ("NOT STARTED", "FAIL"), r.line()
        assert not r.passed


def test_the_solutions_pass_every_task(solutions):
    for r in assignments.check_dir(solutions):
        assert r.verdict == "PASS", r.line()


# the lessons' old starters: forward written, backward left as "return gy"; a composite without its shortcut
HALF_DONE = [
    ("relu", "part1_basics.py", "return gy * self.mask", "return gy", "gradient of x"),
    ("basic_block", "part6_composites.py", "out = out + (x if self.downsample is None else self.downsample(x))",
     "out = out", "shortcut"),
]


def _replace_in_class(text, cls, old, new):
    """Replace ``old`` inside the block of ``class cls`` (or of ``def cls``) only."""
    for head in (f"class {cls}", f"def {cls}"):
        start = text.find(head)
        if start >= 0:
            break
    assert start >= 0, cls
    nxt = min([i for i in (text.find("\nclass ", start + 1), text.find("\ndef ", start + 1)) if i > 0] or [len(text)])
    block = text[start:nxt]
    assert old in block, (cls, old)
    return text[:start] + block.replace(old, new) + text[nxt:]


# (task, file, class or function, old text, new text, words the reason must contain)
WRONG = [
    # part 1
    ("relu", "ReLU", "return gy * self.mask", "return -gy * self.mask", ["gradient of x", "sign"]),
    ("relu", "ReLU", "return gy * self.mask", "return gy", ["gradient of x"]),
    ("relu", "ReLU", "self.mask = x > 0", "self.mask = x < 0", ["forward"]),
    ("linear", "Linear", "gweight = gy.T @ self.x", "gweight = self.x.T @ gy", ["(7, 3)", "(3, 7)"]),
    ("linear", "Linear", "gx = gy @ self.weight", "gx = -gy @ self.weight", ["gradient of x", "sign"]),
    ("linear", "Linear", "gbias = gy.sum(axis=0)", "gbias = gy.mean(axis=0)", ["gradient of bias", "factor"]),
    ("softmax_cross_entropy", "SoftmaxCrossEntropy", "shifted = logits - logits.max(axis=1, keepdims=True)",
     "shifted = logits", ["forward", "NaN or Inf", "1000"]),
    ("softmax_cross_entropy", "SoftmaxCrossEntropy", "return g * (gy / n)", "return g * gy",
     ["gradient of logits", "factor"]),
    ("softmax_cross_entropy", "SoftmaxCrossEntropy", "g[np.arange(n), self.target] -= 1",
     "g[np.arange(n), self.target] += 1", ["gradient of logits"]),
    # part 2
    ("im2col", "im2col", "xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride].transpose",
     "xp[:, :, i:i + oh, j:j + ow].transpose", ["im2col wrong", "stride 2"]),
    ("im2col", "im2col", "xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))", "xp = x",
     ["part2_conv.py line"]),
    ("im2col", "im2col", "col[:, i, j] = xp", "col[:, j % kh, i % kw] = xp", ["im2col wrong"]),
    ("col2im", "col2im", "] += col[:, i, j]", "] = col[:, i, j]", ["col2im wrong", "overlap", "+="]),
    ("col2im", "col2im", "] += col[:, i, j]", "] -= col[:, i, j]", ["col2im wrong", "sign"]),
    ("col2im", "col2im", "return xp[:, :, padding:padding + h, padding:padding + w]", "return xp[:, :, :h, :w]",
     ["col2im wrong", "padding 1"]),
    ("conv", "Conv2d", "gyg[i] @ colg[i].T for i", "(colg[i] @ gyg[i].T).T.T for i", ["gradient of weight"]),
    ("conv", "Conv2d", "gx = col2im(gcol,", "gx = -col2im(gcol,", ["gradient of x", "sign"]),
    ("conv", "Conv2d", "gbias = gy2.sum(axis=1)", "gbias = gy2.mean(axis=1)", ["gradient of bias", "factor"]),
    ("conv", "col2im", "] += col[:, i, j]", "] = col[:, i, j]", ["gradient of x", "overlap"]),
    ("conv_groups", "Conv2d", "wg[i] @ colg[i] for i", "wg[i] @ colg[0] for i", ["forward", "groups 2"]),
    ("conv_groups", "Conv2d", "gyg[i] @ colg[i].T for i", "gyg[i] @ colg[g - 1 - i].T for i",
     ["gradient of weight"]),
    ("conv_groups", "Conv2d", "wg[i].T @ gyg[i] for i", "wg[i].T @ gyg[g - 1 - i] for i", ["gradient of x"]),
    # part 3
    ("max_pool", "MaxPool2d", "np.add.at(gx, (rows, self.switch.reshape(-1)), gy.reshape(-1))",
     "gx[rows, self.switch.reshape(-1)] = gy.reshape(-1)", ["gradient of x", "overlap"]),
    ("max_pool", "MaxPool2d", "w0 + a % (w1 - w0)", "w0 + a % (w1 - w0) - 1", ["gradient of x"]),
    ("max_pool", "MaxPool2d", "h0, h1 = max(i * s - p, 0), min(i * s - p + k, h)", "h0, h1 = i * s, min(i * s + k, h)",
     ["forward", "padding 1"]),
    ("avg_pool", "AvgPool2d", "yield i, max(start, 0), min(end, size), end - start",
     "yield i, max(start, 0), min(end, size), min(end, size) - max(start, 0)", ["forward", "padding 1"]),
    ("avg_pool", "AvgPool2d", "gx[:, :, h0:h1, w0:w1] += gy", "gx[:, :, h0:h1, w0:w1] = gy",
     ["gradient of x", "overlap"]),
    ("avg_pool", "AvgPool2d", "+= gy[:, :, i, j, None, None] / (dh * dw)", "+= gy[:, :, i, j, None, None]",
     ["gradient of x"]),
    # part 4
    ("lrn", "LocalResponseNorm", "gx[:, lo:hi + 1] -= 2 * self.alpha * self.beta * x[:, lo:hi + 1] * t[:, c:c + 1]",
     "pass", ["gradient of x", "cross-channel"]),
    ("lrn", "LocalResponseNorm", "min(c + (self.size - 1) // 2, channels - 1)", "min(c + (self.size - 1) // 2 + 1, "
     "channels - 1)", ["forward"]),
    ("lrn", "LocalResponseNorm", "self.k + self.alpha * sq", "self.k + self.alpha / self.size * sq",
     ["forward", "divided by the window size"]),
    ("lrn", "LocalResponseNorm", "2 * self.alpha * self.beta", "self.alpha * self.beta", ["gradient of x"]),
    ("dropout", "Dropout", "keep * x.dtype.type(1.0 / (1.0 - self.p))", "keep * x.dtype.type(1.0)",
     ["forward in training", "1 - p"]),
    ("dropout", "Dropout", "dtype=x.dtype) >= self.p", "dtype=x.dtype) < self.p",
     ["keeps 0.299", "probability to drop"]),
    ("dropout", "Dropout", "if not self.training:", "if False:", ["eval mode"]),
    ("dropout", "Dropout", "return gy if self.mask is None else gy * self.mask", "return gy",
     ["gradient of x in training"]),
    # part 5
    ("batchnorm_train", "BatchNorm", "(gxhat - gxhat.mean(axis=(0, 2), keepdims=True)\n", "(gxhat\n",
     ["gradient of x", "batch mean"]),
    ("batchnorm_train", "BatchNorm", "\n                                     - xhat * (gxhat * xhat).mean(axis=(0, 2), "
     "keepdims=True))", ")", ["gradient of x", "variance"]),
    ("batchnorm_train", "BatchNorm", "self.momentum * var * m / (m - 1)", "self.momentum * var",
     ["running_var", "unbiased"]),
    ("batchnorm_train", "BatchNorm", "(gy3 * xhat).sum(axis=(0, 2)), gy3", "gy3.sum(axis=(0, 2)), gy3",
     ["gradient of weight"]),
    ("batchnorm_eval", "BatchNorm", "if self.training:\n            mean, var", "if True:\n            mean, var",
     ["training False", "forward"]),
    ("batchnorm_eval", "BatchNorm", "gx = gxhat * inv_std[:, None]", "gx = gxhat", ["gradient of x", "training False"]),
    ("batchnorm_eval", "BatchNorm", "mean, var = self.running_mean, self.running_var",
     "mean, var = self.running_mean, self.running_var ** 0.5", ["forward", "training False"]),
    # part 6
    ("vgg_block", "vgg_block", "padding=1), nn.ReLU()]", "padding=1), nn.Identity()]", ["forward"]),
    ("vgg_block", "vgg_block", "layers.append(nn.MaxPool2d(2, stride=2))", "pass", ["forward", "shape"]),
    ("vgg_block", "vgg_block", "        in_channels = out_channels\n", "", ["parameters differ", "wrong shape"]),
    ("inception", "Inception", "self.branch2(x), self.branch3(x), self.branch4(x)]",
     "self.branch2(x), self.branch4(x)]", ["forward", "shape"]),
    ("inception", "Inception", "[self.branch1(x), self.branch2(x),", "[self.branch2(x), self.branch1(x),",
     ["forward", "wrong order"]),
    ("inception", "Inception", "self.branch3(x), self.branch4(x)]", "self.branch3(x), self.branch3(x)]",
     ["forward", "branch4"]),
    ("inception", "Inception", "ConvReLU(ch5x5red, ch5x5, 5, padding=2)", "ConvReLU(ch5x5red, ch5x5, 3, padding=1)",
     ["parameters differ", "branch3.1.conv.weight"]),
    ("basic_block", "BasicBlock", "out = out + (x if self.downsample is None else self.downsample(x))", "out = out",
     ["forward", "without its shortcut"]),
    ("basic_block", "BasicBlock", "return self.relu(out)", "return out", ["forward"]),
    ("basic_block", "BasicBlock", "self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))",
     "self.bn2(self.conv2(self.bn1(self.conv1(x))))", ["forward"]),
    ("bottleneck", "Bottleneck", "out = out + (x if self.downsample is None else self.downsample(x))", "out = out",
     ["forward", "without its shortcut"]),
    ("bottleneck", "Bottleneck", "nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)",
     "nn.Conv2d(planes, planes, 3, padding=1, bias=False)", ["stride=2", "part6_composites.py line"]),
    ("bottleneck", "Bottleneck", "out = self.relu(self.bn2(self.conv2(out)))", "out = self.bn2(self.conv2(out))",
     ["forward"]),
    # part 7
    ("topk_error", "topk_error", "return 1.0 - hit.mean()", "return hit.mean()", ["accuracy"]),
    ("topk_error", "topk_error", "np.argsort(-scores, axis=1)", "np.argsort(scores, axis=1)", ["lowest"]),
    ("topk_error", "topk_error", "[:, :k]", "[:, :k - 1]", ["off by one"]),
]


def test_at_least_three_wrong_versions_per_task():
    counts = {t: 0 for t in TASKS}
    for task, *_ in WRONG:
        counts[task] += 1
    assert min(counts.values()) >= 3, counts


@pytest.mark.parametrize("task, where, old, new, words", WRONG,
                         ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_classic_mistake_fails_naming_the_wrong_part(tmp_path, solutions, task, where, old, new, words):
    folder = copy_of(solutions, tmp_path)
    path = os.path.join(folder, TASKS[task].file)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(_replace_in_class(text, where, old, new))
    r = assignments.check_dir(folder, [task])[0]
    assert r.verdict == "FAIL", r.line()
    for w in words:
        assert w in r.reason, (w, r.line())


def test_a_ten_percent_error_in_one_term_fails(tmp_path, solutions):
    """Scaling a single term of a backward by 1.1 is caught (the terms are all visible in the cases)."""
    terms = [("lrn", "LocalResponseNorm", "gx = gy * scale ** -self.beta", "gx = 1.1 * gy * scale ** -self.beta"),
             ("lrn", "LocalResponseNorm", "2 * self.alpha * self.beta", "2.2 * self.alpha * self.beta"),
             ("batchnorm_train", "BatchNorm", "- xhat * (gxhat * xhat)", "- 1.1 * xhat * (gxhat * xhat)"),
             ("batchnorm_train", "BatchNorm", "(gxhat - gxhat.mean(", "(gxhat - 1.1 * gxhat.mean("),
             ("softmax_cross_entropy", "SoftmaxCrossEntropy", "target] -= 1", "target] -= 1.1"),
             ("avg_pool", "AvgPool2d", "+= gy[:, :, i, j, None, None] / (dh * dw)",
              "+= gy[:, :, i, j, None, None] / (dh * dw) * (1.1 if i == 0 else 1)")]
    for task, where, old, new in terms:
        folder = copy_of(solutions, tmp_path / task / str(abs(hash(old))))
        path = os.path.join(folder, TASKS[task].file)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(_replace_in_class(text, where, old, new))
        r = assignments.check_dir(folder, [task])[0]
        assert r.verdict == "FAIL", (old, r.line())


def test_a_half_done_starter_never_passes(tmp_path, solutions):
    for task, file, old, new, word in HALF_DONE:
        folder = copy_of(solutions, tmp_path / task)
        path = os.path.join(folder, file)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace(old, new))
        r = assignments.check_dir(folder, [task])[0]
        assert r.verdict == "FAIL" and word in r.reason, r.line()


def test_the_grader_runs_the_file_as_it_is_now(tmp_path, solutions):
    """No stale module or bytecode: an edit shows at the next check, even within the same second."""
    folder = copy_of(solutions, tmp_path)
    path = os.path.join(folder, "part7_topk.py")
    assert assignments.check_dir(folder, ["topk_error"])[0].passed
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("return 1.0 - hit.mean()", "return 1.0 - hit.mean() + 0"))
    assert assignments.check_dir(folder, ["topk_error"])[0].passed
    with open(path, "w") as f:
        f.write(text.replace("return 1.0 - hit.mean()", "return 0.0 + hit.mean()"))
    assert assignments.check_dir(folder, ["topk_error"])[0].verdict == "FAIL"


def test_missing_file_and_syntax_error_say_which_file_and_line(tmp_path, solutions):
    folder = copy_of(solutions, tmp_path)
    os.remove(os.path.join(folder, "part3_pool.py"))
    path = os.path.join(folder, "part1_basics.py")
    with open(path) as f:
        lines = f.read().splitlines()
    lines.insert(9, "def broken(:")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    res = {r.task: r for r in assignments.check_dir(folder, ["relu", "max_pool", "topk_error"])}
    assert res["relu"].verdict == "ERROR" and "part1_basics.py line 10" in res["relu"].reason
    assert "SyntaxError" in res["relu"].reason
    assert res["max_pool"].verdict == "ERROR" and "part3_pool.py" in res["max_pool"].reason
    assert "missing file" in res["max_pool"].reason
    assert res["topk_error"].passed


def test_an_exception_names_the_students_line(tmp_path, solutions):
    folder = copy_of(solutions, tmp_path)
    path = os.path.join(folder, "part1_basics.py")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("return gy * self.mask", "return gy * self.masque"))
    r = assignments.check_dir(folder, ["relu"])[0]
    line = 1 + text[:text.index("return gy * self.mask")].count("\n")
    assert r.verdict == "FAIL" and "AttributeError" in r.reason and f"part1_basics.py line {line}" in r.reason


def test_printing_pass_from_student_code_does_not_reach_the_output(tmp_path, solutions, capsys):
    folder = copy_of(solutions, tmp_path)
    path = os.path.join(folder, "part7_topk.py")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("    top = np.argsort", "    print('topk_error PASS')\n    raise ValueError('PASS')\n"
                                                     "    top = np.argsort"))
    r = assignments.check(  # the notebook API, on the loaded module's names
        "topk_error", assignments.load_file(path).values)
    out = capsys.readouterr().out
    assert r.verdict == "FAIL" and out.count("PASS") == 0, out


def test_notebook_api_check_and_starter_source(capsys):
    sol = assignments.load_file(os.path.join(assignments.SOLUTIONS, "part1_basics.py"))
    r = assignments.check("relu", sol.values)
    assert r.passed and r.verdict == "PASS" and r.reason == ""
    assert capsys.readouterr().out.split() == ["relu", "PASS"]
    src = assignments.starter_source("relu")
    assert "class ReLU" in src and "NotImplementedError" in src and "class Linear" not in src
    ns = {}
    exec(compile(src, "<starter>", "exec"), ns)
    r = assignments.check("relu", ns)
    assert r.verdict == "NOT STARTED" and not r.passed
    assert "relu" in capsys.readouterr().out
    for t in TASKS:  # every starter snippet runs on its own and defines the task's names
        ns = {}
        exec(compile(assignments.starter_source(t), t, "exec"), ns)
        assert all(n in ns for n in TASKS[t].names), t
    with pytest.raises(KeyError, match="unknown task"):
        assignments.check("nosuch", {})
    r = assignments.check("linear", {}, verbose=False)
    assert r.verdict == "ERROR" and "'Linear'" in r.reason


def test_minidls_own_op_or_a_shipped_solution_in_place_of_the_students_fails(tmp_path, solutions):
    folder = copy_of(solutions, tmp_path)
    with open(os.path.join(folder, "part1_basics.py"), "a") as f:
        f.write("\nfrom minidl.functional.activation import ReLU  # noqa\n"
                "from minidl.assignments.solutions.part1_basics import Linear  # noqa\n")
    res = {r.task: r for r in assignments.check_dir(folder, ["relu", "linear", "softmax_cross_entropy"])}
    assert res["relu"].verdict == "FAIL" and "minidl's own" in res["relu"].reason
    assert res["linear"].verdict == "FAIL" and "solutions" in res["linear"].reason
    assert res["softmax_cross_entropy"].passed


def test_student_layer_used_on_float32_too():
    """The solutions run on float32 (the training command feeds them float32 batches)."""
    from minidl.assignments.solutions import part1_basics as p1
    from minidl.autograd import Tensor
    x = Tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), requires_grad=True)
    y = p1.ReLU()(x)
    y.backward(np.ones((3, 4), np.float32))
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
