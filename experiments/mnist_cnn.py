"""Lecture section 2: a convolutional network learns to read handwritten digits (MNIST).

Blocks of (3x3 convolution -> BatchNorm -> ReLU) and 2x2 max pooling turn a 28x28 digit
into feature maps (by default two blocks: 64 maps of 7x7); a fully connected "voting"
layer and a softmax give a probability distribution over the 10 digits. Trained with
Adam and a cosine learning-rate schedule on images randomly rotated, scaled and shifted
on the device; the test set is scored after every epoch (and every --eval-every steps).
``--ensemble K`` trains K such networks (seeds --seed, --seed+1, ...) and averages
their probability distributions.

    python experiments/mnist_cnn.py                     # offline: JAXDL_MANUAL_DIR=DIR, a folder of the original files
    python experiments/mnist_cnn.py --epochs 3 --out runs/quick
    python experiments/mnist_cnn.py --dataset fashion_mnist
    python experiments/mnist_cnn.py --ensemble 5 --out runs/mnist_ensemble   # the stronger recipe
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np
import optax

from jaxdl import devices, experiment, runs, viz
from jaxdl.core import summary
from jaxdl.loop import scores_by_step
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import confusion_matrix
from jaxdl.models import cnn
from jaxdl.precision import mixed_precision
from jaxdl.tables import format_table
from jaxdl.train import TrainState, average_weights, eval_params, make_eval_step, make_train_step, predict

# Settings: the shared flags with this script's defaults, and its own (--help lists them).
parser = experiment.experiment_parser(
    __doc__.split("\n\n")[0], out="runs/mnist_cnn", epochs=15, batch_size=128, lr=3e-3, data=True, ensemble=True,
    scales=True,
)
parser.add_argument("--dataset", default="mnist", help="any TFDS image-classification dataset with 'image' and 'label'")
parser.add_argument("--features", type=experiment.conv_blocks, default="32,64",
                    help="the convolution blocks, each ending in 2x2 max pooling: WIDTH or WIDTHxCOUNT (convolutions "
                    "in a row), separated by commas")
parser.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=True,
                    help="a BatchNorm after each convolution and the voting layer")
parser.add_argument("--hidden", type=experiment.positive_int, default=128, help="units of the fully connected layer")
parser.add_argument("--dropout", type=experiment.probability, default=0.25, help="dropout rate before the output layer")
parser.add_argument("--shift", type=experiment.non_negative_float, default=2.0,
                    help="augmentation: move training images by up to this many pixels (0: none)")
parser.add_argument("--rotation", type=experiment.non_negative_float, default=10.0,
                    help="augmentation: rotate training images by up to this many degrees (0: none)")
parser.add_argument("--zoom", type=experiment.fraction, default=0.1,
                    help="augmentation: scale training images by a factor in [1 - zoom, 1 + zoom] (0: none)")
parser.add_argument("--warmup", type=experiment.fraction, default=0.1,
                    help="the fraction of the steps over which the learning rate rises from 0 to --lr, "
                    "before its cosine decay")
parser.add_argument("--average", type=experiment.decay, default=None,
                    help="keep an exponential moving average of the weights with this decay (0.999, say), "
                    "and evaluate and save it (default: none)")
parser.add_argument("--eval-every", type=experiment.positive_int, default=None,
                    help="also score the test set every this many steps (default: after each epoch only)")
parser.add_argument("--train-examples", type=experiment.positive_int, default=None,
                    help="train on the first N training images only (a quick run); default: all")
parser.add_argument("--steps-per-call", type=experiment.positive_int, default=1,
                    help="training steps per jitted call (a lax.scan over batches on the device): "
                    "on a GPU, many remove the per-step dispatch; on a CPU, 1 is fastest")


@experiment.script
def main(argv=None) -> dict:
    args = parser.parse_args(argv)
    mesh = experiment.device_mesh(args, parser)
    experiment.new_or_resumed(args, parser)

    # Load, and the model: two conv blocks, a voting layer, the output (computing in --dtype)
    data = experiment.load_images(args, args.dataset)
    input_shape = (-1, *data.train["x"].shape[1:])
    model = cnn(data.num_classes, features=args.features, hidden=args.hidden, dropout=args.dropout,
                batch_norm=args.batch_norm, shift=args.shift, rotation=args.rotation, zoom=args.zoom)
    summary(model, input_shape)
    compute = mixed_precision(model, args.dtype)

    # Train: each network of the ensemble from its own seed, Adam on a cosine schedule (keeping an average of the
    # weights with --average), the test set every epoch
    steps = args.epochs * (len(data.train["y"]) // args.batch_size)
    optimizer = optax.adam(optax.warmup_cosine_decay_schedule(0.0, args.lr, int(args.warmup * steps), steps))
    if args.average:
        optimizer = average_weights(optimizer, args.average)
    train_step = make_train_step(compute, softmax_cross_entropy, optimizer)
    eval_step = make_eval_step(compute, softmax_cross_entropy)
    results = []
    for i, member in enumerate(runs.members(args.out, args.seed, args.ensemble)):
        if args.ensemble > 1:
            print(f"\nnetwork {i + 1} of {args.ensemble} (seed {member.seed})")
        init_key, state_key = jax.random.split(jax.random.key(member.seed))
        _, params, *model_state = model.init(init_key, input_shape)  # and BatchNorm's statistics
        result = experiment.fit_member(args, member, TrainState.create(params, optimizer, state_key, *model_state),
                                       train_step, data.train, mesh=mesh, eval_step=eval_step, eval_data=data.test,
                                       eval_every=args.eval_every, steps_per_call=args.steps_per_call)
        print(experiment.history_table(result.history, "test"))
        results.append(result)

    # Test accuracy: each network's probability distributions, and their average
    labels, names = data.test["y"], data.class_names
    each = [predict(compute, eval_params(r.state), data.test["x"], 1000, model_state=r.state.model_state,
                    transform=jax.nn.softmax) for r in results]
    if len(results) > 1:
        print("\ntest accuracy of each network: " + ", ".join(f"{(p.argmax(-1) == labels).mean():.2%}" for p in each))
    probabilities = np.mean(each, axis=0)
    predicted = probabilities.argmax(-1)
    accuracy = float((predicted == labels).mean())
    who = f"the ensemble of {len(results)}" if len(results) > 1 else "the network"
    print(f"test accuracy of {who}: {accuracy:.2%} ({int((predicted != labels).sum())} of {len(labels):,} wrong)")
    print("\nprobability distribution over the classes for the first test images:")
    rows = [(names[labels[i]], *(f"{p:.3f}" for p in probabilities[i]), names[predicted[i]]) for i in range(5)]
    print(format_table(("true", *names, "predicted"), rows, right=range(1, len(names) + 1)))

    # What the (first) network learned: its filters, its feature maps of a digit, its worst mistakes
    out = args.out
    cm = np.asarray(confusion_matrix(labels, predicted, data.num_classes))
    viz.plot_confusion_matrix(cm, out / "confusion_matrix.png", labels=names, title=f"{args.dataset} test set")
    params = devices.fetch(eval_params(results[0].state))  # on the host: also where a multi-process run spread it
    kernels = np.asarray(params["conv1"]["w"])  # (3, 3, C, width)
    viz.plot_image_grid(np.moveaxis(kernels.mean(2), -1, 0), out / "filters.png", cmap="RdBu_r", centered=True,
                        title="learned first-layer filters (3x3)")
    conv1 = dict(model.children)["conv1"]  # the trained network's own first layer
    maps = conv1.apply(params["conv1"], data.test["x"][:1])  # the convolution's own output, before any BatchNorm
    viz.plot_image_grid(np.moveaxis(np.asarray(maps[0]), -1, 0), out / "feature_maps.png", cmap="viridis",
                        title=f"first-layer feature maps of a test '{names[labels[0]]}'")
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:16]
    viz.plot_image_grid(
        data.test["x"][worst], out / "confidently_wrong.png",
        titles=[f"{names[labels[i]]} -> {names[predicted[i]]} ({probabilities[i, predicted[i]]:.0%})" for i in worst],
        title="the most confidently wrong test images (true -> predicted)",
    )

    # Figures: accuracy, times, the first network's learning curves
    first = results[0]
    reached = [p["elapsed_s"] for p in scores_by_step(first.history) if p["val_accuracy"] >= 0.99]
    train_time = sum(result.train_time_s for result in results)
    trained_images = sum(int(result.state.step) for result in results) * args.batch_size
    metrics = {
        "test_accuracy": accuracy,
        "member_test_accuracies": [float((p.argmax(-1) == labels).mean()) for p in each],
        "train_time_s": round(train_time, 2),
        "compile_time_s": round(first.compile_time_s, 2),
        "images_per_s": round(trained_images / max(train_time, 1e-9), 1),
        "time_to_99_s": round(reached[0], 2) if reached else None,  # the first network's, evaluations included
        "epochs": args.epochs,
    }
    viz.plot_history(first.history, "loss", out / "loss.png", title=f"{args.dataset}: loss (val = test set)")
    viz.plot_history(first.history, "accuracy", out / "accuracy.png", title=f"{args.dataset}: accuracy (val = test set)")
    path = runs.write_metrics(out, metrics)
    print(f"\nwrote {path} and plots to {out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
