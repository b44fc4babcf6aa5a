"""The embedded default: compress the bundled digits teacher from 50 images.

Runs end to end on a CPU in a few minutes: loads the CIFAR-style ResNet-20
shipped in the package (trained on the "cluttered digits" task built from
scikit-learn's digits and scikit-image's photographs), draws 50 unlabelled
training images, runs PRACTISE (recoverability selection, feature-mimicking
recovery, folding), and prints accuracy, parameters, MACs and latency before
and after, beside the same blocks dropped without recovery. Writes a
latency-accuracy plot.

    python -m keras_practise.demo [--drop 2] [--num-samples 50] [--plot demo.png]
"""

import argparse
import contextlib
import sys


def _accuracy(model, images, labels):
    import numpy as np

    from keras_practise.distillation import inference

    # One traced predict per model, the last batch padded: Keras' own
    # `predict` traces again for a short last batch, and TensorFlow warns
    # about retracing after a few models.
    predictions = inference.activations(model, images, batch_size=250)[0]
    return float(np.mean(np.argmax(predictions, axis=-1) == labels))


def _architecture(model):
    """What the latency of `model` depends on: its layers' kinds and shapes."""
    return tuple(
        (type(layer).__name__, str(layer.output.shape), layer.count_params())
        for layer in model.layers
    )


def plot_latency_accuracy(points, path):
    """Writes a latency-accuracy scatter plot (matplotlib, PNG).

    Args:
        points: List of `(label, latency_ms, accuracy)`.
        path: Output PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 4))
    for label, latency_ms, accuracy in points:
        axis.scatter(latency_ms, 100 * accuracy, s=60)
        axis.annotate(label, (latency_ms, 100 * accuracy),
                      textcoords="offset points", xytext=(6, 4))
    axis.set_xlabel("latency (ms per batch)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("keras_practise demo: latency vs accuracy")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(drop=2, num_samples=50, seed=0, steps=100, finetune_steps=300,
        test_images=1000, plot="demo_latency_accuracy.png", latency_runs=20):
    """Runs the demo and returns its rows.

    Args:
        drop: Blocks to drop.
        num_samples: Unlabelled training images to compress from.
        seed: Seed of the tiny set and training.
        steps: Adaptor-training steps per candidate.
        finetune_steps: Recovery steps.
        test_images: Held-out images to measure accuracy on.
        plot: PNG path of the latency-accuracy plot (`None`: no plot).
        latency_runs: Timed rounds of the latency comparison.

    Returns:
        A dict with the accuracies, latencies and the `CompressionReport`.
    """
    import keras

    import keras_practise
    from keras_practise.demo import digits

    teacher = keras.saving.load_model(digits.TEACHER_PATH)
    train_x, _ = digits.load_cluttered_digits("train", num_images=num_samples, seed=seed)
    test_x, test_y = digits.load_cluttered_digits("test", num_images=test_images, seed=1)
    with contextlib.redirect_stdout(sys.stderr):
        small, report = keras_practise.compress(
            teacher, train_x, drop=drop, steps=steps,
            finetune_steps=finetune_steps, seed=seed, latency="macs",
            return_report=True, latency_batch_size=0,
        )
    dropped = keras_practise.drop_blocks(teacher, report.blocks)
    models = {"teacher": teacher, "dropped, no recovery": dropped, "PRACTISE": small}
    # Models of one architecture are timed once: timed apart, noise would
    # read as a difference between them (the folded adaptors leave PRACTISE
    # with the dropped model's layers).
    timed = {}
    for name, model in models.items():
        timed.setdefault(_architecture(model), name)
    timing = keras_practise.compare_latency(
        {name: models[name] for name in timed.values()},
        batch_size=64, runs=latency_runs,
    )
    rows = {name: _accuracy(model, test_x, test_y) for name, model in models.items()}
    ms = {
        name: timing.results[timed[_architecture(model)]].median_ms
        for name, model in models.items()
    }
    params = {name: keras_practise.count_params(m) for name, m in models.items()}
    macs = {name: keras_practise.count_macs(m) for name, m in models.items()}
    print(f"Dropped {', '.join(f'{b} ({l})' for b, l in zip(report.blocks, report.labels))} "
          f"from {num_samples} unlabelled images; device: {timing.results['teacher'].device}")
    print(f"{'model':<22}{'test acc':>10}{'params':>10}{'MACs (M)':>10}{'latency ms':>12}")
    for name in rows:
        print(f"{name:<22}{100 * rows[name]:>9.2f}%{params[name]:>10,}"
              f"{macs[name] / 1e6:>10.2f}{ms[name]:>12.2f}")
    if plot:
        plot_latency_accuracy([(n, ms[n], rows[n]) for n in rows], plot)
        print(f"plot written to {plot}")
    return {"accuracy": rows, "latency_ms": ms, "report": report}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--plot", default="demo_latency_accuracy.png")
    args = parser.parse_args(argv)
    run(drop=args.drop, num_samples=args.num_samples, seed=args.seed,
        steps=args.steps, finetune_steps=args.finetune_steps,
        test_images=args.test_images, plot=args.plot)


if __name__ == "__main__":
    main()
