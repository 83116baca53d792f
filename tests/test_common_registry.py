"""The generic registry behind every named registry of the project."""
import pytest

from common import Registry


def test_register_lookup_and_mapping_behaviour():
    reg = Registry("widget")

    @reg.register("b")
    def make_b():
        return "B"

    assert reg.add("a", len) is len
    assert reg["b"] is make_b and make_b() == "B"
    assert sorted(reg) == ["a", "b"] and len(reg) == 2 and "a" in reg and "z" not in reg
    assert dict(reg.items()) == {"b": make_b, "a": len}
    assert reg.get("z") is None                         # Mapping.get keeps its meaning
    with pytest.raises(KeyError, match="unknown widget 'z'; available: a, b"):
        reg["z"]


def test_duplicates_and_bad_names_are_refused_and_the_mapping_is_read_only():
    reg = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' registered twice"):
        reg.register("a")(2)
    assert reg["a"] == 1
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("")
    with pytest.raises(ValueError, match="non-empty string"):
        reg.add(3, "x")
    with pytest.raises(TypeError):
        reg["b"] = 2                                    # no item assignment: register instead
    with pytest.raises(ValueError, match="kind"):
        Registry("")


def test_project_registries_use_it():
    from finetuning.engine import OPTIMIZERS
    from Label_embedding import TEXT_ENCODERS
    from mll.baselines import LOVM_METHODS, REGRESSORS
    for reg in (OPTIMIZERS, TEXT_ENCODERS, LOVM_METHODS, REGRESSORS):
        assert isinstance(reg, Registry) and len(reg) >= 2
    with pytest.raises(KeyError, match="unknown text encoder 'nope'; available: .*minilm"):
        TEXT_ENCODERS["nope"]
