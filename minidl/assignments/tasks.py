"""The tasks, in the order of the lecture: which starter file holds each and which names it must define."""
from minidl.assignments import checks, composites


class Task:
    def __init__(self, name, file, names, title, check, bonus=False):
        self.name, self.file, self.names, self.title, self.check, self.bonus = name, file, names, title, check, bonus

    def __repr__(self):
        return f"Task({self.name!r}, {self.file!r}, names={self.names})"


_TASKS = [
    Task("relu", "part1_basics.py", ("ReLU",), "ReLU forward/backward", checks.check_relu),
    Task("linear", "part1_basics.py", ("Linear",), "linear (affine) layer forward/backward", checks.check_linear),
    Task("softmax_cross_entropy", "part1_basics.py", ("SoftmaxCrossEntropy",),
         "softmax + cross-entropy, numerically stable", checks.check_softmax_cross_entropy),
    Task("im2col", "part2_conv.py", ("im2col",), "im2col (stride, padding)", checks.check_im2col),
    Task("col2im", "part2_conv.py", ("col2im",), "col2im, the adjoint of im2col", checks.check_col2im),
    Task("conv", "part2_conv.py", ("Conv2d", "im2col", "col2im"), "convolution on im2col/col2im",
         checks.check_conv),
    Task("conv_groups", "part2_conv.py", ("Conv2d", "im2col", "col2im"), "bonus: grouped convolution",
         checks.check_conv_groups, bonus=True),
    Task("max_pool", "part3_pool.py", ("MaxPool2d",), "max-pooling with switches (overlapping, ceil mode)",
         checks.check_max_pool),
    Task("avg_pool", "part3_pool.py", ("AvgPool2d",), "average pooling", checks.check_avg_pool),
    Task("lrn", "part4_lrn_dropout.py", ("LocalResponseNorm",), "local response normalisation (AlexNet)",
         checks.check_lrn),
    Task("dropout", "part4_lrn_dropout.py", ("Dropout",), "inverted dropout, training and eval", checks.check_dropout),
    Task("batchnorm_train", "part5_batchnorm.py", ("BatchNorm",), "batch normalisation in training",
         checks.check_batchnorm_train),
    Task("batchnorm_eval", "part5_batchnorm.py", ("BatchNorm",), "batch normalisation in eval mode",
         checks.check_batchnorm_eval),
    Task("vgg_block", "part6_composites.py", ("vgg_block",), "a VGG block", composites.check_vgg_block),
    Task("inception", "part6_composites.py", ("Inception",), "an Inception module", composites.check_inception),
    Task("basic_block", "part6_composites.py", ("BasicBlock",), "the residual basic block",
         composites.check_basic_block),
    Task("bottleneck", "part6_composites.py", ("Bottleneck",), "the residual bottleneck block",
         composites.check_bottleneck),
    Task("topk_error", "part7_topk.py", ("topk_error",), "the ILSVRC top-k error", checks.check_topk_error),
]

TASKS = {t.name: t for t in _TASKS}
FILES = list(dict.fromkeys(t.file for t in _TASKS))
