"""WordNet 3.0 parsing (mll.wordnet) on the Debian wordnet-base files."""
import pytest

from mll.wordnet import WordNet, _definition, _parse_data_line, load_wordnet


@pytest.fixture(scope="module")
def wn():
    return load_wordnet()


def test_noun_synset_count(wn):
    assert len(wn) == 82115  # WordNet 3.0 noun synsets


def test_known_synset_dog(wn):
    dog = wn["n02084071"]
    assert dog.name == "dog"
    assert dog.lemmas[:3] == ("dog", "domestic dog", "Canis familiaris")
    assert dog.definition.startswith("a member of the genus Canis (probably descended from the common wolf)")
    assert '"' not in dog.definition  # the quoted example is not part of the definition
    assert dog.hypernyms == ("n02083346", "n01317541")  # canine, domestic animal
    assert wn["n02083346"].name == "canine"
    assert "n02085374" in dog.hyponyms  # toy dog
    assert dog.caption == "dog which is " + dog.definition


def test_tabby_and_lookup(wn):
    assert wn["n02123045"].definition == "a cat with a grey or tawny coat mottled with black"
    assert wn.lookup("dog")[0] == "n02084071"          # most frequent sense first
    assert wn.lookup("T-shirt") == ("n03595614",)
    assert wn.lookup("gym shoe") == ("n03472535",)     # spaces -> underscores
    assert wn.lookup("no such word xyz") == ()


def test_ancestors_reach_entity(wn):
    anc = wn.ancestors("n02084071")
    assert anc[0] in ("n02083346", "n01317541")
    assert "n00001740" in anc  # entity
    assert "n02084071" in wn.descendants("n02083346")


def test_neighbourhood_excludes_lineage_and_is_deterministic(wn):
    one = "n13742573"
    nb = wn.neighbourhood(one, 12, random_state=3)
    assert len(nb) == 12 == len(set(nb))
    lineage = set(wn.ancestors(one)) | set(wn.descendants(one)) | {one}
    assert not lineage & set(nb)
    assert nb == wn.neighbourhood(one, 12, random_state=3)
    # siblings (the other hyponyms of "digit") come first
    assert wn["n13742573"].hypernyms == ("n13741022",) and wn["n13741022"].name == "digit"
    siblings = set(wn["n13741022"].hyponyms) - {one}
    assert set(wn.neighbourhood(one, len(siblings))) == siblings
    assert wn.lookup("two")[0] in siblings


def test_edges_among_members(wn):
    assert wn.edges(["n02084071", "n02083346", "n02123045"]) == [("n02083346", "n02084071")]


def test_parse_line_and_definition():
    line = ("02123045 05 n 02 tabby 1 tabby_cat 0 001 @ 02121808 n 0000 | a cat with a grey or tawny coat "
            "mottled with black  \n")
    s = _parse_data_line(line)
    assert (s.wnid, s.lemmas, s.hypernyms, s.hyponyms) == ("n02123045", ("tabby", "tabby cat"), ("n02121808",), ())
    assert _definition('a thing; "an example"; "another"') == "a thing"


def test_missing_folder_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        WordNet(tmp_path)
    with pytest.raises(KeyError, match="n99999999"):
        load_wordnet()["n99999999"]
