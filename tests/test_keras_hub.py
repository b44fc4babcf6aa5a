"""KerasHub models: blocks, compression, reload, preset folders, both backends."""

import os

import keras
import numpy as np
import pytest

import keras_practise
from keras_practise import cli
from keras_practise.utils import model_io

keras_hub = pytest.importorskip("keras_hub")

from tests import hub_models  # noqa: E402  (needs keras_hub)

_EXPECTED_BLOCKS = {
    "resnet": ["stack0_block1", "stack1_block1"],
    "efficientnet": ["block2b", "block3a", "block3b"],
    "mobilenet_v3": ["block_1_1", "block_2_1"],
    "cspnet": ["stage_0_block_1_dark_block", "stage_1_block_1_dark_block"],
}


def _images(n=8):
    size = hub_models.SIZE
    return np.random.default_rng(0).uniform(size=(n, size, size, 3)).astype("float32")


@pytest.mark.parametrize("name", sorted(hub_models.BACKBONES))
def test_blocks_of_backbone_and_classifier(name):
    backbone = hub_models.BACKBONES[name]()
    assert isinstance(backbone, keras_hub.models.Backbone)
    assert [b.name for b in keras_practise.find_blocks(backbone)] == _EXPECTED_BLOCKS[name]
    classifier = hub_models.classifier(backbone)
    assert [b.name for b in keras_practise.find_blocks(classifier)] == _EXPECTED_BLOCKS[name]


@pytest.mark.parametrize(
    "name,wrap", [("resnet", True), ("mobilenet_v3", True), ("efficientnet", False)]
)
def test_compress_and_reload(name, wrap, tmp_path):
    model = hub_models.BACKBONES[name]()
    if wrap:
        model = hub_models.classifier(model)
    before = [w.copy() for w in model.get_weights()]
    block = _EXPECTED_BLOCKS[name][-1]
    small = keras_practise.compress(
        model, _images(), blocks=[block], finetune_steps=2, verbose=0,
        latency_batch_size=0,
    )
    assert type(small) is keras.Model or type(small).__name__ == "Functional"
    assert not isinstance(small, (keras_hub.models.Backbone, keras_hub.models.Task))
    assert keras_practise.count_params(small) < keras_practise.count_params(model)
    assert block not in [layer.name for layer in small.layers]
    for new, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(new, old)
    path = os.path.join(tmp_path, "small.keras")
    small.save(path)
    reloaded = keras.saving.load_model(path)
    x = _images(2)
    expected = small.predict(x, verbose=0)
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, atol=1e-5)


def test_preset_folder_is_a_model_path(tmp_path, capsys):
    backbone = hub_models.resnet()
    classifier = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=4)
    backbone_dir = os.path.join(tmp_path, "backbone_preset")
    classifier_dir = os.path.join(tmp_path, "classifier_preset")
    backbone.save_to_preset(backbone_dir)
    classifier.save_to_preset(classifier_dir)
    assert model_io.is_preset_dir(classifier_dir)
    x = _images(2)
    loaded = model_io.load_model(classifier_dir)
    assert isinstance(loaded, keras_hub.models.ResNetImageClassifier)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), classifier.predict(x, verbose=0), atol=1e-5
    )
    assert isinstance(model_io.load_model(backbone_dir), keras_hub.models.ResNetBackbone)
    assert cli.main(["blocks", classifier_dir]) == 0
    assert "stack1_block1" in capsys.readouterr().out


def test_not_a_preset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="preset folder"):
        model_io.load_model(str(tmp_path))
