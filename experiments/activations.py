"""Lecture section 2: in a deep network, ReLU counters the vanishing gradients of the sigmoid.

Two MLPs of the same shape (default: 12 hidden layers of 64 units on flattened 28x28
MNIST digits, 10 classes), one with sigmoid units and one with ReLU, start from the
very same weights. The script (a) measures, on one batch at initialisation, the norm of
the loss's gradient with respect to each layer's weights w (layer 1 = nearest the
input), printed as a table and plotted on a log scale; and (b) trains both with the same
budget (SGD with momentum, same learning rate, steps and data order) and scores them on
the test set.

Why the sigmoid's gradients vanish: backpropagation multiplies the error signal by one
factor per layer, w times the activation's derivative. The sigmoid's derivative is at
most 1/4 (at 0), so each sigmoid layer shrinks the signal about fourfold and layer 1
gets roughly 4^-depth of what the output layer gets. Plain gradient descent moves each
weight in proportion to its gradient, so the first layers of the sigmoid network barely
learn, and the layers above them see an input that carries almost nothing of the image:
within the same budget the sigmoid network stays near chance. ReLU's derivative is 1
where the unit is active, so the signal keeps its size through the layers.

Initialisation: both networks use Dense's default, LeCun normal (w ~ N(0, 1/fan_in)),
which keeps pre-activations near unit scale: the sigmoid works in its steepest region,
where its derivative is largest, so its gradients vanish here *despite* a good start
(larger weights would saturate it and make them vanish faster still). For ReLU it halves
the signal's variance per layer in both directions (He's N(0, 2/fan_in) would keep it),
but a weight's gradient is the activation below times the error above, and those two
shrink together by the same total factor whatever the layer, so ReLU's per-layer norms
stay level. The optimizer is SGD with momentum rather
than Adam on purpose: Adam rescales each parameter's step and so hides how small a
gradient is from the update. Deeper ReLU networks want a smaller step: at depth 20, lr 0.03
makes ReLU's training unstable, lr 0.01 trains it (the example below).

    python experiments/activations.py                 # offline: JAXDL_MANUAL_DIR=DIR, a folder of the original files
    python experiments/activations.py --depth 20 --epochs 20 --lr 0.01 --out runs/activations20
    python experiments/activations.py --train-examples 60000 --momentum 0   # all images, plain SGD
"""

from __future__ import annotations

import sys

import jax
import optax

from jaxdl import experiment, runs, viz
from jaxdl.gradients import gradient_norm_table, layer_gradient_norms
from jaxdl.layers import ReLU, Sigmoid
from jaxdl.losses import softmax_cross_entropy
from jaxdl.models import mlp
from jaxdl.precision import mixed_precision
from jaxdl.tables import format_table
from jaxdl.train import TrainState, make_eval_step, make_train_step

# Settings: the shared flags with this script's defaults, and its own (--help lists them).
parser = experiment.experiment_parser(
    __doc__.split("\n\n")[0], out="runs/activations", epochs=5, batch_size=128, lr=0.03, data=True, scales=True
)
parser.add_argument("--depth", type=experiment.positive_int, default=12, help="hidden layers, 10 to 20")
parser.add_argument("--width", type=experiment.positive_int, default=64, help="units per hidden layer")
parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0: plain gradient descent)")
parser.add_argument("--train-examples", type=experiment.positive_int, default=10_000,
                    help="train on the first N training images (60000: all)")


@experiment.script
def main(argv=None) -> dict:
    args = parser.parse_args(argv)
    if not 10 <= args.depth <= 20:
        parser.error(f"--depth must be between 10 and 20 hidden layers (vanishing gradients need a deep network), "
                     f"got {args.depth}")
    if not 0.0 <= args.momentum < 1.0:
        parser.error(f"--momentum must be in [0, 1), got {args.momentum}")
    if args.train_examples < args.batch_size:
        parser.error(f"--train-examples ({args.train_examples}) must be at least --batch-size ({args.batch_size})")
    mesh = experiment.device_mesh(args, parser)
    experiment.new_or_resumed(args, parser)

    # Load: MNIST's first --train-examples training images and its test images, flattened to (N, 784)
    data = experiment.load_images(args, "mnist")
    train, test = ({"x": split["x"].reshape(len(split["x"]), -1), "y": split["y"]} for split in (data.train, data.test))

    # Model: two MLPs of the same shape, from the very same weights (the same key for both)
    models = {name: mlp([args.width] * args.depth, 10, activation=activation)
              for name, activation in {"sigmoid": Sigmoid, "relu": ReLU}.items()}
    init_key, state_key = jax.random.split(jax.random.key(args.seed))
    initial = {name: model.init(init_key, (-1, train["x"].shape[1]))[1] for name, model in models.items()}
    optimizer = optax.sgd(args.lr, momentum=args.momentum or None)
    print(f"{args.depth} hidden layers of {args.width} units; SGD lr {args.lr} momentum {args.momentum}, "
          f"{args.epochs} epochs of {len(train['y']) // args.batch_size} steps, batch {args.batch_size}")

    # Gradients at initialisation, on the first batch: |d loss / d w| of each layer
    first_batch = {name: column[: args.batch_size] for name, column in train.items()}
    norms = {name: layer_gradient_norms(model, softmax_cross_entropy, initial[name], first_batch)
             for name, model in models.items()}
    print("\n|d loss / d w| per layer at initialisation (one batch; layer 1 = nearest the input):")
    print(gradient_norm_table(norms))

    # Train: both with the same budget, data order and learning rate
    results = {}
    for name, model in models.items():
        print(f"\ntraining the {name} network")
        compute = mixed_precision(model, args.dtype)
        [member] = runs.members(args.out, args.seed, name=f"checkpoints/{name}")
        results[name] = experiment.fit_member(
            args, member, TrainState.create(initial[name], optimizer, state_key),
            make_train_step(compute, softmax_cross_entropy, optimizer), train, mesh=mesh,
            eval_step=make_eval_step(compute, softmax_cross_entropy), eval_data=test,
        )

    # Report: the learning curves side by side, the final figures, plots
    print("\ntraining loss and test accuracy after each epoch:")
    epochs = zip(*(r.history for r in results.values()))
    rows = [(records[0]["epoch"], *(f for x in records for f in (f"{x['train_loss']:.4f}", f"{x['val_accuracy']:.2%}")))
            for records in epochs]
    header = [f"{name} {what}" for name in results for what in ("loss", "accuracy")]
    print(format_table(("epoch", *header), rows, right=range(len(header) + 1)))

    print(f"\nafter the same budget ({args.epochs} epochs, {int(results['relu'].state.step)} steps):")
    rows = [(name, f"{r.history[-1]['train_loss']:.4f}", f"{r.history[-1]['val_accuracy']:.2%}",
             f"{r.train_time_s:.1f}", f"{r.compile_time_s:.2f}") for name, r in results.items()]
    print(format_table(("activation", "train loss", "test accuracy", "train s", "compile s"), rows, right=range(1, 5)))

    metrics = {"depth": args.depth, "width": args.width, "epochs": args.epochs,
               "train_examples": len(train["y"]), "lr": args.lr, "momentum": args.momentum}
    for name, r in results.items():
        layers = list(norms[name].values())
        metrics[name] = {
            "gradient_norms": norms[name],
            "first_to_last_norm_ratio": layers[0] / layers[-1],
            "test_accuracy": r.history[-1]["val_accuracy"],
            "train_loss": [record["train_loss"] for record in r.history],
            "train_time_s": round(r.train_time_s, 2),
            "compile_time_s": round(r.compile_time_s, 2),
        }
    out, title = args.out, f"MNIST, {args.depth} hidden layers of {args.width}"
    viz.plot_curves(
        {name: list(by_layer.values()) for name, by_layer in norms.items()}, out / "gradient_norms.png",
        title=f"{title}: gradients at initialisation", xlabel=f"layer (1 = nearest the input, {args.depth + 1} = output)",
        ylabel="|d loss / d w|", log_y=True,
    )
    viz.plot_curves({name: metrics[name]["train_loss"] for name in results}, out / "loss.png",
                    title=f"{title}: the same budget", ylabel="training loss")
    viz.plot_curves({name: [record["val_accuracy"] for record in r.history] for name, r in results.items()},
                    out / "accuracy.png", title=f"{title}: the same budget", ylabel="test accuracy")
    path = runs.write_metrics(out, metrics)
    print(f"\nwrote {path} and plots to {out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
