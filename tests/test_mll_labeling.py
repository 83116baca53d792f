"""Semantic graph construction, model labels, label caching and incremental hub growth (fake VLMs)."""
import hashlib
import json

import numpy as np
import pytest

from mll.graph import SampleSource, SemanticGraph
from mll.labeling import LabelingProtocol, ModelHub, label_nodes, node_candidates
from mll.vlm import VLM, l2_normalise
from mll.wordnet import load_wordnet

DOG, TABBY, SANDAL, BRICK, GRAVEL = "n02084071", "n02123045", "n04133789", "n02897820", "n14698884"


class FakeImage:
    def __init__(self, wnid, k):
        self.wnid, self.k = wnid, k


class FakeSource(SampleSource):
    def __init__(self, name, counts):
        self.name = name
        self.items = [(w, k) for w, n in counts.items() for k in range(n)]

    def wnid_labels(self):
        return [w for w, _ in self.items]

    def load(self, index):
        return FakeImage(*self.items[index])


def text_vector(text, dim=64):
    seed = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).standard_normal(dim)


class FakeVLM(VLM):
    """Image embedding = text embedding of its synset's prompt + noise of scale ``noise``:
    noise 0 -> a perfect model; counts every image it encodes."""

    def __init__(self, name, noise, wn):
        self.name, self.noise, self.wn = name, noise, wn
        self.templates = ("a photo of a {}.",)
        self.images_encoded = 0

    def image_features(self, images):
        self.images_encoded += len(images)
        out = []
        for im in images:
            rng = np.random.default_rng([im.k, int(im.wnid[1:])])
            out.append(text_vector(self.prompts_for(self.wn[im.wnid].name)[0]) + self.noise * rng.standard_normal(64))
        return np.array(out)

    def embed_image_features(self, features):
        return l2_normalise(features)

    def _encode_texts(self, texts):
        return np.stack([text_vector(t) for t in texts])


@pytest.fixture(scope="module")
def wn():
    return load_wordnet()


def make_graph(wn, n=5, name="g"):
    return SemanticGraph(name, wordnet=wn, images_per_node=n, random_state=0)


def test_graph_nodes_images_edges_and_captions(wn):
    g = make_graph(wn, n=5)
    src = FakeSource("s1", {DOG: 8, TABBY: 3})
    new = g.add_sources([src], include_ancestors=True)
    assert DOG in new and TABBY in new and "n00001740" in new          # ancestors up to entity
    assert g.class_nodes == {DOG, TABBY}
    assert len(g.images_of(DOG)) == 5 and len(g.images_of(TABBY)) == 3
    carnivore = "n02075296"
    assert carnivore in g and set(g.images_of(carnivore)) <= set(g.images_of(DOG)) | set(g.images_of(TABBY))
    assert ("n02083346", DOG) in g.edges()                               # canine -> dog
    assert g.caption(TABBY) == "tabby which is a cat with a grey or tawny coat mottled with black"
    assert set(g.leaves()) == {DOG, TABBY}
    # deterministic sampling, independent of other sources
    g2 = make_graph(wn, n=5)
    g2.add_sources([FakeSource("s1", {DOG: 8})], include_ancestors=False)
    assert g2.images_of(DOG) == g.images_of(DOG)
    with pytest.raises(ValueError, match="already"):
        g.add_sources([src])


def test_graph_rejects_non_synsets(wn):
    with pytest.raises(ValueError, match="not WordNet noun synsets"):
        make_graph(wn).add_sources([FakeSource("bad", {"n99999999": 2})])


def test_node_candidates_have_distinct_names(wn):
    c = node_candidates(wn, TABBY, LabelingProtocol(n_distractors=10))
    assert c[0] == TABBY and len(c) == 11
    names = [wn[u].name.lower() for u in c]
    assert len(set(names)) == len(names)


def test_label_perfect_vs_noisy_model(wn):
    g = make_graph(wn, n=6)
    g.add_sources([FakeSource("s1", {DOG: 6, SANDAL: 6})], include_ancestors=False)
    perfect, noisy = FakeVLM("perfect", 0.0, wn), FakeVLM("noisy", 3.0, wn)
    proto = LabelingProtocol(n_distractors=8)
    np.testing.assert_array_equal(label_nodes(perfect, g, [DOG, SANDAL], proto), [1.0, 1.0])
    acc = label_nodes(noisy, g, [DOG, SANDAL], proto)
    assert np.all((acc >= 0) & (acc <= 1)) and acc.mean() < 1.0


def test_hub_growth_labels_only_what_is_new(wn, tmp_path):
    g = make_graph(wn, n=4)
    hub = ModelHub(g, protocol=LabelingProtocol(6), label_dir=tmp_path, cache_dir=None)
    hub.add_sources([FakeSource("s1", {DOG: 4, TABBY: 4})], include_ancestors=False)
    a, b = FakeVLM("A", 0.5, wn), FakeVLM("B", 2.0, wn)
    assert sorted(hub.add_model(a)) == sorted([DOG, TABBY])
    assert a.images_encoded == 8
    assert sorted(hub.add_model(b)) == sorted([DOG, TABBY])
    assert a.images_encoded == 8                                       # adding B did not touch A
    label_a = hub.label("A")
    # adding nodes labels only the new nodes, for every model
    new = hub.add_sources([FakeSource("s2", {SANDAL: 3, BRICK: 2})], include_ancestors=False)
    assert sorted(new) == sorted([SANDAL, BRICK])
    assert a.images_encoded == 8 + 5 and b.images_encoded == 8 + 5
    assert {w: hub.label("A")[w] for w in label_a} == label_a          # old labels unchanged
    assert hub.label_matrix().shape == (2, 4)
    with pytest.raises(ValueError, match="already in the hub"):
        hub.add_model(a)

    # labels are cached on disk: a fresh hub on the same graph re-labels nothing
    stored = json.loads(hub.label_path("A").read_text())
    assert set(stored["labels"]) == {DOG, TABBY, SANDAL, BRICK}
    hub2 = ModelHub(g, protocol=LabelingProtocol(6), label_dir=tmp_path)
    a2 = FakeVLM("A", 0.5, wn)
    assert hub2.add_model(a2) == [] and a2.images_encoded == 0
    np.testing.assert_array_equal(hub2.label_matrix(["A"]), hub.label_matrix(["A"]))
    # a graph that grew further: only the missing node is labelled from the cache's state
    hub2.add_sources([FakeSource("s3", {GRAVEL: 2})], include_ancestors=False)
    assert a2.images_encoded == 2


def test_image_stage_cache_is_shared(wn, tmp_path):
    g = make_graph(wn, n=3)
    g.add_sources([FakeSource("s1", {DOG: 3})], include_ancestors=False)
    a = FakeVLM("A", 0.0, wn)
    label_nodes(a, g, [DOG], cache_dir=tmp_path)
    label_nodes(a, g, [DOG], cache_dir=tmp_path)
    assert a.images_encoded == 3                                       # second call read the cache
    files = list((tmp_path / "mll" / "image_features").rglob("*.npy"))
    assert len(files) == 1 and files[0].name == "A.npy"
    # the cache grows image by image: a new node encodes only its own images
    g.add_sources([FakeSource("s2", {TABBY: 2})], include_ancestors=False)
    label_nodes(a, g, [DOG, TABBY], cache_dir=tmp_path)
    assert a.images_encoded == 5
    assert np.load(files[0]).shape[0] == 5
