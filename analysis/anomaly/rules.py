"""Rules a user sets per scene: polygon zones, limits, and an ordered protocol of zone moves.

Coordinates are fractions of the frame width and height (0 to 1), so one rule set fits any
resolution of the same camera view. ``RuleMonitor`` checks the rules frame by frame against
track facts and returns ``RuleHit`` records, each with the time span it covers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

ZONE_KINDS = ("restricted", "storage", "work", "equipment", "other")


@dataclass
class Zone:
    name: str
    # One of ZONE_KINDS. Objects may rest in "storage" zones without being unattended, and
    # "equipment" zones should show motion while the equipment runs (see Rules.max_idle_s).
    kind: str
    polygon: list[tuple[float, float]]

    def __post_init__(self) -> None:
        if self.kind not in ZONE_KINDS:
            raise ValueError(f"Zone {self.name!r} has kind {self.kind!r}; kinds are {', '.join(ZONE_KINDS)}.")
        if len(self.polygon) < 3:
            raise ValueError(f"Zone {self.name!r} needs a polygon of at least 3 points, got {len(self.polygon)}.")
        self.polygon = [(float(x), float(y)) for x, y in self.polygon]
        for x, y in self.polygon:
            if not (-0.01 <= x <= 1.01 and -0.01 <= y <= 1.01):
                raise ValueError(f"Zone {self.name!r} has point ({x}, {y}); use fractions of the frame size (0 to 1).")

    def contains(self, x: float, y: float) -> bool:
        """Test whether the point (x, y) lies inside the polygon (even-odd rule)."""
        inside = False
        points = self.polygon
        for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
            if (y1 > y) != (y2 > y):
                crossing = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
                if x < crossing:
                    inside = not inside
        return inside


@dataclass
class Step:
    """One expected protocol event: an object moves from zone ``from_zone`` to zone ``to_zone``."""

    name: str
    from_zone: str
    to_zone: str


@dataclass
class Rules:
    zones: list[Zone] = field(default_factory=list)
    max_speed: float | None = None  # frame widths per second
    max_unattended_s: float | None = None  # max time an object may rest outside storage zones
    max_idle_s: float | None = None  # max time an equipment zone may show no moving object
    spill_min_area: float | None = None  # min area, as a fraction of the frame, of a new static region
    spill_min_static_s: float = 1.0
    protocol: list[Step] = field(default_factory=list)
    protocol_repeats: bool = True

    def __post_init__(self) -> None:
        names = [zone.name for zone in self.zones]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"Zone names must be unique; repeated: {', '.join(duplicates)}.")
        for step in self.protocol:
            for zone_name in (step.from_zone, step.to_zone):
                if zone_name not in names:
                    raise ValueError(f"Protocol step {step.name!r} names zone {zone_name!r}, which is not defined.")
        for label, value in (
            ("max_speed", self.max_speed),
            ("max_unattended_s", self.max_unattended_s),
            ("max_idle_s", self.max_idle_s),
            ("spill_min_area", self.spill_min_area),
        ):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"The rule {label} must be a positive number or null, got {value}.")

    def zones_at(self, x: float, y: float) -> list[str]:
        return [zone.name for zone in self.zones if zone.contains(x, y)]

    def zone(self, name: str) -> Zone:
        return next(zone for zone in self.zones if zone.name == name)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Rules:
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown rule field(s) {', '.join(unknown)}; fields are {', '.join(sorted(known))}.")
        zones = [
            Zone(item["name"], item.get("kind", "other"), [tuple(point) for point in item["polygon"]])
            for item in data.pop("zones", [])
        ]
        protocol = [Step(**item) for item in data.pop("protocol", [])]
        return cls(zones=zones, protocol=protocol, **data)


@dataclass
class RuleHit:
    rule: str  # restricted_zone, max_speed, unattended, new_static_region, protocol_step
    category: str
    start_s: float
    end_s: float
    track_id: int | None
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


class RuleMonitor:
    """Check ``Rules`` frame by frame; ``update`` returns the hits raised at that frame.

    The protocol follows the sequence of protocol zones that moving objects visit, whichever
    track visits them, so a track that breaks into two ids still gives one sequence. It suits
    scenes with one person working at a time.
    """

    def __init__(self, rules: Rules, moving_speed: float = 0.06) -> None:
        self.rules = rules
        self.protocol_zones = {name for step in rules.protocol for name in (step.from_zone, step.to_zone)}
        self.expected = 0
        self.moving_speed = moving_speed
        self._last_zone: str | None = None
        self._left_s = 0.0  # last time a moving object was seen in ``_last_zone``
        self._moving_since: float | None = None  # when the object in ``_last_zone`` started to move
        self._last_motion: dict[str, float] = {}  # equipment zone name -> last time it showed motion

    def update(self, time_s: float, tracks: list, jump_speed: float = 0.0) -> list[RuleHit]:
        """Return the rule hits for one frame.

        ``tracks`` are the frame's TrackFact records, and ``jump_speed`` is the frame's
        track-free speed (FrameFacts.jump_speed), which catches objects too fast to track.
        """
        hits: list[RuleHit] = []
        rules = self.rules
        if rules.max_speed is not None and jump_speed > rules.max_speed:
            hits.append(
                RuleHit(
                    "max_speed",
                    "fast_handling",
                    time_s,
                    time_s,
                    None,
                    f"an object jumped at {jump_speed:.2f} frame widths/s between frames, above the limit {rules.max_speed:.2f}",
                )
            )
        for fact in tracks:
            zones = fact.zones
            kinds = {rules.zone(name).kind for name in zones}
            if "restricted" in kinds:
                names = ", ".join(name for name in zones if rules.zone(name).kind == "restricted")
                hits.append(
                    RuleHit(
                        "restricted_zone",
                        "restricted_zone",
                        time_s,
                        time_s,
                        fact.track_id,
                        f"track {fact.track_id} is inside restricted zone {names}",
                    )
                )
            if rules.max_speed is not None and fact.speed > rules.max_speed:
                hits.append(
                    RuleHit(
                        "max_speed",
                        "fast_handling",
                        time_s,
                        time_s,
                        fact.track_id,
                        f"track {fact.track_id} moves at {fact.speed:.2f} frame widths/s, above the limit {rules.max_speed:.2f}",
                    )
                )
            resting_outside_storage = "storage" not in kinds and fact.static_s > 0
            if (
                rules.max_unattended_s is not None
                and resting_outside_storage
                and fact.static_s >= rules.max_unattended_s
            ):
                where = ", ".join(zones) or "outside every zone"
                hits.append(
                    RuleHit(
                        "unattended",
                        "unattended",
                        time_s - fact.static_s,
                        time_s,
                        fact.track_id,
                        f"track {fact.track_id} has rested {fact.static_s:.1f} s ({where}), above the limit {rules.max_unattended_s:.1f} s",
                    )
                )
            if (
                rules.spill_min_area is not None
                and fact.static_s >= rules.spill_min_static_s
                and fact.area >= rules.spill_min_area
                and not kinds & {"storage"}
            ):
                hits.append(
                    RuleHit(
                        "new_static_region",
                        "spill",
                        time_s - fact.static_s,
                        time_s,
                        fact.track_id,
                        f"a new static region appeared (track {fact.track_id}, {fact.area * 100:.2f}% of the frame)",
                    )
                )
        if rules.protocol:
            hits.extend(self._protocol(time_s, tracks))
        if rules.max_idle_s is not None:
            hits.extend(self._idle_equipment(time_s, tracks))
        return hits

    def _idle_equipment(self, time_s: float, tracks: list) -> list[RuleHit]:
        """Flag equipment zones where nothing has moved for longer than ``max_idle_s``."""
        hits = []
        for zone in self.rules.zones:
            if zone.kind != "equipment":
                continue
            moving = any(
                zone.name in fact.zones and (fact.class_name == "moving" or fact.speed >= self.moving_speed)
                for fact in tracks
            )
            last = self._last_motion.setdefault(zone.name, time_s)
            if moving:
                self._last_motion[zone.name] = time_s
            elif time_s - last > self.rules.max_idle_s:
                message = f"equipment zone {zone.name} has shown no motion for {time_s - last:.1f} s, above the limit {self.rules.max_idle_s:.1f} s"
                hits.append(RuleHit("equipment_idle", "equipment_idle", last, time_s, None, message))
        return hits

    def _protocol(self, time_s: float, tracks: list) -> list[RuleHit]:
        hits = []
        for fact in tracks:
            inside = [name for name in fact.zones if name in self.protocol_zones]
            if not inside:
                continue
            zone = inside[0]
            if fact.speed < self.moving_speed and fact.static_s > 0:
                # An object at rest in the current zone: a later move out of it starts after now.
                if zone == self._last_zone:
                    self._moving_since = None
                continue
            if self._last_zone is not None and zone != self._last_zone:
                started = self._moving_since if self._moving_since is not None else self._left_s
                hit = self._event(self._last_zone, zone, started, time_s, fact.track_id)
                if hit:
                    hits.append(hit)
                self._moving_since = None
            if self._moving_since is None:
                self._moving_since = time_s
            self._last_zone = zone
            self._left_s = time_s
        return hits

    def _event(self, from_zone: str, to_zone: str, started_s: float, time_s: float, track_id: int) -> RuleHit | None:
        steps = self.rules.protocol
        count = len(steps)
        if not self.rules.protocol_repeats and self.expected >= count:
            return None
        expected = steps[self.expected % count]
        if (expected.from_zone, expected.to_zone) == (from_zone, to_zone):
            self.expected += 1
            return None
        matches = [index for index, step in enumerate(steps) if (step.from_zone, step.to_zone) == (from_zone, to_zone)]
        following = [index for index, step in enumerate(steps) if step.from_zone == to_zone]
        if matches:
            self.expected = matches[0] + 1
            message = f"step {steps[matches[0]].name!r} ({from_zone} to {to_zone}) happened while {expected.name!r} ({expected.from_zone} to {expected.to_zone}) was expected"
        else:
            if following:
                self.expected = following[0]
            message = f"track {track_id} moved from {from_zone} to {to_zone}, but the protocol expected {expected.name!r} ({expected.from_zone} to {expected.to_zone})"
        return RuleHit("protocol_step", "protocol_step", started_s, time_s, track_id, message)
