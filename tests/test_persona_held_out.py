"""The persona picker's facts: which demo personas the training crowd never saw, and the default."""

from __future__ import annotations

from hyre_engine.data import read_preferences
from hyre_engine.demo import DEMO_PRESENTER_PERSONA, PAIRS_FILE, load_personas
from hyre_engine.profiles import PersonaInfo, default_persona, pool_personas
from hyre_engine.store import Store


def test_pool_personas_mark_the_held_out_ones(tmp_path):
    frame = read_preferences(PAIRS_FILE)
    frame = frame[frame["prompt_id"] == frame["prompt_id"].iloc[0]].reset_index(drop=True)
    with Store(tmp_path / "p.duckdb") as store:
        pool_id = store.add_pool("demo", frame, source="tests")
        personas = pool_personas(store, pool_id)
    expected = {p.id: not p.in_crowd for p in load_personas()}
    assert {p.id: p.held_out for p in personas} == expected
    assert any(expected.values()) and not all(expected.values())
    chosen = default_persona(personas)
    assert chosen is not None and chosen.held_out and chosen.id == DEMO_PRESENTER_PERSONA
    assert expected[DEMO_PRESENTER_PERSONA], "the presenter persona must be one the crowd never saw"


def test_default_persona_falls_back_to_the_first_held_out_one():
    people = [PersonaInfo("a", "A", ""), PersonaInfo("b", "B", "", held_out=True),
              PersonaInfo("c", "C", "", held_out=True)]
    assert default_persona(people, preferred="c").id == "c"
    assert default_persona(people, preferred="a").id == "b"  # in the crowd: not a demo default
    assert default_persona(people, preferred="missing").id == "b"


def test_default_persona_without_held_out_ones():
    crowd = [PersonaInfo("a", "A", ""), PersonaInfo("b", "B", "")]
    assert default_persona(crowd) == crowd[0]
    assert default_persona([]) is None
