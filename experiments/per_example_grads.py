"""What comes next, optimisation: every example's own gradient by vmap, and DP-SGD's clipping and noise (MNIST).

An ordinary training step sees only the mean gradient of its batch. ``jax.vmap`` of
``jax.grad`` over the batch gives every example's own gradient in one batched
computation (:func:`jaxdl.train.per_example_grads`), and with it their norms: which
images pull hardest on the weights. Differentially private SGD (DP-SGD, Abadi et al.
2016) is built on them: it clips each example's gradient to norm ``--clip``, sums
them, adds Gaussian noise of standard deviation ``--clip * --noise`` and divides by
the batch size, so that no single image can move the network by much.

Three copies of a small CNN ((3x3 conv -> ReLU -> 2x2 max pool) x 2, a hidden layer,
no dropout) start from the same weights, see the same batches in the same order and
use the same optimizer (SGD with momentum 0.9): "ordinary" steps on the batch's mean
gradient (:func:`~jaxdl.train.make_train_step`); "clipped" clips each example's
gradient, without noise; "dp_sgd" clips and adds the noise
(:func:`~jaxdl.train.make_per_example_train_step`). The script prints their test
accuracy, the per-example gradient norms of the training set after training (and how
many exceed ``--clip``) and their speed; it plots the norms at initialisation, after
ordinary training and after DP-SGD, the 16 training images with the largest gradients
after ordinary training, and the test accuracy per epoch. It computes no privacy
guarantee (epsilon, delta): that needs a privacy accountant.

    python experiments/per_example_grads.py       # offline: JAXDL_MANUAL_DIR=DIR, a folder of the original files
    python experiments/per_example_grads.py --clip 2 --noise 0.5 --out runs/dp_noise05
"""

from __future__ import annotations

import sys

import jax
import numpy as np
import optax

from jaxdl import experiment, runs, viz
from jaxdl.core import summary
from jaxdl.gradients import per_example_gradient_norms
from jaxdl.losses import softmax_cross_entropy
from jaxdl.models import cnn
from jaxdl.precision import mixed_precision
from jaxdl.tables import format_table
from jaxdl.timing import steps_per_second
from jaxdl.train import TrainState, make_eval_step, make_per_example_train_step, make_train_step

MOMENTUM = 0.9
NORM_BATCH = 500  # examples per call when measuring the training set's gradient norms
QUANTILES = (0.1, 0.5, 0.9, 0.99)
LARGEST = 16  # training images shown with the largest gradients

# Settings: the shared flags with this script's defaults, and its own (--help lists them).
parser = experiment.experiment_parser(
    __doc__.split("\n\n")[0], out="runs/per_example_grads", epochs=8, batch_size=256, lr=0.1, data=True, scales=True,
)
parser.add_argument("--dataset", default="mnist", help="any TFDS image-classification dataset with 'image' and 'label'")
parser.add_argument("--width", type=experiment.positive_int, default=8, help="filters of the first conv (the second has twice as many)")
parser.add_argument("--hidden", type=experiment.positive_int, default=32, help="units of the fully connected layer")
parser.add_argument("--train-examples", type=experiment.positive_int, default=20_000,
                    help="train on the first N training images (60000: all)")
parser.add_argument("--clip", type=experiment.positive_float, default=1.0,
                    help="DP-SGD: each example's gradient is scaled down to at most this L2 norm")
parser.add_argument("--noise", type=experiment.positive_float, default=1.0,
                    help="DP-SGD: noise multiplier; the summed clipped gradients get Gaussian noise of "
                    "standard deviation clip * noise")


@experiment.script
def main(argv=None) -> dict:
    args = parser.parse_args(argv)
    if args.train_examples < args.batch_size:
        parser.error(f"--train-examples ({args.train_examples}) must be at least --batch-size ({args.batch_size})")
    mesh = experiment.device_mesh(args, parser)
    experiment.new_or_resumed(args, parser)

    # Data and model: every run starts from the same weights and sees the same batches (state_key)
    data = experiment.load_images(args, args.dataset)
    model = cnn(data.num_classes, features=(args.width, 2 * args.width), hidden=args.hidden, dropout=0.0)
    shape = (-1, *data.train["x"].shape[1:])
    summary(model, shape)
    init_key, state_key = jax.random.split(jax.random.key(args.seed))
    _, initial = model.init(init_key, shape)
    compute = mixed_precision(model, args.dtype)
    eval_step = make_eval_step(compute, softmax_cross_entropy)  # one for all runs: compiled once

    def norms_at(params) -> tuple[np.ndarray, np.ndarray]:  # every training image's gradient norm, predicted class
        norms, outputs = per_example_gradient_norms(compute, softmax_cross_entropy, params, data.train,
                                                    batch_size=NORM_BATCH)
        return norms, outputs.argmax(-1)

    def norm_summary(norms: np.ndarray) -> dict:  # the fraction above --clip: the examples DP-SGD scales down
        return {"grad_norm_mean": float(norms.mean()),
                "grad_norm_quantiles": {f"{q:g}": float(np.quantile(norms, q)) for q in QUANTILES},
                "grad_norm_max": float(norms.max()), "fraction_clipped": float((norms > args.clip).mean())}

    # The runs' optimizers: SGD with momentum; "clipped" and "dp_sgd" first aggregate the per-example
    # gradients as DP-SGD does (noise multiplier 0 and --noise). DP-SGD's noise draws one normal array per
    # weight array; with XLA's RngBitGenerator ("rbg") its step compiles in about half the time it takes
    # with JAX's default threefry.
    noise_key = jax.random.key(args.seed, impl="rbg")
    sgd = optax.sgd(args.lr, momentum=MOMENTUM)
    optimizers = {"ordinary": sgd, **{
        name: optax.chain(optax.contrib.differentially_private_aggregate(args.clip, noise, noise_key), sgd)
        for name, noise in (("clipped", 0.0), ("dp_sgd", args.noise))}}
    clipped = f"the mean of per-example gradients clipped to norm {args.clip:g}"
    about = {"ordinary": "the batch's mean gradient", "clipped": clipped,
             "dp_sgd": f"{clipped}, their sum noised (Gaussian, std {args.clip * args.noise:g})"}

    # Train: each run checkpointed in --out/checkpoints/<run>; the norms over the training set after it
    norms, predicted, results = {"init": norms_at(initial)[0]}, {}, {}
    for name, optimizer in optimizers.items():
        print(f"\n{name}: SGD lr {args.lr:g} momentum {MOMENTUM:g} on {about[name]}")
        make_step = make_train_step if name == "ordinary" else make_per_example_train_step
        results[name] = experiment.fit_member(
            args, runs.Member(args.seed, args.out / "checkpoints" / name), TrainState.create(initial, optimizer, state_key),
            make_step(compute, softmax_cross_entropy, optimizer), data.train, mesh=mesh,
            eval_step=eval_step, eval_data=data.test,
        )
        print(experiment.history_table(results[name].history, "test"))
        norms[name], predicted[name] = norms_at(results[name].state.params)

    # Report: accuracy, norms and speed (steps/s after the first epoch, which compiles) of each run
    base, rows = steps_per_second(results["ordinary"]), []
    metrics = {"clip": args.clip, "noise": args.noise, "lr": args.lr, "momentum": MOMENTUM, "epochs": args.epochs,
               "batch_size": args.batch_size, "train_examples": len(data.train["y"]),
               "init": norm_summary(norms["init"])}
    for name, result in results.items():
        speed = steps_per_second(result)
        metrics[name] = {
            "test_accuracy": result.history[-1]["val_accuracy"],
            "test_accuracy_per_epoch": [record["val_accuracy"] for record in result.history],
            **norm_summary(norms[name]),
            "train_time_s": round(result.train_time_s, 2),
            "compile_time_s": round(result.compile_time_s, 2),
            "steps_per_s": round(speed, 2),
            "time_per_step_vs_ordinary": round(base / speed, 2),
        }
        m = metrics[name]
        rows.append((name, f"{m['test_accuracy']:.2%}", f"{m['grad_norm_mean']:.3g}",
                     f"{m['grad_norm_quantiles']['0.5']:.3g}", f"{m['fraction_clipped']:.1%}",
                     f"{m['train_time_s']:.1f}", f"{m['steps_per_s']:.1f}", f"{m['time_per_step_vs_ordinary']:.2f}x"))
    init = metrics["init"]
    print(f"\nat initialisation: mean per-example gradient norm {init['grad_norm_mean']:.3g}, "
          f"{init['fraction_clipped']:.1%} of the training images above --clip {args.clip:g}")
    print(f"after {args.epochs} epochs ({int(results['ordinary'].state.step)} steps of {args.batch_size}); "
          "norms over the training set at the end, steps/s after the first epoch (which compiles):")
    print(format_table(("run", "test accuracy", "mean |g_i|", "median |g_i|", f"|g_i| > {args.clip:g}", "train s",
                        "steps/s", "s/step vs ordinary"), rows, right=range(1, 8)))

    # Plots: the norms, the images with the largest gradients (largest first), the learning curves
    out = args.out
    viz.plot_norm_histograms({"at initialisation": norms["init"], "after ordinary training": norms["ordinary"],
                              "after DP-SGD": norms["dp_sgd"]}, args.clip, out / "grad_norms.png",
                             title=f"{args.dataset}: per-example gradient norms of {len(data.train['y']):,} training images")
    top = np.argsort(-norms["ordinary"], kind="stable")[:LARGEST]
    labels, guesses, top_norms = data.train["y"][top], predicted["ordinary"][top], norms["ordinary"][top]
    names = data.class_names
    viz.plot_image_grid(data.train["x"][top], out / "largest_gradients.png",
                        titles=[f"{names[y]} -> {names[p]}, |g| {n:.3g}" for y, p, n in zip(labels, guesses, top_norms)],
                        title="training images with the largest gradients after ordinary training (label -> predicted)")
    viz.plot_curves({name: metrics[name]["test_accuracy_per_epoch"] for name in results}, out / "accuracy.png",
                    title=f"{args.dataset}: ordinary SGD, clipped, DP-SGD (clip {args.clip:g}, noise {args.noise:g})",
                    ylabel="test accuracy")
    metrics["largest_gradients"] = {"index": top.tolist(), "label": labels.tolist(), "predicted": guesses.tolist(),
                                    "grad_norm": top_norms.tolist()}
    path = runs.write_metrics(out, metrics)
    print(f"\nwrote {path} and plots to {out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
