"""Registry entries: constructible, features of the declared shape, weights loading and errors."""

import pytest
import timm
import torch
import torchvision

import models
from models.torchvision_cnn import _fix_densenet_keys

EXPECTED = {"cnn": 11, "vit": 13, "caption": 9, "offline": 20, "offline_trained": 11}


def test_groups_and_counts():
    for group, n in EXPECTED.items():
        assert len(models.list_models(group)) == n
    assert len(models.list_models()) == sum(EXPECTED.values()) == len(set(models.list_models()))
    with pytest.raises(ValueError, match="group"):
        models.list_models("nope")
    with pytest.raises(ValueError, match="unknown model"):
        models.create_model("resnet9000")


def test_register_rejects_duplicates_and_bad_groups():
    with pytest.raises(ValueError, match="twice"):
        models.register_model("resnet50", group="cnn", weights="x", not_trainable_reason="r")(lambda *a: None)
    with pytest.raises(ValueError, match="group"):
        models.register_model("new_model", group="rnn", weights="x", not_trainable_reason="r")


@pytest.mark.parametrize("name", models.list_models("cnn") + models.list_models("vit"))
def test_every_torch_entry_builds_with_declared_shapes(name):
    # built on the meta device: the full-size architecture, without the cost of real weights
    with torch.device("meta"):
        m = models.create_model(name, pretrained=False, device="meta")
        feats, logits = m.features_and_source_logits(torch.empty(3, 3, *m.input_hw))
    assert m.name == name and m.group in ("cnn", "vit")
    assert feats.shape == (3, m.feature_dim)
    assert (logits is None) == (m.num_source_classes is None)
    if logits is not None:
        assert logits.shape == (3, m.num_source_classes) == (3, 1000)
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        m.features(x)


def test_hooked_feature_is_the_head_input():
    """Source logits = classifier(feature) for a CNN (fc), a classifier[1] CNN and a ViT (norm -> head)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    for name in ("resnet34", "mobilenet_v2"):
        m = models.create_model(name, pretrained=False, device="cpu")
        f, logits = m.features_and_source_logits(x)
        head = m.network.fc if name == "resnet34" else m.network.classifier[1]
        torch.testing.assert_close(head(f), logits)
    m = models.create_model("deit_tiny", pretrained=False, device="cpu")
    f, logits = m.features_and_source_logits(torch.randn(2, 3, 224, 224))
    torch.testing.assert_close(m.network.head(m.network.norm(f)), logits)   # feature is taken BEFORE the norm


def test_missing_weights_error_names_path(tmp_path, monkeypatch):
    monkeypatch.delenv(models.WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="resnet50-0676ba61.pth") as err:
        models.create_model("resnet50")
    assert models.WEIGHTS_ENV in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        models.create_model("swin_t", weights_dir=tmp_path)
    assert str(tmp_path / "swin_tiny_patch4_window7_224.pth") in str(err.value)
    monkeypatch.setenv(models.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        models.create_model("vit_bart")
    assert str(tmp_path / "caption" / "vit_bart") in str(err.value)
    with pytest.raises(FileNotFoundError, match="pvt_tiny.pth"):
        models.create_trainable("pvt_tiny", 3)


def test_cnn_loads_torchvision_file_with_old_densenet_keys(tmp_path):
    torch.manual_seed(0)
    ref = torchvision.models.densenet121()
    old_style = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v for k, v in ref.state_dict().items()}
    assert any(".norm.1." in k for k in old_style)
    assert _fix_densenet_keys(old_style).keys() == ref.state_dict().keys()
    torch.save(old_style, tmp_path / "densenet121-a639ec97.pth")
    m = models.create_model("densenet121", weights_dir=tmp_path, device="cpu")
    x = torch.randn(2, 3, 64, 64)
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(m.features_and_source_logits(x)[1], ref(x))


def test_mocov3_checkpoint_prefix_and_projection_head(tmp_path):
    torch.manual_seed(0)
    ref = timm.create_model("vit_small_patch16_224", num_classes=0, num_heads=12).eval()
    state = {f"module.base_encoder.{k}": v for k, v in ref.state_dict().items()}
    state["module.base_encoder.head.0.weight"] = torch.zeros(4096, 384)      # MoCo projection MLP: dropped
    state["module.momentum_encoder.cls_token"] = torch.zeros(1, 1, 384)     # other prefix: ignored
    torch.save({"arch": "vit_small", "state_dict": state}, tmp_path / "vit-s-300ep.pth.tar")
    m = models.create_model("mocov3_small", weights_dir=tmp_path, device="cpu")
    assert m.num_source_classes is None
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        tokens = ref.forward_features(x)                # = norm(blocks(...)): compare the pre-norm CLS
    f = m.features(x)
    torch.testing.assert_close(ref.norm(f), tokens[:, 0], atol=1e-5, rtol=1e-5)


def test_pvt_v1_checkpoint_roundtrip_and_mismatch(tmp_path):
    from models.pvt_v1 import create_pvt_v1

    torch.manual_seed(0)
    ref = create_pvt_v1("pvt_tiny").eval()
    torch.save(ref.state_dict(), tmp_path / "pvt_tiny.pth")
    m = models.create_model("pvt_tiny", weights_dir=tmp_path, device="cpu")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(m.features_and_source_logits(x)[1], ref(x))
    torch.save(ref.state_dict(), tmp_path / "pvt_small.pth")                 # wrong depth for pvt_small
    with pytest.raises(RuntimeError, match="does not match"):
        models.create_model("pvt_small", weights_dir=tmp_path, device="cpu")


def test_create_trainable_cnn_new_head(tmp_path):
    torch.save(torchvision.models.mobilenet_v2().state_dict(), tmp_path / "mobilenet_v2-b0353104.pth")
    net, preprocess = models.create_trainable("mobilenet_v2", 7, weights_dir=tmp_path)
    assert net.training and all(p.requires_grad for p in net.parameters())
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert net.features[0][0].weight.grad is not None
    with pytest.raises(ValueError, match="num_classes"):
        models.create_trainable("mobilenet_v2", 0, weights_dir=tmp_path)


def test_captioners_are_not_trainable():
    with pytest.raises(NotImplementedError, match="captioning"):
        models.create_trainable("vit_bert", 5)
