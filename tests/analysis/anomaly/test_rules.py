"""Each user rule on a generated clip, and rule validation."""

from __future__ import annotations

import pytest

from analysis.anomaly.facts import TrackFact
from analysis.anomaly.pipeline import observe
from analysis.anomaly.rules import RuleMonitor, Rules, Step, Zone
from analysis.anomaly.simulate import lab_rules

from .conftest import FPS


def hits_of(folder, name, scene):
    observation = observe(folder / f"{name}.mp4", lab_rules(), fps=FPS, max_side=160, background=scene.background)
    return observation.hits


def overlaps(hit, truth) -> bool:
    return hit.end_s >= truth.start_s and hit.start_s <= truth.end_s


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        ("restricted_zone", "restricted_zone"),
        ("fast_motion", "max_speed"),
        ("wrong_zone", "unattended"),
        ("spill", "new_static_region"),
        ("skipped_step", "protocol_step"),
    ],
)
def test_rule_fires_on_its_anomaly(lab_set, lab_scene, kind, rule):
    folder, truths = lab_set
    truth = truths[kind][0].anomalies[0]

    hits = [hit for hit in hits_of(folder, f"{kind}_00", lab_scene) if hit.rule == rule]

    assert hits, f"no {rule} hit"
    assert all(overlaps(hit, truth) for hit in hits), [(hit.start_s, hit.end_s) for hit in hits]


def test_no_rule_fires_on_normal_video(lab_set, lab_scene):
    folder, _ = lab_set
    assert hits_of(folder, "normal_02", lab_scene) == []


def fact(track_id, x, y, zones, speed=0.5, static_s=0.0, area=0.01, first_s=0.0):
    return TrackFact(
        track_id, "moving", x, y, 0.1, 0.1, area, speed, 0.0, 0.0, zones, 0.0, static_s, 0.0, first_s, (0, 0, 1, 1)
    )


def square(name, kind, x1, y1, x2, y2):
    return Zone(name, kind, [(x1, y1), (x2, y1), (x2, y2), (x1, y2)])


def protocol_rules():
    zones = [
        square("a", "storage", 0, 0, 0.3, 0.3),
        square("b", "work", 0.4, 0, 0.6, 0.3),
        square("c", "storage", 0.7, 0, 1, 0.3),
    ]
    return Rules(zones=zones, protocol=[Step("one", "a", "b"), Step("two", "b", "c"), Step("back", "c", "a")])


def visit(monitor, sequence):
    hits = []
    for time_s, zone in enumerate(sequence):
        hits += monitor.update(float(time_s), [fact(1, 0.5, 0.5, [zone])])
    return hits


def test_protocol_in_order_raises_nothing():
    assert visit(RuleMonitor(protocol_rules()), ["a", "b", "c", "a", "b", "c", "a"]) == []


def test_protocol_skipped_step():
    hits = visit(RuleMonitor(protocol_rules()), ["a", "b", "c", "a", "c", "a", "b"])

    assert len(hits) == 1
    assert hits[0].rule == "protocol_step"
    assert (hits[0].start_s, hits[0].end_s) == (3.0, 4.0)
    assert "expected 'one'" in hits[0].message


def test_protocol_out_of_order():
    hits = visit(RuleMonitor(protocol_rules()), ["a", "b", "c", "b"])

    assert [hit.rule for hit in hits] == ["protocol_step"]


def test_resting_object_ignored_by_protocol():
    monitor = RuleMonitor(protocol_rules())
    monitor.update(0.0, [fact(1, 0.1, 0.1, ["a"])])
    hits = monitor.update(1.0, [fact(2, 0.8, 0.1, ["c"], speed=0.0, static_s=3.0)])
    assert hits == []


def test_idle_equipment_flagged():
    rules = Rules(zones=[square("shaker", "equipment", 0.6, 0.6, 0.9, 0.9)], max_idle_s=2.0)
    monitor = RuleMonitor(rules)
    running = fact(1, 0.7, 0.7, ["shaker"], speed=0.3)
    elsewhere = fact(2, 0.2, 0.2, [], speed=0.3)

    early = [monitor.update(float(t), [running]) for t in range(3)]
    late = [monitor.update(float(t), [elsewhere]) for t in range(3, 8)]

    assert all(hits == [] for hits in early)
    assert [len(hits) for hits in late] == [0, 0, 1, 1, 1]
    assert (late[2][0].rule, late[2][0].start_s, late[2][0].end_s) == ("equipment_idle", 2.0, 5.0)


def test_zone_contains_polygon():
    triangle = Zone("t", "restricted", [(0, 0), (1, 0), (0, 1)])
    assert triangle.contains(0.2, 0.2)
    assert not triangle.contains(0.8, 0.8)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"zones": [{"name": "z", "kind": "lava", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, "kinds are"),
        ({"zones": [{"name": "z", "polygon": [[0, 0], [1, 0]]}]}, "at least 3 points"),
        ({"zones": [{"name": "z", "polygon": [[0, 0], [640, 0], [0, 480]]}]}, "fractions of the frame size"),
        ({"protocol": [{"name": "s", "from_zone": "x", "to_zone": "y"}]}, "not defined"),
        ({"max_speed": -1}, "positive number"),
        ({"max_sped": 1}, "Unknown rule field"),
    ],
)
def test_invalid_rules_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        Rules.from_dict(data)


def test_rules_round_trip():
    rules = lab_rules()
    assert Rules.from_dict(rules.as_dict()) == rules
