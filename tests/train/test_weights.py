"""`--weights`: imagenet (through torchvision's cache), a state dict path, a gclf checkpoint, none.

No test downloads anything: torchvision's cache is a temporary TORCH_HOME holding a
torchvision-format state dict we write ourselves, and the download function is replaced
by one that fails like an offline machine.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torch.hub
from torchvision.models import GoogLeNet

from gclf.runtime.errors import UsageError, WeightsUnavailableError
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.checkpoint import make_checkpoint, save_checkpoint
from gclf.train.model import BackboneWeights, ModelInit, build_model, new_googlenet, resolve_weights

CACHE_NAME = "googlenet-1378be20.pth"  # torchvision's file name for IMAGENET1K_V1


def _backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(("fc.", "aux1.", "aux2."))}


def _assert_backbone_equal(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = _backbone(model.state_dict())
    want = _backbone(expected)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key


@pytest.fixture(scope="module")
def torchvision_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision-format ImageNet GoogLeNet state dict (1000 classes, aux heads) on disk."""
    torch.manual_seed(1234)
    model = GoogLeNet(num_classes=1000, aux_logits=True, transform_input=True, init_weights=False)
    # Non-default BatchNorm statistics, so buffers are checked as well as weights.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("torchvision") / "googlenet-state.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every torch.hub download fail as on a machine without network; records the URLs."""
    attempts: list[str] = []

    def refuse(url: str, *args, **kwargs) -> None:
        attempts.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return attempts


def test_imagenet_weights_come_from_torchvisions_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torchvision_state, offline) -> None:
    path, state = torchvision_state
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / CACHE_NAME
    cached.parent.mkdir(parents=True)
    cached.symlink_to(path)

    weights = resolve_weights("imagenet")
    model = build_model(["a", "b"], weights)

    assert offline == []  # used offline, from the cache
    assert weights.init.kind == "imagenet"
    assert weights.init.transform_input is True and model.transform_input is True
    assert model.fc.out_features == 2
    assert model.aux1 is None and model.aux2 is None
    _assert_backbone_equal(model, state)


def test_imagenet_weights_unavailable_names_both_ways_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))

    with pytest.raises(WeightsUnavailableError) as info:
        resolve_weights("imagenet")

    message = str(info.value)
    assert "--weights PATH" in message and "--weights none" in message
    assert len(offline) == 1 and offline[0].endswith(CACHE_NAME)  # it did try torchvision's URL


def test_a_torchvision_state_dict_path_is_loaded_into_the_backbone(torchvision_state) -> None:
    path, state = torchvision_state

    weights = resolve_weights(str(path))
    model = build_model(["a", "b", "c"], weights)

    assert weights.init == ModelInit("torchvision-state-dict", str(path), True)
    assert model.transform_input is True
    assert model.fc.out_features == 3
    _assert_backbone_equal(model, state)


def test_a_gclf_checkpoint_with_another_class_count_gets_a_new_head(tmp_path: Path) -> None:
    torch.manual_seed(7)
    five_class = new_googlenet(5, transform_input=False, init_weights=True)
    init = ModelInit("random", "", False)
    checkpoint = make_checkpoint(
        five_class,
        class_names=["a", "b", "c", "d", "e"],
        spec=PreprocessSpec(input_height=64, input_width=64).to_dict(),
        init=init.to_dict(),
        transform_input=False,
        extra={},
    )
    path = tmp_path / "five.pt"
    save_checkpoint(path, checkpoint)

    weights = resolve_weights(str(path))
    model = build_model(["a", "b"], weights)

    assert weights.init.kind == "gclf-checkpoint"
    assert weights.init.transform_input is False and model.transform_input is False  # as the checkpoint was trained
    assert model.fc.out_features == 2  # the 5-class head is replaced
    _assert_backbone_equal(model, five_class.state_dict())


def _five_class_checkpoint(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(11)
    model = new_googlenet(5, transform_input=False, init_weights=True)
    checkpoint = make_checkpoint(
        model, class_names=["a", "b", "c", "d", "e"], spec=PreprocessSpec(input_height=64, input_width=64).to_dict(),
        init=ModelInit("random", "", False).to_dict(), transform_input=False, extra={},
    )
    save_checkpoint(tmp_path / "five.pt", checkpoint)
    return tmp_path / "five.pt", model


def test_a_gclf_checkpoint_of_the_same_classes_keeps_its_head(tmp_path: Path) -> None:
    # Continuing a run (e.g. at another image size) must not throw the trained head away.
    path, five_class = _five_class_checkpoint(tmp_path)
    weights = resolve_weights(str(path))

    same = build_model(["a", "b", "c", "d", "e"], weights)
    assert torch.equal(same.fc.weight, five_class.fc.weight) and torch.equal(same.fc.bias, five_class.fc.bias)
    reordered = build_model(["b", "a", "c", "d", "e"], weights)  # other order: other meaning per output
    assert not torch.equal(reordered.fc.weight, five_class.fc.weight)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"definitely not a torch file", "not a loadable weights file"),
        (None, "holds no state dict of tensors"),
        ("wrong-keys", "is not a GoogLeNet state dict"),
    ],
    ids=["garbage", "not-a-state-dict", "other-architecture"],
)
def test_a_path_that_is_not_googlenet_weights_is_a_usage_error(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "weights.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:
        torch.save([1, 2, 3], path)
    else:
        torch.save({"layer1.weight": torch.zeros(2, 2)}, path)

    with pytest.raises(UsageError, match=message) as info:
        resolve_weights(str(path))
    assert str(path) in str(info.value)


def test_a_path_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'imagenet', 'none' or an existing file"):
        resolve_weights(str(tmp_path / "absent.pt"))


def test_none_is_random_initialisation() -> None:
    weights = resolve_weights("none")
    model = build_model(["a", "b", "c", "d"], weights)

    assert weights == BackboneWeights(None, ModelInit("random", "", False))
    assert model.transform_input is False
    assert model.fc.out_features == 4
