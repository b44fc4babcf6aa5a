"""The ImageNet teacher and photograph data of the real-network benchmarks.

`build_teacher` puts EfficientNet-Lite (ImageNet weights) behind a
`Rescaling` layer so that it takes RGB in [0, 1]; `Data` splits foolbox's 20
labelled ImageNet photographs into photographs that lend tiny-set views and
held-out photographs that give test views. Shared by `real_network` and
`quantization`, which define absl flags of the same names and so cannot
import each other.
"""

SOURCE_NAMES = {
    "in_domain": "ImageNet photographs (foolbox)",
    "out_of_domain": "other photographs (scikit-image)",
    "synthetic": "Gaussian noise",
    "data_free": "data-free (DeepInversion)",
}


def build_teacher(variant, size):
    """The ImageNet EfficientNet-Lite taking RGB in [0, 1], softmax output."""
    import keras

    from keras_practise import models

    inputs = keras.Input((size, size, 3))
    # (255 x - 127) / 128: the model's preprocess_input on [0, 1] images.
    x = keras.layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="rescale")(inputs)
    builder = {"lite0": models.EfficientNetLite0, "lite1": models.EfficientNetLite1}
    return builder[variant](input_tensor=x)


class Data:
    """Photograph split, test views and tiny-set sources, all in [0, 1]."""

    def __init__(self, teacher, size, train_photographs, test_views, seed):
        import numpy as np

        from keras_practise.data import augment
        from keras_practise.models import efficientnet_lite

        photos, labels = efficientnet_lite.foolbox_photographs(512)
        order = np.random.default_rng(seed).permutation(len(photos))
        self.train, self.held_out = order[:train_photographs], order[train_photographs:]
        self.photos, self.photo_labels = photos / 255.0, labels
        self.size, self.seed, self.teacher = size, seed, teacher
        self.labelled = augment.resize(self.photos, size)
        per_image = -(-test_views // len(self.held_out))
        views = augment.make_views(
            self.photos[self.held_out], per_image, size, seed=seed + 1000,
            scale=(0.25, 1.0),
        )
        self.test = views[np.random.default_rng(seed).permutation(len(views))[:test_views]]
        self._synthesised = None

    def tiny_set(self, source, n, synthesis_steps=None):
        """`(images, labels or None)`: `n` views of `source`."""
        import numpy as np

        from keras_practise.data import augment, natural_images, synthesis

        rng = np.random.default_rng(self.seed)
        if source == "in_domain":
            per_image = -(-n // len(self.train))
            views = augment.make_views(self.photos[self.train], per_image, self.size, seed=self.seed)
            labels = np.repeat(self.photo_labels[self.train], per_image)
            pick = rng.permutation(len(views))[:n]
            return views[pick], labels[pick]
        if source == "out_of_domain":
            return natural_images.sample_photographs(n, self.size, seed=self.seed), None
        if source == "synthetic":
            noise = synthesis.gaussian_noise(n, self.size, mean=0.5, std=0.25, seed=self.seed)
            return np.clip(noise, 0.0, 1.0), None
        if source == "data_free":
            # One synthesis of the largest set; smaller sets are its prefixes.
            if self._synthesised is None or len(self._synthesised) < n:
                self._synthesised = synthesis.synthesize_images(
                    self.teacher, n, steps=synthesis_steps, value_range=(0, 1),
                    seed=self.seed, verbose=0,
                ).images
            return self._synthesised[:n], None
        raise ValueError(f"Unknown source {source!r}: {sorted(SOURCE_NAMES)}")
