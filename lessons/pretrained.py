"""torchvision's ImageNet AlexNet in the lessons: Fig. 2 of Zeiler & Fergus on real photos (lesson 05),
top-5 classes of a photo (lesson 01).

The weights are only ever *found* here (PyTorch's cache or minidl's, see ``minidl.hub``), never
downloaded: a lesson must run offline, so without them ``pretrained_alexnet()`` is None and
``missing_weights_message()`` says where they were looked for and how to get them.
"""
import numpy as np

from minidl import backend, hub, models, nn, pth
from minidl.autograd import Tensor, no_grad
from minidl.data import transforms as T
from minidl.visualize import Deconvnet, receptive_field
from minidl.visualize.deconvnet import flatten_layers
from minidl.visualize.patches import TopPatches, crop
from minidl.visualize.filters import tile, to_uint8

NAME = "alexnet_torchvision"
DOWNLOAD_COMMAND = f"minidl weights download {NAME}"


def pretrained_alexnet():
    """minidl's torchvision-layout AlexNet with torchvision's ImageNet weights, in eval mode; None when
    neither cache holds the file (``hub.find_cached`` only looks: nothing is downloaded)."""
    path = hub.find_cached(NAME)
    if path is None:
        return None
    net = models.get_model(NAME)
    net.load_state_dict(pth.load_state_dict(path))
    return net.eval()


def missing_weights_message():
    """What a lesson prints when the weights are absent: both folders looked in and the command."""
    return (f"torchvision's AlexNet weights ({hub.WEIGHTS[NAME]}) are in neither cache:\n"
            f"  PyTorch's: {hub.torch_checkpoint_dir()}\n"
            f"  minidl's:  {hub.cache_dir('checkpoints')}\n"
            f"get them with:  {DOWNLOAD_COMMAND}\n"
            f"then run this cell again.")


# ---- top-5 classes ---------------------------------------------------------------------------------
# the test transform of torchvision's ImageNet weights, the one `minidl classify --pretrained` applies
IMAGENET_TEST = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToArray(), T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])


def as_pil(image):
    """A PIL image from an (H, W, 3) float array in [0, 1] (lessonlib.photos()) or a PIL image."""
    from PIL import Image
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.clip(np.round(255 * image), 0, 255).astype(np.uint8))
    return image


def top5(net, image, k=5):
    """The k most probable ImageNet classes of one photo: [(class index, name, probability), ...], best first."""
    from minidl.imagenet_classes import IMAGENET_CLASSES
    from minidl.metrics import predict
    x = IMAGENET_TEST(as_pil(image))
    probs = predict(net, x[None])[0]
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(c), IMAGENET_CLASSES[c], float(probs[c])) for c in order]


# ---- Fig. 2: top-9 crops and their deconvnet projections, layers 1-5 ---------------------------------
def photo_crops(pics, sides=(320, 192), step=64, size=224):
    """Square crops of each photo, ``sides`` pixels wide on a grid of ``step``, resized to ``size``.

    Returns (raw, x, where): raw (N, 3, size, size) in [0, 1] for display, x the same with ImageNet's
    mean/std normalisation (what the net sees), where [(photo, top, left, side), ...].
    """
    from PIL import Image
    raw, where = [], []
    for k, pic in enumerate(pics):
        im = as_pil(pic)
        w, h = im.size
        for side in sides:
            for top in range(0, h - side + 1, step):
                for left in range(0, w - side + 1, step):
                    c = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
                    raw.append(np.asarray(c, dtype=np.float32).transpose(2, 0, 1) / 255.0)
                    where.append((k, top, left, side))
    raw = np.stack(raw)
    return raw, T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)(raw), where


def conv_relus(layers):
    """Indices of the ReLUs that directly follow a Conv2d: conv1..conv5 after rectification in AlexNet."""
    return [i for i in range(1, len(layers))
            if isinstance(layers[i], nn.ReLU) and isinstance(layers[i - 1], nn.Conv2d)]


class Fig2Layer:
    """One layer of Fig. 2: the ``channel`` followed, its k best crops (``indices`` into the set, ``scores``
    = the channel's maximum in each, at ``positions``), the receptive-field ``boxes``, the crops cut to
    them (``patches``, (3, f, f) in [0, 1]) and the deconvnet projections cut alike (``projections``);
    ``deconv`` keeps the full DeconvResult of each."""

    def __init__(self, name, layer, top, patches, deconv):
        self.name, self.layer, self.channel, self.field = name, layer, top.channel, top.field
        self.scores, self.indices, self.positions, self.boxes = top.scores, top.indices, top.positions, top.boxes
        self.patches, self.deconv = patches, deconv
        self.projections = [crop(r.pixels, b) for r, b in zip(deconv, self.boxes)]

    def images(self, ncols=3):
        """(crops grid, projections grid) as PIL images, 3x3 tiles; each projection stretched around zero (grey = 0)."""
        crops = tile(np.stack([to_uint8(p.transpose(1, 2, 0), 0.0, 1.0) for p in self.patches]), ncols=ncols, padding=2)
        proj = []
        for p in self.projections:
            m = float(np.abs(p).max()) or 1.0
            proj.append(to_uint8(p.transpose(1, 2, 0), -m, m))
        return crops, tile(np.stack(proj), ncols=ncols, padding=2)


def photo_box(box, crop_where, size):
    """A receptive-field box (top, left, h, w) of a ``size``-pixel crop in its photo's own pixels
    (floats), from the crop's (photo, top, left, side)."""
    _, top, left, side = crop_where
    f = side / size
    return top + box[0] * f, left + box[1] * f, box[2] * f, box[3] * f


def overlap(a, b):
    """The share of the smaller of two (top, left, h, w) boxes that the other covers (0 to 1).

    Not intersection over union: a spot seen by a 192-pixel crop lies inside the same spot seen by a
    320-pixel one, an IoU of only (192/320)^2 = 0.36, yet it is the same place."""
    h = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    w = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(h, 0) * max(w, 0) / min(a[2] * a[3], b[2] * b[3])


def fig2(net, x, raw=None, where=None, k=9, max_overlap=0.5, batch_size=16):
    """Fig. 2 for the rectified conv layers of ``net.features``: per layer the channel with the largest
    activation over the crops ``x`` (N, 3, H, W, normalised), its k best crops (one position per crop,
    as ``visualize.top_patches``) and their deconvnet projections. ``raw``: the same crops unnormalised,
    for the patches shown (default x). ``where`` (photo_crops' third result): overlapping crops of one
    photo see the same spot, so a crop whose receptive field and an already chosen one's overlap in the
    photo by more than ``max_overlap`` of the smaller (``overlap``) is passed over for the next best — ZF's nine come
    from nine images. Without ``where``: simply the k best crops. Returns a list of Fig2Layer, conv1 first.
    """
    layers = flatten_layers(net.features)
    relus = conv_relus(layers)
    fields = receptive_field(layers)
    raw = x if raw is None else raw
    # one forward pass over the crops, keeping per crop and channel only the maximum and where it is:
    # the full maps of 100 crops at five layers would be hundreds of MB
    best = {i: [] for i in relus}
    argmax = {i: [] for i in relus}
    shapes = {}
    with no_grad():
        for s in range(0, len(x), batch_size):
            h = Tensor(np.ascontiguousarray(x[s:s + batch_size], dtype=np.float32))
            for i, m in enumerate(layers[:relus[-1] + 1]):
                h = m(h)
                if i in best:
                    a = backend.as_numpy(h.data)
                    flat = a.reshape(a.shape[0], a.shape[1], -1)
                    best[i].append(flat.max(axis=2))
                    argmax[i].append(flat.argmax(axis=2))
                    shapes[i] = a.shape[2:]
    dn = Deconvnet(layers)
    out = []
    for n, i in enumerate(relus, 1):
        score, arg = np.concatenate(best[i]), np.concatenate(argmax[i])          # (N, channels)
        channel = int(np.argmax(score.max(axis=0)))
        chosen, taken = [], []
        for j in np.argsort(-score[:, channel], kind="stable"):
            pos = tuple(int(v) for v in np.unravel_index(int(arg[j, channel]), shapes[i]))
            if where is not None:
                b = photo_box(fields[i].box(*pos), where[j], x.shape[-1])
                if any(w == where[j][0] and overlap(b, c) > max_overlap for w, c in taken):
                    continue
                taken.append((where[j][0], b))
            chosen.append((int(j), pos))
            if len(chosen) == k:
                break
        indices, positions = [j for j, _ in chosen], [p for _, p in chosen]
        top = TopPatches(layers, x, i, channel, score[indices, channel], indices, positions, fields[i])
        patches = [crop(np.asarray(raw[j], dtype=np.float64), b) for j, b in zip(indices, top.boxes)]
        deconv = [dn.project(np.asarray(x[j], dtype=np.float32), i, channel, p) for j, p in chosen]
        out.append(Fig2Layer(f"conv{n}", i, top, patches, deconv))
    return out


def show_png(fig, colors=128):
    """Show a matplotlib figure inline as a PNG of ``colors`` colours (cropped tight) and close it.

    Photo crops and noisy projections make large PNGs: lesson 05's Fig. 2 (1090x502 px) took 643 KB at
    full colour and 167 KB with 128 colours (measured with random weights), and an executed notebook
    must stay under 2 MB."""
    import io
    import matplotlib.pyplot as plt
    from PIL import Image
    from IPython.display import Image as Shown, display
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    im = Image.open(buf).convert("RGB").quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    im.save(out, format="png", optimize=True)
    display(Shown(data=out.getvalue(), format="png"))
    return im.size
