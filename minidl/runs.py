"""The Python entry points of the ``minidl`` commands: ``run_training``, ``run_evaluation``, ``run_classify``.

minidl.cli parses a command line and calls these; a script or a lesson can call them directly. Error
messages carry no prefix: the command adds "minidl <name>: ".
"""
import functools
import os

import numpy as np

from minidl.checkpoint import (CheckpointError, MarkLatest, in_runs, missing_run, new_run_dir, read_config,
                               read_weights, remove_unfinished, resume_dir)
from minidl.train import DEFAULTS, build_model, model_input


# ---- minidl train --------------------------------------------------------------------------------
def interrupted_message(e):
    """The one line Ctrl-C prints: where training stopped, what is intact, how to go on."""
    where = f"interrupted in epoch {e.epoch} (step {e.step})"
    run_dir = getattr(e, "run_dir", None)
    if not e.checkpoint:
        removed = " (its run folder was removed)" if getattr(e, "removed", False) else ""
        return f"{where}, before any epoch finished: nothing to resume{removed}"
    return (f"{where}; the checkpoint of epoch {e.finished} ({e.checkpoint}) is intact; continue with: "
            f"minidl train --resume --out {run_dir}")


def run_training(model=None, data=None, epochs=None, batch_size=None, lr=None, momentum=None, weight_decay=None,
                 device="cpu", out=None, resume=False, seed=None, workers=0, progress=None, schedule="step",
                 log=functools.partial(print, flush=True), distributed=False, lr_scaling="linear", warmup_epochs=0,
                 sync_batchnorm=False):
    """``minidl train``: build model and data, train with checkpoints, print the final held-out errors.

    distributed: one replica per MPI rank (``mpiexec -n N minidl train --distributed``; see
    minidl.distributed.training): lr multiplied by N (``lr_scaling="linear"``, or "none"),
    ``warmup_epochs`` of gradual warm-up, ``sync_batchnorm`` for BN statistics over all ranks.

    Returns ``(trainer, {"top1", "top5", ...})``. Arguments left None take ``DEFAULTS`` (or, when
    resuming, the values stored in the run's config.json). A new run folder is linked as
    runs/latest once its first epoch has finished; one that ends before that is removed.
    """
    from minidl import optim, random
    from minidl.data import DataLoader, presets
    from minidl.metrics import evaluate, format_errors
    from minidl.train import (Replica, Trainer, TrainingInterrupted, at_chance, kernels_cache_is_cold,
                              make_schedule, native_size, upscaling_note)
    args = {"model": model, "data": data, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "momentum": momentum, "weight_decay": weight_decay, "seed": seed}
    replica = Replica()
    if distributed:
        from minidl import distributed as dist
        from minidl.distributed import training as dist_training
        replica = dist_training.DataParallelReplica(lr_scaling, dist.init())
        log = log if replica.is_main else dist_training.silent
        out = dist_training.shared_run_dir(lambda o, r: resume_dir(o) if r else (o or new_run_dir()), out, resume)
    else:
        out = resume_dir(out) if resume else (out or new_run_dir())
    made = not resume and not os.path.exists(out)
    if resume:
        config = read_config(out)
        for k in ("model", "data", "batch_size", "seed"):
            if args[k] is not None and args[k] != config[k]:
                raise ValueError(f"--resume: this run used --{k.replace('_', '-')} {config[k]}, not {args[k]}")
        config = dict(config, **{k: v for k, v in args.items() if v is not None})
    else:
        settings = {k: (v if v is not None else DEFAULTS[k]) for k, v in args.items()}
        channels, size = model_input(settings["model"])
        config = dict(presets.data_config(settings["data"], size, channels), **settings, schedule=schedule)
    random.manual_seed(config["seed"])
    net = build_model(config)
    train_set = presets.build_dataset(config, True, presets.make_transform(config, "train"))
    test_set = presets.build_dataset(config, False, presets.make_transform(config, "test"))
    if len(test_set) == 0:
        raise ValueError(f"--data {config['data']}: the held-out split is empty (a folder without train/ and val/ "
                         f"holds out 10% of each class: give each class at least 6 images)")
    train_loader = DataLoader(train_set, config["batch_size"], shuffle=True, num_workers=workers, seed=config["seed"])
    test_loader = DataLoader(test_set, max(config["batch_size"], 64), num_workers=workers)
    opt = optim.SGD(net.parameters(), config["lr"], momentum=config["momentum"], weight_decay=config["weight_decay"])
    if distributed:  # broadcast weights, shard the loader, average gradients, scale lr
        opt = dist_training.prepare(net, opt, train_loader, sync_batchnorm, lr_scaling)
    sched = make_schedule(opt, config.get("schedule"), config["epochs"])
    warm = dist_training.warmup(opt, warmup_epochs, len(train_loader), replica.world_size) if distributed else (
        optim.WarmupLR(opt, int(round(warmup_epochs * len(train_loader)))) if warmup_epochs else None)
    ranks = (f" on {replica.world_size} ranks (data parallel: {config['batch_size']} images per rank per step, "
             f"lr x{replica.lr_factor})" if distributed else "")
    n = config["epochs"]
    log(f"training {config['model']} on {config['data']} ({len(train_set)} training / {len(test_set)} held-out "
        f"images, {len(config['classes'])} classes) for {n} epoch{'s' * (n != 1)} on {device}{ranks}; outputs in {out}")
    native = native_size(config, train_set)
    if native and config["image_size"] >= 2 * native and replica.is_main:
        log(upscaling_note(config, net, len(train_set), native))
    if device == "cpu" and replica.is_main and kernels_cache_is_cold():
        log("compiling the CPU kernels with Numba (first run only, about 15 s; cached afterwards) ...")
    trainer = Trainer(net, train_loader, test_loader, opt, schedule=sched, batch_schedule=warm, replica=replica,
                      callbacks=[MarkLatest(out)] if in_runs(out) else [],
                      epochs=config["epochs"], device=device, out_dir=out, progress=progress, config=config, log=log)
    try:
        trainer.fit(resume=bool(resume))
    except BaseException as e:
        removed = made and replica.is_main and trainer.epoch == 0 and remove_unfinished(out)
        if isinstance(e, TrainingInterrupted):
            e.run_dir, e.removed = out, removed
        raise
    last = trainer.history[-1] if trainer.history else None
    if last is None or "val_top1_error" not in last:
        ev = evaluate(trainer.model, test_loader, device)
    else:
        ev = {"top1": last["val_top1_error"], "top5": last["val_top5_error"], "loss": last["val_loss"]}
    log(f"outputs in {out}/: checkpoint.npz, model.npz, log.csv, curves.png, filters.png, config.json")
    k = len(config["classes"])
    if at_chance(ev["top1"], k, len(test_set)):
        log(f"warning: a held-out top-1 error of {100 * ev['top1']:.1f}% is chance level for {k} classes "
            f"(guessing: {100 * (1 - 1 / k):.1f}%): the net learned nothing. Try a lower --lr, more --epochs, "
            f"or look at the data")
    log(format_errors(ev["top1"], ev["top5"]))
    return trainer, ev


# ---- minidl eval ---------------------------------------------------------------------------------
VIEWS = {5: "five (no mirrors for digits)", 10: "ten"}


def run_evaluation(path, data=None, ten_crop=False, device="cpu", batch_size=64, workers=0, log=print):
    """``minidl eval``: top-1/top-5 error of a run's weights on its held-out split (or ``data``)."""
    from minidl.data import DataLoader, presets
    from minidl.metrics import evaluate, format_errors
    if not os.path.exists(path):
        raise missing_run(path)
    config = read_config(path)
    if config is None:
        raise CheckpointError(f"{path}: no config.json beside it — give a run folder written by `minidl train` "
                              f"or a checkpoint inside one")
    if data is not None and data != config["data"]:
        other = presets.data_config(data, config["image_size"], config["in_channels"])["classes"]
        if list(other) != list(config["classes"]):
            raise ValueError(f"--data {data}: its classes ({', '.join(map(str, other[:10]))}"
                             f"{', …' if len(other) > 10 else ''}) are not the {len(config['classes'])} classes "
                             f"{config['model']} was trained on ({', '.join(map(str, config['classes'][:10]))}"
                             f"{', …' if len(config['classes']) > 10 else ''})")
        config = dict(config, data=data)
    state = read_weights(path)
    net = build_model(config)
    try:
        net.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: the weights do not fit {config['model']}: {e}") from None
    net.to(device)
    split = "tencrop" if ten_crop else "test"
    test_set = presets.build_dataset(config, False, presets.make_transform(config, split))
    loader = DataLoader(test_set, max(1, batch_size // 10) if ten_crop else batch_size, num_workers=workers)
    ev = evaluate(net, loader, device)
    log(f"{config['model']} on the held-out split of {config['data']} ({ev['n']} images"
        f"{f', {VIEWS[presets.tencrop_views(config)]} crops each' if ten_crop else ''}): loss {ev['loss']:.4f}")
    log(format_errors(ev["top1"], ev["top5"]))
    return ev


def imagenet_class_names():
    """The 1000 ILSVRC-2012 class names in torchvision's order, or None if minidl does not ship them."""
    try:
        from minidl.imagenet_classes import IMAGENET_CLASSES
    except ImportError:
        return None
    return list(IMAGENET_CLASSES)


# ---- minidl classify -----------------------------------------------------------------------------
def _imagenet_config(model, num_classes):
    """How torchvision's ImageNet weights expect images: resize 256/224, centre crop, ImageNet mean/std."""
    from minidl.data import transforms as T
    channels, size = model_input(model)
    return {"model": model, "num_classes": num_classes, "kind": "folder", "image_size": size, "in_channels": channels,
            "mean": list(T.IMAGENET_MEAN), "std": list(T.IMAGENET_STD), "pad": 0,
            "classes": imagenet_class_names() if num_classes == 1000 else None}


def run_classify(images, model=None, weights=None, pretrained=False, device="cpu", topk=5, log=print):
    """``minidl classify``: the top-k classes with probabilities for each image file.

    ``weights`` from ``minidl train`` (a run folder or a file in one) carry their config (model,
    classes, preprocessing). Other weights need ``model`` and get the ImageNet preprocessing and,
    with 1000 classes, the ImageNet class names; so does ``pretrained`` (torchvision's weights for
    ``model``, see minidl.hub). Error messages carry no prefix: the command adds "minidl classify: ".
    """
    from PIL import Image
    from minidl import models
    from minidl.data import presets
    from minidl.data.folder import load_rgb
    from minidl.metrics import predict
    if topk < 1:
        raise ValueError(f"--top must be at least 1, got {topk}")
    if pretrained:
        from minidl import hub
        if model is None:
            raise ValueError(f"--pretrained needs --model: one of {', '.join(hub.WEIGHTS)}")
        if model not in hub.WEIGHTS:
            raise ValueError(f"--model {model}: no pretrained weights; --pretrained works with: {', '.join(hub.WEIGHTS)}")
        config = _imagenet_config(model, 1000)
        net = models.get_model(model, pretrained=True)
    else:
        if weights is None:
            raise ValueError("give --weights (a run folder from `minidl train` or an .npz of weights) "
                             "or --model NAME --pretrained")
        config = read_config(weights)
        state = read_weights(weights)
        if config is None or (model is not None and model != config["model"]):
            if model is None:
                raise ValueError(f"--weights {weights} has no config.json beside it; name the model with --model")
            if model == "tiny_alexnet":
                raise ValueError("tiny_alexnet weights need the config.json of their run folder")
            config = _imagenet_config(model, _num_classes(state, weights))
        if "classes" in config and config["classes"] is None:
            config = {k: v for k, v in config.items() if k != "classes"}
        net = build_model(config)
        try:
            net.load_state_dict(state)
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{weights}: the weights do not fit {config['model']}: {e}") from None
    classes = config.get("classes")
    net.to(device).eval()
    results = []
    for path in images:
        try:
            img = Image.open(path) if config.get("kind") == "digits" else load_rgb(path)
            x = presets.prepare_image(config, img)
        except Exception as e:
            raise ValueError(f"cannot read image {path} ({type(e).__name__}: {e})") from None
        probs = predict(net, x[None], device)[0]
        top = np.argsort(-probs, kind="stable")[:topk]
        log(path)
        for rank, c in enumerate(top, 1):
            log(f"  {rank}. {100 * probs[c]:5.1f}%  {_label(classes, c)}")
        results.append([(int(c), float(probs[c])) for c in top])
    return results


def _label(classes, c):
    """'tabby cat (281)'; a class whose name is its index (the digits' "3") is shown once."""
    if not classes:
        return f"class {c}"
    name = str(classes[c])
    return name if name == str(c) else f"{name} ({c})"


def _num_classes(state, path):
    """Classes of a classifier's weights: the rows of its last 2-D weight (the final FC layer)."""
    last = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    if not last:
        raise ValueError(f"{path}: cannot tell the number of classes (no fully connected layer in the weights)")
    return int(last[-1].shape[0])
