"""TQA task: SQuAD reader / scoring, the WordNet QA builder, span fine-tuning, features, registration,
and one end-to-end evaluation through the task registry (tiny random-weight models, no downloads)."""
import dataclasses
import json

import numpy as np
import pytest

from mll.wordnet import Synset
from tasks._tqa_data import (QAExample, build_wordnet_qa, exact_match, f1_score, qa_fingerprint, read_squad_json,
                             squad_scores, write_squad_json)


# ------------------------------------------------------------------------------------------------
# SQuAD JSON and scoring
# ------------------------------------------------------------------------------------------------
def _squad_doc(version="1.1"):
    ctx = "The cat sat on the mat. Paris is the capital of France."
    qas = [{"id": "q1", "question": "Where did the cat sit?", "answers": [{"text": "on the mat", "answer_start": 12}]},
           {"id": "q2", "question": "What is the capital of France?",
            "answers": [{"text": "Paris", "answer_start": 24}, {"text": "Paris", "answer_start": 24}]}]
    if version == "2.0":
        qas.append({"id": "q3", "question": "What is the capital of Spain?", "answers": [], "is_impossible": True})
    return {"version": version, "data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": qas}]}]}


def test_read_squad_v1_and_v2(tmp_path):
    p1, p2 = tmp_path / "v1.json", tmp_path / "v2.json"
    p1.write_text(json.dumps(_squad_doc("1.1")))
    p2.write_text(json.dumps(_squad_doc("2.0")))
    ex = read_squad_json(p1)
    assert [e.answer for e in ex] == ["on the mat", "Paris"]
    assert ex[0].context[ex[0].answer_start:ex[0].answer_end] == "on the mat"
    assert [e.id for e in read_squad_json(p2)] == ["q1", "q2"]          # the unanswerable one is dropped
    with pytest.raises(ValueError, match="q3"):
        read_squad_json(p2, keep_unanswerable=True)


def test_read_squad_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        read_squad_json(tmp_path / "nowhere.json")
    doc = _squad_doc()
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="q1.*not at character 3"):
        read_squad_json(bad)


def test_write_then_read_roundtrip(tmp_path):
    ex = [QAExample("a", "Q?", "alpha beta gamma", "beta", 6), QAExample("b", "R?", "x y", "y", 2)]
    path = write_squad_json(ex, tmp_path / "s.json", recipe={"k": 1})
    back = read_squad_json(path)
    assert back == ex and qa_fingerprint(back) == qa_fingerprint(ex)
    assert json.loads(path.read_text())["recipe"] == {"k": 1}


def test_squad_normalisation_f1_em():
    assert exact_match("The  Mat!", "mat") == 1.0
    assert exact_match("a mat", "the rug") == 0.0
    assert f1_score("on the red mat", "on the mat") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert f1_score("dog", "cat") == 0.0
    assert squad_scores(["mat", "x"], ["the mat", "y"]) == {"f1": 50.0, "exact_match": 50.0}
    with pytest.raises(ValueError, match="as many predictions"):
        squad_scores(["a"], ["a", "b"])


# ------------------------------------------------------------------------------------------------
# WordNet QA builder on a small synthetic noun hierarchy (same interface as mll.wordnet.WordNet)
# ------------------------------------------------------------------------------------------------
class _FakeWordNet:
    """root -> 8 groups -> 6 parents each -> 5 leaves each; every name and definition distinct."""

    def __init__(self):
        s = {}
        words = iter(f"w{chr(97 + i // 676)}{chr(97 + i // 26 % 26)}{chr(97 + i % 26)}" for i in range(26 ** 3))

        def add(wnid, name, hyper, hypos, d):
            s[wnid] = Synset(wnid, (name,), d, tuple(hyper), tuple(hypos))

        groups = [f"n1{g:07d}" for g in range(8)]
        add("n00000001", "thing", (), groups, "anything at all that one can name")
        n = 0
        for gi, g in enumerate(groups):
            parents = [f"n2{gi:03d}{p:04d}" for p in range(6)]
            add(g, f"group {next(words)}", ("n00000001",), parents, f"a broad class of objects number {gi}")
            for pi, p in enumerate(parents):
                leaves = [f"n3{gi:02d}{pi:02d}{k:03d}" for k in range(5)]
                add(p, f"kind {next(words)}", (g,), leaves, f"a middle sort of object labelled {gi} {pi}")
                for k, leaf in enumerate(leaves):
                    n += 1
                    add(leaf, f"item {next(words)}", (p,), (), f"a small {next(words)} object used for {next(words)} work")
        self._s = s

    def wnids(self):
        return list(self._s)

    def __getitem__(self, w):
        return self._s[w]


@pytest.fixture(scope="module")
def fake_wn():
    return _FakeWordNet()


def test_wordnet_qa_spans_unique_disjoint_and_seeded(fake_wn):
    train, test = build_wordnet_qa(fake_wn, n_train=60, n_test=20, context_size=3, random_state=0)
    assert len(train) == 60 and len(test) == 20
    for ex in (*train, *test):
        assert ex.context[ex.answer_start:ex.answer_end] == ex.answer
        assert ex.context.lower().count(ex.answer.lower()) == 1          # the answer occurs once
        assert ex.context.count(".") >= 3                                 # three sentences
        assert ex.answer not in ex.question
    synsets = lambda exs: {e.title.split(":")[0] for e in exs}
    assert len(synsets(train)) == 60                                     # each synset asked once
    # disjoint pools: no test synset's sentence appears in a training context
    test_sentences = {e.context[:e.context.index(".")] for e in test}
    assert not any(s in e.context for s in test_sentences for e in train)
    assert {e.title.split(":")[1] for e in train} == {"definition_to_name", "name_to_hypernym", "name_to_definition"}
    again = build_wordnet_qa(fake_wn, n_train=60, n_test=20, context_size=3, random_state=0)
    other = build_wordnet_qa(fake_wn, n_train=60, n_test=20, context_size=3, random_state=1)
    assert qa_fingerprint(again[0]) == qa_fingerprint(train)
    assert qa_fingerprint(other[0]) != qa_fingerprint(train)


def test_wordnet_qa_too_small_pool_fails_clearly(fake_wn):
    with pytest.raises(ValueError, match="test pool"):
        build_wordnet_qa(fake_wn, n_train=10, n_test=500, random_state=0)


# ------------------------------------------------------------------------------------------------
# Models: tiny random BERT with the packaged MiniLM tokenizer
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel
    from tasks._tqa_models import minilm_folder
    tok = AutoTokenizer.from_pretrained(str(minilm_folder()), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=256)
    return tok, BertModel(cfg).eval()     # as from_pretrained returns it: no dropout unless a trainer asks


def test_encode_qa_token_span_decodes_to_the_answer(tiny, fake_wn):
    from tasks._tqa_finetune import encode_qa
    tok, _ = tiny
    train, _ = build_wordnet_qa(fake_wn, n_train=20, n_test=5, random_state=0)
    enc = encode_qa(tok, train, max_length=128)
    for i, ex in enumerate(train):
        s, e = int(enc["start"][i]), int(enc["end"][i])
        assert 0 < s <= e and enc["context_mask"][i, s] and enc["context_mask"][i, e]
        off = enc["offsets"][i]
        assert ex.context[int(off[s, 0]):int(off[e, 1])] == ex.answer
    short = encode_qa(tok, train[:6], max_length=40)                      # answers cut off -> position 0
    assert int((short["start"] == 0).sum()) >= 1


def test_pair_features_ignore_padding(tiny):
    from tasks._tqa_models import pair_features
    tok, model = tiny
    q, c = ["What is it?", "Who?"], ["A short context.", "A much longer context with many more words in it here."]
    both = pair_features(tok, model, q, c, batch_size=2)
    alone = pair_features(tok, model, q[:1], c[:1], batch_size=1)
    assert both.shape == (2, 32) and both.dtype == np.float32
    np.testing.assert_allclose(both[0], alone[0], atol=1e-5)


def test_span_finetune_learns_and_resumes(tiny, fake_wn, tmp_path, monkeypatch):
    import copy
    from tasks import _tqa_finetune as ft
    tok, model = tiny
    train, test = build_wordnet_qa(fake_wn, n_train=48, n_test=12, random_state=0)
    cfg = ft.SpanFinetuneConfig(lr=3e-3, epochs=3, batch_size=16, max_length=96)
    rec = ft.finetune_span(copy.deepcopy(model), tok, train, test, cfg, progress=False)
    assert 0.0 <= rec["exact_match"] <= rec["f1"] <= 100.0 and rec["steps"] == 9 and rec["truncated_test"] == 0
    preds = ft.predict_spans(ft.SpanModel(copy.deepcopy(model)), ft.encode_qa(tok, test, 96), test, max_answer_tokens=8)
    assert all(p in ex.context for p, ex in zip(preds, test))

    # resumable: a finished candidate is not trained again; another protocol is refused
    from tasks import _tqa_models
    monkeypatch.setitem(_tqa_models.TQA_CANDIDATES._entries, "tiny_test",
                        _tqa_models.TQACandidate("tiny_test", "bert", "random", lambda w: (tok, copy.deepcopy(model)),
                                                 None, True))
    part = tmp_path / "p.json"
    out = ft.run_candidates(["tiny_test"], "fake", train, test, cfg, part, data_fingerprint="x", progress=False,
                            log=lambda m: None)
    monkeypatch.setattr(ft, "finetune_span", lambda *a, **k: pytest.fail("re-trained a finished candidate"))
    assert ft.run_candidates(["tiny_test"], "fake", train, test, cfg, part, data_fingerprint="x",
                             log=lambda m: None) == out
    with pytest.raises(ValueError, match="another protocol"):
        ft.run_candidates(["tiny_test"], "fake", train, test, cfg, part, data_fingerprint="y", log=lambda m: None)


def test_lp_ft_starts_from_the_probe_head_and_records_it(tiny, fake_wn, tmp_path, monkeypatch):
    """init='probe': the head trained on the frozen states is the fine-tuning's starting head (with
    lr ~ 0 the fine-tuned scores equal the probe's); the probe's scores are kept; bad configs fail."""
    import copy
    from tasks import _tqa_finetune as ft, _tqa_models
    tok, model = tiny
    monkeypatch.setitem(_tqa_models.TQA_CANDIDATES._entries, "tiny_lp",
                        _tqa_models.TQACandidate("tiny_lp", "bert", "random", lambda w: (tok, copy.deepcopy(model)),
                                                 None, True))
    train, test = build_wordnet_qa(fake_wn, n_train=48, n_test=12, random_state=0)
    probe = ft.HeadConfig(epochs=3, batch_size=16, max_length=96)
    still = ft.SpanFinetuneConfig(lr=1e-12, epochs=1, batch_size=16, max_length=96, head="bilinear", init="probe")
    out = ft.run_candidates(["tiny_lp"], "fake", train, test, still, tmp_path / "p.json", data_fingerprint="x",
                            probe=probe, progress=False, log=lambda m: None)["tiny_lp"]
    assert out["probe"]["f1"] == pytest.approx(out["f1"], abs=1e-6) and out["steps"] == 3
    with pytest.raises(ValueError, match="same head kind"):
        ft.run_candidates(["tiny_lp"], "fake", train, test, dataclasses.replace(still, head="linear"),
                          tmp_path / "q.json", data_fingerprint="x", probe=probe, log=lambda m: None)
    with pytest.raises(ValueError, match="init must be"):
        ft.run_candidates(["tiny_lp"], "fake", train, test, dataclasses.replace(still, init="warm"),
                          tmp_path / "r.json", data_fingerprint="x", probe=probe, log=lambda m: None)


def test_frozen_protocol_one_pass_per_base_matches_truncation(tiny, fake_wn, tmp_path, monkeypatch):
    """Candidates of one base share a forward pass; layer l's states are the truncated model's output;
    the question-conditioned head trains and scores; finished runs are reused."""
    import copy
    import torch
    from tasks import _tqa_finetune as ft, _tqa_models
    tok, model = tiny
    loads = []

    def load_base(w):
        loads.append(1)
        return tok, copy.deepcopy(model)

    for l in (1, 2):
        monkeypatch.setitem(_tqa_models.TQA_CANDIDATES._entries, f"tinyf_l{l}",
                            _tqa_models.TQACandidate(f"tinyf_l{l}", "bert", "random", load_base, l, True, base="tinyf"))
    train, test = build_wordnet_qa(fake_wn, n_train=48, n_test=12, random_state=0)
    enc = ft.encode_qa(tok, test, 96)
    states = ft.layer_token_states(tok, copy.deepcopy(model), enc, [1])[1]
    _, cut = _tqa_models.get_candidate("tinyf_l1").load(None)
    cut.eval()
    with torch.no_grad():
        direct = cut(**enc["inputs"]).last_hidden_state
    np.testing.assert_allclose(states.float().numpy(), direct.numpy(), atol=2e-2)   # float16 storage
    loads.clear()
    cfg = ft.HeadConfig(epochs=3, batch_size=16, max_length=96)
    out = ft.run_frozen_candidates(["tinyf_l1", "tinyf_l2"], "fake", train, test, cfg, tmp_path / "p.json",
                                   data_fingerprint="x", progress=False, log=lambda m: None)
    assert len(loads) == 1 and [out[c]["layer"] for c in ("tinyf_l1", "tinyf_l2")] == [1, 2]
    assert all(0.0 <= r["exact_match"] <= r["f1"] <= 100.0 for r in out.values())
    assert ft.run_frozen_candidates(["tinyf_l1", "tinyf_l2"], "fake", train, test, cfg, tmp_path / "p.json",
                                    data_fingerprint="x", progress=False, log=lambda m: None) == out
    assert len(loads) == 1
    with pytest.raises(ValueError, match="unknown span head"):
        ft._make_head(8, "mlp")


# ------------------------------------------------------------------------------------------------
# Registration, loaders, end to end
# ------------------------------------------------------------------------------------------------
def test_candidates_and_missing_weights(tmp_path):
    from tasks._tqa_models import TQA_CANDIDATES, get_candidate, list_candidates
    assert len(list_candidates(offline=True)) >= 6 and len(list_candidates(offline=False)) >= 6
    assert {TQA_CANDIDATES[n].family for n in list_candidates(offline=False)} >= {"bert", "roberta", "albert",
                                                                                  "deberta-v2", "distilbert"}
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "tqa" / "roberta_base_squad2")):
        get_candidate("roberta_base_squad2").load(tmp_path)


def test_task_registered_and_squad_loader(tmp_path):
    import data
    from data.registry import DatasetNotFoundError
    from evaluation.runner import TASKS
    from tasks import get_task_plugin, tqa  # noqa: F401
    spec = TASKS["tqa"]
    assert spec.label_source == "captions" and spec.default_group == "offline_tqa"
    assert get_task_plugin("tqa").evaluate_script == "evaluate_metric_caption.py"
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "squad")):
        data.get_dataset("squad_v1", split="train", root=tmp_path)
    (tmp_path / "squad").mkdir()
    for f in ("train-v1.1.json", "dev-v1.1.json"):
        (tmp_path / "squad" / f).write_text(json.dumps(_squad_doc()))
    ds = data.get_dataset("squad_v1", split="dev", root=tmp_path)
    assert len(ds) == 2 and ds.answers == ["on the mat", "Paris"] and len(ds.fingerprint) == 64


def test_offline_ground_truth_file_loads():
    from data.ground_truth import ground_truth_info, load_ground_truth
    table = load_ground_truth("offline_tqa")
    assert list(table) == ["wordnet_qa"] and len(table["wordnet_qa"]) >= 2
    assert all(0.0 <= v <= 100.0 for v in table["wordnet_qa"].values())
    assert ground_truth_info("offline_tqa")["dataset_measure"] == {"wordnet_qa": "F1"}


def test_extract_and_evaluate_end_to_end(tiny, tmp_path, monkeypatch):
    """Features + answer embeddings into a cache, then EMMS / LogME / TransRate through the tqa task."""
    import copy
    import data
    from evaluation.runner import evaluate
    from tasks import _tqa_models, tqa
    tok, model = tiny
    nets = [copy.deepcopy(model), _tqa_models._truncate(copy.deepcopy(model), 1), copy.deepcopy(model)]
    for p in nets[2].parameters():
        p.data.mul_(0.5)
    for k, net in enumerate(nets):
        monkeypatch.setitem(_tqa_models.TQA_CANDIDATES._entries, f"tiny{k}",
                            _tqa_models.TQACandidate(f"tiny{k}", "bert", "random", lambda w, net=net: (tok, net),
                                                     None, True))
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    paragraphs = []
    for i in range(40):
        ans = " ".join(rng.choice(words, 2))
        ctx = f"filler text {i}. the answer is {ans} here."
        paragraphs.append({"context": ctx, "qas": [{"id": f"q{i}", "question": f"what is item {i}?",
                                                    "answers": [{"text": ans, "answer_start": ctx.index(ans)}]}]})
    root = tmp_path / "data"
    (root / "squad").mkdir(parents=True)
    for f in ("train-v1.1.json", "dev-v1.1.json"):
        (root / "squad" / f).write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))
    cache = tmp_path / "cache"
    status = tqa.extract(["tiny0", "tiny1", "tiny2"], cache_dir=cache, dataset="squad_v1", n=None,
                         encoders=("minilm",), data_root=root, progress=False, log=lambda m: None)
    assert status == {"tiny0": "extracted", "tiny1": "extracted", "tiny2": "extracted"}
    again = tqa.extract(["tiny0"], cache_dir=cache, dataset="squad_v1", n=None, encoders=("minilm",), data_root=root,
                        progress=False, log=lambda m: None)
    assert again == {"tiny0": "skipped"}
    x = np.load(cache / "features" / "squad_v1" / "tiny0.npy")
    assert x.shape == (40, 32)
    res = evaluate(cache, tmp_path / "res", datasets=["squad_v1"], models=["tiny0", "tiny1", "tiny2"],
                   metrics=["emms", "logme_flabel", "transrate_flabel"], encoders=("minilm",), task="tqa",
                   ground_truth={"squad_v1": {"tiny0": 3.0, "tiny1": 2.0, "tiny2": 1.0}}, progress=False)
    scores = res.datasets["squad_v1"].scores
    assert set(scores) == {"emms", "logme_flabel", "transrate_flabel"}
    assert all(np.isfinite(v) for s in scores.values() for v in s.values())
    assert len(data.get_dataset("squad_v1", split="train", root=root, n=5)) == 5
