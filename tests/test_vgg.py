"""The VGG extractor: layer names and indices, weights from files and torchvision's cache, random scaling."""

import pytest
import torch
import torchvision

from models import vgg
from util.errors import SargenError


def test_block_indices_map_to_last_relu_of_each_block():
    assert vgg.block_layers("vgg16") == ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
    assert vgg.block_layers("vgg19") == ["relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4"]
    assert vgg.parse_layers("vgg19", "1,3", "--content_layer") == ["relu2_2", "relu4_4"]
    assert vgg.parse_layers("vgg16", "relu4_2,0", "--style_layer") == ["relu4_2", "relu1_2"]


def test_layer_names_follow_torchvision_features_indices():
    for backbone in vgg.BACKBONES:
        names = vgg.layer_names(backbone)
        modules = list(vgg.build_architecture(backbone))
        assert len(names) == len(modules)
        for name, module in zip(names, modules):
            expected = {"con": torch.nn.Conv2d, "rel": torch.nn.ReLU, "poo": torch.nn.MaxPool2d}[name[:3]]
            assert isinstance(module, expected)
    assert vgg.resolve_layer("vgg16", "15", block_indices=False) == "relu3_3"
    assert vgg.resolve_layer("vgg16", "22", block_indices=False) == "relu4_3"
    assert vgg.resolve_layer("vgg19", "35", block_indices=False) == "relu5_4"


def test_bad_layers_name_the_option_and_valid_choices():
    with pytest.raises(SargenError, match=r"--style_layer: layer 5 does not exist in vgg16: use block indices 0-4"):
        vgg.parse_layers("vgg16", "0,5", "--style_layer")
    with pytest.raises(SargenError, match="relu3_4.*valid names"):
        vgg.parse_layers("vgg16", "relu3_4", "--content_layer")


def test_truncated_extractor_is_frozen_and_returns_requested_layers():
    extractor = vgg.VGGFeatures("vgg16", "random", ["relu2_2", "relu1_2"])
    assert len(extractor.features) == vgg.layer_names("vgg16").index("relu2_2") + 1
    assert not any(parameter.requires_grad for parameter in extractor.parameters())
    extractor.train()
    assert not extractor.training
    outputs = extractor(torch.rand(2, 1, 24, 24))
    assert set(outputs) == {"relu1_2", "relu2_2"}
    assert outputs["relu2_2"].shape == (2, 128, 12, 12)


def test_random_weights_are_seeded_and_keep_unit_variance():
    first = vgg.VGGFeatures("vgg19", "random", vgg.block_layers("vgg19"), seed=3)
    second = vgg.VGGFeatures("vgg19", "random", vgg.block_layers("vgg19"), seed=3)
    other = vgg.VGGFeatures("vgg19", "random", vgg.block_layers("vgg19"), seed=4)
    assert torch.equal(first.features[0].weight, second.features[0].weight)
    assert not torch.equal(first.features[0].weight, other.features[0].weight)
    assert first.weights_description == "random:seed=3,unit-variance"
    images = vgg.calibration_images(seed=99, count=2, size=96)
    deepest = first(images)["relu5_4"].std().item()
    assert 0.3 < deepest < 5.0
    plain = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])
    plain_deepest = plain(vgg.imagenet_normalize(images)).std().item()
    assert plain_deepest < 0.05 * deepest  # the default init makes deep features vanish


def save_torchvision_state(path, backbone, seed):
    """Save a torchvision-format VGG state dict (features + classifier) with seeded weights."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, backbone)(weights=None)
    torch.save(model.state_dict(), path)
    return model


def test_weights_from_a_local_torchvision_file(tmp_path):
    model = save_torchvision_state(tmp_path / "my_vgg16.pth", "vgg16", seed=1)
    extractor = vgg.VGGFeatures("vgg16", str(tmp_path / "my_vgg16.pth"), ["relu3_3"])
    assert torch.equal(extractor.features[14].weight, model.features[14].weight)
    assert extractor.weights_description.startswith("file:")
    with pytest.raises(SargenError, match="my_vgg16.pth lacks VGG weight '16.weight'"):
        vgg.VGGFeatures("vgg19", str(tmp_path / "my_vgg16.pth"), ["relu5_4"])
    with pytest.raises(SargenError, match="--vgg_weights file not found: .*missing.pth"):
        vgg.VGGFeatures("vgg16", str(tmp_path / "missing.pth"), ["relu1_2"])


def test_imagenet_weights_come_from_torchvision_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = vgg.imagenet_cache_path("vgg16")
    assert cache == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    cache.parent.mkdir(parents=True)
    model = save_torchvision_state(cache, "vgg16", seed=2)
    extractor = vgg.VGGFeatures("vgg16", "imagenet", ["relu1_2"])
    assert torch.equal(extractor.features[2].weight, model.features[2].weight)
    assert extractor.weights_description == "imagenet:vgg16-397923af.pth"


def test_missing_imagenet_weights_offline_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.VGG19_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(SargenError) as error:
        vgg.VGGFeatures("vgg19", "imagenet", ["relu1_2"])
    message = str(error.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "--vgg_weights random" in message
