"""Turn a plain-language question about a tomogram into one query tool call.

The grammar is a set of regular expressions over a small vocabulary: the class names with their
plurals and common synonyms ("ribosomes", "ferritin", "VLPs"), distances with units (Å, nm, µm;
a bare number is angstroms), points as three numbers x, y, z in angstroms, and particle ids.
``plan_question`` can first ask a language model to pick a tool from the tools' JSON schemas, and
falls back to the grammar when the model fails or picks an invalid call.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field

from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.query import QueryError, build_params, tool_specs

logger = logging.getLogger(__name__)

# Radius used when a question asks what is "near" a point or particle without giving a distance.
DEFAULT_NEAR_RADIUS_ANGSTROM = 500.0
# "Polysomes" means ribosome clusters of 3 or more linked within 30 nm. The 30 nm is a rough default
# for ribosomes that share one mRNA, and a question can set its own with "within".
POLYSOME_LINK_ANGSTROM = 300.0
# Linking distance for "clusters of X" without a distance.
DEFAULT_LINK_ANGSTROM = 300.0

# Each class name with the words that name it. Matching is case-insensitive and allows a plural "s".
CLASS_SYNONYMS = {
    "apo-ferritin": ["apo-ferritin", "apo ferritin", "apoferritin", "ferritin"],
    "beta-amylase": ["beta-amylase", "beta amylase", "β-amylase", "amylase"],
    "beta-galactosidase": ["beta-galactosidase", "beta galactosidase", "β-galactosidase", "galactosidase", "beta-gal"],
    "ribosome": ["ribosome"],
    "thyroglobulin": ["thyroglobulin"],
    "virus-like-particle": ["virus-like-particle", "virus-like particle", "virus like particle", "vlp"],
}

EXAMPLES = [
    "how many ribosomes are within 50 nm of particle 12?",
    "what is near 300 200 80?",
    "are the apo-ferritins clustered?",
    "what is in the box 0 0 0 to 1000 1000 500?",
    "what is within 100 nm of 3000 3000 900?",
    "how far is each ribosome from the nearest ferritin?",
    "clusters of thyroglobulin within 40 nm",
    "polysomes?",
    "what is the composition of the tomogram?",
]

UNIT_FACTORS = {"å": 1.0, "angstrom": 1.0, "nm": 10.0, "nanometer": 10.0, "nanometre": 10.0}
UNIT_FACTORS.update({"µm": 1e4, "μm": 1e4, "um": 1e4, "micron": 1e4, "micrometer": 1e4, "micrometre": 1e4})

NUMBER = r"[-+]?\d+(?:\.\d+)?"
UNIT = r"(?:å|angstroms?|nm|nanomet(?:er|re)s?|µm|μm|um|microns?|micromet(?:er|re)s?)"
DISTANCE = rf"(?P<distance>{NUMBER})\s*(?P<unit>{UNIT})?"
POINT = rf"\(?\s*(?P<x>{NUMBER})\s*,?\s+(?P<y>{NUMBER})\s*,?\s+(?P<z>{NUMBER})\s*\)?"
PARTICLE = r"particle\s*(?:id\s*)?#?\s*(?P<particle>\d+)"


@dataclass
class Plan:
    """One tool call for a question, or a reply that lists what can be asked when none fits."""

    question: str
    tool: str | None
    params: dict = field(default_factory=dict)
    planner: str = "grammar"
    reply: str = ""
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _class_pattern() -> tuple[re.Pattern, dict[str, str]]:
    lookup = {}
    for name, words in CLASS_SYNONYMS.items():
        for word in words:
            lookup[word] = name
    alternatives = sorted(lookup, key=len, reverse=True)
    joined = "|".join(re.escape(word) for word in alternatives)
    return re.compile(rf"\b(?P<word>{joined})(?:e?s)?\b", re.IGNORECASE), lookup


CLASS_PATTERN, CLASS_LOOKUP = _class_pattern()


def find_classes(text: str) -> list[str]:
    """Return the class names mentioned in ``text``, in order of appearance."""
    return [CLASS_LOOKUP[match.group("word").lower()] for match in CLASS_PATTERN.finditer(text)]


def to_angstrom(value: str, unit: str | None) -> float:
    """Convert a number and an optional unit to angstroms; a bare number is angstroms."""
    if not unit:
        return float(value)
    key = unit.lower()
    if key not in UNIT_FACTORS and key.endswith("s"):
        key = key[:-1]
    return float(value) * UNIT_FACTORS[key]


def _point(match: re.Match) -> list[float]:
    return [float(match.group("x")), float(match.group("y")), float(match.group("z"))]


def _search(pattern: str, text: str) -> re.Match | None:
    return re.search(pattern, text, re.IGNORECASE)


def _first_class(text: str) -> str | None:
    found = find_classes(text)
    return found[0] if found else None


def parse_question(question: str) -> Plan:
    """Map a question to one tool call with the grammar, or return a reply listing what it can answer."""
    text = " ".join(question.strip().split())
    for rule in RULES:
        call = rule(text)
        if call is not None:
            tool, params = call
            build_params(tool, params)
            return Plan(question=question, tool=tool, params=params)
    return unanswerable(question)


def unanswerable(question: str) -> Plan:
    reply = (
        "I could not map that question to a query. I can list particles near a point or a particle, "
        "count each class in a box, a sphere or the whole tomogram, measure nearest-neighbor distances "
        "between classes and test whether a class is clustered, and find clusters such as polysomes. "
        f"Classes: {', '.join(CLASS_NAMES)}. Distances take Å, nm or µm, and a bare number is Å."
    )
    return Plan(question=question, tool=None, reply=reply, examples=list(EXAMPLES))


# ---------------------------------------------------------------- grammar rules
# Each rule returns (tool name, parameters) or None. ``RULES`` tries them in order, most specific first.


def _rule_polysomes(text: str):
    if not _search(r"\bpolysomes?\b", text):
        return None
    distance = _search(rf"within\s+{DISTANCE}", text)
    link = to_angstrom(distance["distance"], distance["unit"]) if distance else POLYSOME_LINK_ANGSTROM
    return "clusters", {"class_name": "ribosome", "link_distance_angstrom": link, "min_size": 3}


def _rule_clusters(text: str):
    if not _search(r"\b(clusters|clumps|groups)\s+of\b|\bcluster\s+the\b|\bfind\s+clusters\b", text):
        return None
    class_name = _first_class(text)
    if class_name is None:
        return None
    distance = _search(rf"(?:within|closer than|linked at|at)\s+{DISTANCE}", text)
    link = to_angstrom(distance["distance"], distance["unit"]) if distance else DEFAULT_LINK_ANGSTROM
    return "clusters", {"class_name": class_name, "link_distance_angstrom": link}


def _rule_spatial_pattern(text: str):
    word = r"clustered|clumped|aggregated|grouped|randomly distributed|random|dispersed|spread out|evenly spaced"
    if not _search(rf"\b({word})\b", text):
        return None
    classes = find_classes(text)
    if not classes:
        return None
    params = {"class_a": classes[0]}
    if len(classes) > 1 and classes[1] != classes[0]:
        params["class_b"] = classes[1]
    return "nearest_neighbor_distances", params


def _rule_nearest_distance(text: str):
    classes = find_classes(text)
    if not classes:
        return None
    asks_distance = _search(r"\b(nearest|closest)\b|\bhow far\b|\bdistances?\b", text)
    # "Are ribosomes near VLPs?" compares two classes, so it is a nearest-neighbor question too.
    asks_class_pair = len(set(classes)) > 1 and _search(r"\b(near|close to|next to|around)\b", text)
    if not (asks_distance or asks_class_pair):
        return None
    params = {"class_a": classes[0]}
    if len(classes) > 1:
        params["class_b"] = classes[1]
    return "nearest_neighbor_distances", params


def _rule_box(text: str):
    match = _search(rf"\bbox\b.*?(?:from\s+)?{POINT}\s*(?:to|and|-)\s*{POINT.replace('?P<', '?P<b')}", text)
    if not match:
        return None
    low = _point(match)
    high = [float(match.group("bx")), float(match.group("by")), float(match.group("bz"))]
    box_min = [min(a, b) for a, b in zip(low, high, strict=True)]
    box_max = [max(a, b) for a, b in zip(low, high, strict=True)]
    return "region_composition", {"shape": "box", "box_min": box_min, "box_max": box_max}


def _rule_sphere(text: str):
    match = _search(
        rf"\bsphere\b.*?(?:radius\s+(?:of\s+)?)?{DISTANCE}.*?(?:around|at|centred at|centered at)\s+{POINT}", text
    )
    if not match:
        return None
    radius = to_angstrom(match["distance"], match["unit"])
    return "region_composition", {"shape": "sphere", "center": _point(match), "radius_angstrom": radius}


def _rule_within(text: str):
    match = _search(
        rf"\bwithin\s+{DISTANCE}\s+(?:of|from|around)\s+(?:the\s+)?(?:{PARTICLE}|(?:point\s+)?{POINT})", text
    )
    if not match:
        return None
    return "neighbors", _neighbors_params(text, match, to_angstrom(match["distance"], match["unit"]))


def _rule_near(text: str):
    match = _search(
        rf"\b(?:near|around|close to|next to|neighbou?rs of|surrounds?)\s+(?:the\s+)?(?:{PARTICLE}|(?:point\s+)?{POINT})",
        text,
    )
    if not match:
        return None
    # "What is near particle 4 within 80 nm?" gives its distance after the particle or point.
    distance = _search(rf"\b(?:within|closer than)\s+{DISTANCE}", text[match.end() :])
    radius = to_angstrom(distance["distance"], distance["unit"]) if distance else DEFAULT_NEAR_RADIUS_ANGSTROM
    return "neighbors", _neighbors_params(text, match, radius)


def _neighbors_params(text: str, match: re.Match, radius: float) -> dict:
    params: dict = {"radius_angstrom": radius}
    if match.group("particle") is not None:
        params["particle_id"] = int(match.group("particle"))
    else:
        params["point"] = _point(match)
    class_name = _first_class(text[: match.start()])
    if class_name is not None:
        params["class_name"] = class_name
    return params


def _rule_composition(text: str):
    if _search(r"\b(composition|how many|count|number of|density|densities|fraction|abundance|what is in)\b", text):
        return "region_composition", {"shape": "tomogram"}
    return None


RULES = [
    _rule_polysomes,
    _rule_clusters,
    _rule_spatial_pattern,
    _rule_box,
    _rule_sphere,
    _rule_within,
    _rule_near,
    _rule_nearest_distance,
    _rule_composition,
]


# ---------------------------------------------------------------- language model planner

SYSTEM_PROMPT = (
    "You answer questions about particles in a cryo-electron tomogram by calling exactly one tool. "
    "Positions and distances are in angstroms (1 nm = 10 Å, 1 µm = 10,000 Å). "
    f"Particle classes: {', '.join(CLASS_NAMES)}."
)


def plan_question(question: str, language_model=None) -> Plan:
    """Plan one tool call for ``question``.

    With a ``language_model`` (any object with ``chat(messages, tools)`` returning a ``ChatResult``),
    the model picks the tool first. Its call is used when it names a known tool with valid
    arguments. On any error, or with no tool call, the grammar plans the call instead.
    """
    if language_model is not None:
        try:
            plan = _plan_with_model(question, language_model)
        except Exception as error:  # noqa: BLE001  any model or validation failure falls back to the grammar
            logger.warning("Language model planning failed for question %r: %s", question, error)
        else:
            if plan is not None:
                return plan
    return parse_question(question)


def _plan_with_model(question: str, language_model) -> Plan | None:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    result = language_model.chat(messages, tools=tool_specs(CLASS_NAMES))
    if not result.tool_calls:
        logger.info("Language model returned no tool call for question %r", question)
        return None
    call = result.tool_calls[0]
    arguments = call.arguments
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    build_params(call.name, arguments)
    for key in ("class_name", "class_a", "class_b"):
        if arguments.get(key) is not None and arguments[key] not in CLASS_NAMES:
            raise QueryError(f"Unknown class {arguments[key]!r} from the language model.")
    return Plan(question=question, tool=call.name, params=dict(arguments), planner="llm")
