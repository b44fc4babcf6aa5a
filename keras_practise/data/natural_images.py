"""Out-of-domain tiny sets cut from scikit-image's bundled photographs.

The paper shows that PRACTISE recovers a pruned network well from natural
images of another domain (CUB, Places365 for an ImageNet model) and badly
from noise. These photographs (an astronaut, a cat, coffee, coins, a galaxy
field, tissue under a microscope, ...) ship inside scikit-image, so such a
set can be made offline: random crops at random scales and aspect ratios,
random mirroring, resized to the wanted size.
"""

import functools

import numpy as np

from keras_practise.data import augment
from keras_practise.utils import validation

# Natural photographs bundled with scikit-image (no download needed); the
# synthetic ones (logo, colorwheel, checkerboard, blobs, horse) are left out.
PHOTOGRAPHS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
)


def sample_photographs(
    num_images,
    image_size=(32, 32),
    seed=0,
    grayscale=False,
    scale=(0.08, 1.0),
    photographs=None,
):
    """Random crops of natural photographs, as an out-of-domain tiny set.

    Each image picks a photograph uniformly at random and cuts a
    random-resized crop from it (area a random fraction `scale` of the
    photograph's, aspect ratio in [3/4, 4/3], as torchvision draws them),
    mirrored with probability 1/2 and resized with antialiasing (see
    `keras_practise.augment`). Grayscale photographs are repeated over three
    channels for colour output; colour ones are converted to luminance for
    grayscale output.

    Args:
        num_images: Number of images.
        image_size: `int` or `(height, width)`. Defaults to `(32, 32)`.
        seed: Seed of the numpy generator. Defaults to `0`.
        grayscale: Return one luminance channel instead of RGB. Defaults to
            `False`.
        scale: `(low, high)` range of the crop's area as a fraction of the
            photograph's. Defaults to `(0.08, 1.0)`.
        photographs: Names from `PHOTOGRAPHS` to draw from. Defaults to all
            of them that load.

    Returns:
        A float32 numpy array `(num_images, height, width, channels)` with
        values in [0, 1]; `channels` is 1 if `grayscale` else 3.

    Raises:
        ImportError: If scikit-image is not installed.
        ValueError: If an argument is out of range, a name is unknown, or no
            photograph could be loaded.

    Example:

    ```python
    tiny_set = keras_practise.sample_photographs(500, (224, 224)) * 255.0
    ```
    """
    validation.check_int("num_images", num_images)
    height, width = validation.as_size(image_size)
    names = PHOTOGRAPHS if photographs is None else tuple(photographs)
    unknown = sorted(set(names) - set(PHOTOGRAPHS))
    if unknown or not names:
        raise ValueError(
            f"`photographs` must be names from {PHOTOGRAPHS}. "
            f"Received: photographs={photographs!r}"
        )
    loaded = [load_photograph(name, grayscale) for name in names]
    pool = [photo for photo in loaded if photo is not None]
    if not pool:
        raise ValueError(
            "None of the photographs could be loaded from scikit-image. "
            f"Received: photographs={names}"
        )
    rng = np.random.default_rng(seed)
    images = np.empty((num_images, height, width, pool[0].shape[-1]), "float32")
    for index in range(num_images):
        photo = pool[rng.integers(len(pool))]
        box = augment.sample_crop_boxes(
            rng, 1, photo.shape[0], photo.shape[1], scale=scale
        )
        images[index] = augment.crop_and_resize(
            photo[None], box, (height, width), flip=[rng.random() < 0.5]
        )[0]
    return np.clip(images, 0.0, 1.0)


@functools.lru_cache(maxsize=None)
def load_photograph(name, grayscale=False):
    """Loads one of scikit-image's sample photographs, or None if unavailable.

    Args:
        name: A function name in `skimage.data` (e.g. `"astronaut"`).
        grayscale: Whether to return one channel instead of three (grey
            photographs are repeated over three channels otherwise).

    Returns:
        A float32 `(height, width, channels)` array in [0, 1], or `None`
        when this scikit-image build cannot provide the photograph offline.

    Raises:
        ImportError: If scikit-image is not installed.
    """
    skimage = _import_skimage()
    try:
        photo = getattr(skimage.data, name)()
    except (ImportError, OSError):
        # Some scikit-image builds fetch images on demand (needs `pooch`
        # and a network); skip those rather than fail offline.
        return None
    photo = skimage.util.img_as_float32(photo)
    if photo.ndim == 3:
        photo = photo[..., :3]  # Drops an alpha channel, if any.
        if grayscale:
            photo = skimage.color.rgb2gray(photo)
    if photo.ndim == 2:
        photo = photo[..., None]
    if not grayscale and photo.shape[-1] == 1:
        photo = np.repeat(photo, 3, axis=-1)
    return photo.astype("float32")


def _import_skimage():
    try:
        import skimage.color
        import skimage.data
        import skimage.util
    except ImportError as error:
        raise ImportError(
            "sample_photographs needs scikit-image: `pip install "
            "keras-practise[extras]` (or `pip install scikit-image`)."
        ) from error
    return skimage
