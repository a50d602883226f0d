import pytest

from analysis.backends.roles import ChatResult, ToolCall
from analysis.cryoet.questions import EXAMPLES, find_classes, parse_question, plan_question, to_angstrom

CASES = [
    (
        "how many ribosomes are within 50 nm of particle 12?",
        "neighbors",
        {"radius_angstrom": 500.0, "particle_id": 12, "class_name": "ribosome"},
    ),
    ("what is near 300 200 80?", "neighbors", {"radius_angstrom": 500.0, "point": [300.0, 200.0, 80.0]}),
    ("what is near particle 4 within 80 nm?", "neighbors", {"radius_angstrom": 800.0, "particle_id": 4}),
    ("neighbors of particle 4 within 0.08 µm", "neighbors", {"radius_angstrom": 800.0, "particle_id": 4}),
    ("What's around (300, 200, 80)?", "neighbors", {"radius_angstrom": 500.0, "point": [300.0, 200.0, 80.0]}),
    ("neighbours of particle #7", "neighbors", {"radius_angstrom": 500.0, "particle_id": 7}),
    (
        "which VLPs are within 0.2 µm of point 10 20 30",
        "neighbors",
        {"radius_angstrom": 2000.0, "point": [10.0, 20.0, 30.0], "class_name": "virus-like-particle"},
    ),
    (
        "any ferritin within 400 Å of particle 3?",
        "neighbors",
        {"radius_angstrom": 400.0, "particle_id": 3, "class_name": "apo-ferritin"},
    ),
    ("are the apo-ferritins clustered?", "nearest_neighbor_distances", {"class_a": "apo-ferritin"}),
    ("Is thyroglobulin randomly distributed?", "nearest_neighbor_distances", {"class_a": "thyroglobulin"}),
    (
        "are ribosomes clustered around VLPs?",
        "nearest_neighbor_distances",
        {"class_a": "ribosome", "class_b": "virus-like-particle"},
    ),
    (
        "how far is each ribosome from the nearest ferritin?",
        "nearest_neighbor_distances",
        {"class_a": "ribosome", "class_b": "apo-ferritin"},
    ),
    (
        "are ribosomes near VLPs?",
        "nearest_neighbor_distances",
        {"class_a": "ribosome", "class_b": "virus-like-particle"},
    ),
    (
        "what is in the box 0 0 0 to 1000 1000 500?",
        "region_composition",
        {"shape": "box", "box_min": [0.0, 0.0, 0.0], "box_max": [1000.0, 1000.0, 500.0]},
    ),
    (
        "count particles in the box from 500 500 100 to 0 0 0",
        "region_composition",
        {"shape": "box", "box_min": [0.0, 0.0, 0.0], "box_max": [500.0, 500.0, 100.0]},
    ),
    (
        "what is in a sphere of radius 20 nm around 100 200 300?",
        "region_composition",
        {"shape": "sphere", "center": [100.0, 200.0, 300.0], "radius_angstrom": 200.0},
    ),
    ("what is the composition of the tomogram?", "region_composition", {"shape": "tomogram"}),
    ("how many beta-galactosidases are there?", "region_composition", {"shape": "tomogram"}),
    ("polysomes?", "clusters", {"class_name": "ribosome", "link_distance_angstrom": 300.0, "min_size": 3}),
    (
        "find polysomes within 25 nm",
        "clusters",
        {"class_name": "ribosome", "link_distance_angstrom": 250.0, "min_size": 3},
    ),
    (
        "clusters of thyroglobulin within 40 nm",
        "clusters",
        {"class_name": "thyroglobulin", "link_distance_angstrom": 400.0},
    ),
    ("show clusters of beta-amylase", "clusters", {"class_name": "beta-amylase", "link_distance_angstrom": 300.0}),
]


@pytest.mark.parametrize(("question", "tool", "params"), CASES)
def test_parse_question_phrasings(question, tool, params):
    plan = parse_question(question)
    assert plan.tool == tool
    assert plan.params == params
    assert plan.planner == "grammar"


def test_every_example_is_answerable():
    for example in EXAMPLES:
        assert parse_question(example).tool is not None, example


@pytest.mark.parametrize("question", ["what colour is the sky?", "", "tell me about lipids"])
def test_unanswerable_question_lists_examples(question):
    plan = parse_question(question)
    assert plan.tool is None
    assert "ribosome" in plan.reply
    assert plan.examples == EXAMPLES
    assert plan.to_dict()["examples"] == EXAMPLES


def test_find_classes_synonyms_and_plurals():
    assert find_classes("VLPs, Ribosomes and apoferritin") == ["virus-like-particle", "ribosome", "apo-ferritin"]
    assert find_classes("β-amylase and beta-gal") == ["beta-amylase", "beta-galactosidase"]


def test_to_angstrom_units():
    assert to_angstrom("5", None) == 5.0
    assert to_angstrom("5", "nm") == 50.0
    assert to_angstrom("5", "nanometres") == 50.0
    assert to_angstrom("0.5", "µm") == 5000.0
    assert to_angstrom("0.5", "microns") == 5000.0
    assert to_angstrom("7", "Å") == 7.0
    assert to_angstrom("7", "angstroms") == 7.0


class FakeLanguageModel:
    """A test double for a chat model that returns one fixed result and records its input."""

    def __init__(self, result):
        self.result = result
        self.calls = []

    def chat(self, messages, tools=None, max_new_tokens=256, temperature=0.0):
        self.calls.append((messages, tools))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_plan_question_uses_model_tool_call():
    call = ToolCall(name="clusters", arguments={"class_name": "ribosome", "link_distance_angstrom": 250.0})
    model = FakeLanguageModel(ChatResult(text="", tool_calls=[call]))
    plan = plan_question("group the ribosomes please", language_model=model)
    assert plan.planner == "llm"
    assert plan.tool == "clusters"
    assert plan.params == {"class_name": "ribosome", "link_distance_angstrom": 250.0}
    messages, tools = model.calls[0]
    assert messages[-1]["content"] == "group the ribosomes please"
    assert {tool["function"]["name"] for tool in tools} == {
        "neighbors",
        "region_composition",
        "nearest_neighbor_distances",
        "clusters",
    }


def test_plan_question_accepts_json_string_arguments():
    call = ToolCall(name="region_composition", arguments='{"shape": "tomogram"}')
    plan = plan_question("composition?", language_model=FakeLanguageModel(ChatResult(text="", tool_calls=[call])))
    assert plan.planner == "llm"
    assert plan.params == {"shape": "tomogram"}


@pytest.mark.parametrize(
    "result",
    [
        ChatResult(text="", tool_calls=[ToolCall(name="teleport", arguments={})]),
        ChatResult(text="", tool_calls=[ToolCall(name="clusters", arguments={"class_name": "ribosome"})]),
        ChatResult(
            text="",
            tool_calls=[ToolCall(name="clusters", arguments={"class_name": "lipid", "link_distance_angstrom": 5})],
        ),
        ChatResult(text="I think they are clustered.", tool_calls=[]),
        RuntimeError("connection refused"),
    ],
)
def test_plan_question_falls_back_to_grammar(result):
    plan = plan_question("are the apo-ferritins clustered?", language_model=FakeLanguageModel(result))
    assert plan.planner == "grammar"
    assert plan.tool == "nearest_neighbor_distances"
    assert plan.params == {"class_a": "apo-ferritin"}
