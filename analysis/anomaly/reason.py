"""Explanations of flagged segments: from the measured facts, or through a vision-language model.

The VLM chain goes perception first, then cognition. Key frames with boxes and track ids
drawn in, plus the track facts as text, get (1) a description of the scene and objects,
(2) what is abnormal and why, and (3) a final answer in a validated JSON form. When no VLM is
configured, or its answer stays invalid after one repair request, the explanation is built
from the facts and rules that raised the segment and is marked ``"source": "measured facts"``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import cv2
import numpy as np

from analysis.anomaly.categories import CATEGORIES
from analysis.anomaly.video import read_frames

logger = logging.getLogger(__name__)

MEASURED = "measured facts"
ANSWER_KEYS = ("anomaly", "category", "start", "end", "explanation")
COMPONENT_WORDS = {
    "unusual_place": "foreground where the normal videos had none",
    "unusual_track_place": "an object moving where objects do not normally pass",
    "unusual_rest_place": "an object resting where objects do not normally rest",
    "speed": "a speed above the normal range",
    "acceleration": "an acceleration above the normal range",
    "area": "an object larger than normal",
    "area_growth": "an object that grows or shrinks faster than normal",
    "static_s": "an object resting longer than normal",
    "track_count": "more objects than normal",
    "foreground_fraction": "more of the frame changed than normal",
    "jump_speed": "something jumped further between frames than normal",
}
# Short names of the scene-model checks and of the rules, for lists on the review page.
COMPONENT_LABELS = {
    "unusual_place": "foreground in an unusual place",
    "unusual_track_place": "object on an unusual path",
    "unusual_rest_place": "object resting in an unusual place",
    "speed": "speed",
    "acceleration": "acceleration",
    "area": "object size",
    "area_growth": "object size change",
    "static_s": "rest time",
    "track_count": "object count",
    "foreground_fraction": "changed share of the frame",
    "jump_speed": "jump between frames",
}
RULE_LABELS = {
    "restricted_zone": "entry into a restricted zone",
    "max_speed": "speed above the scene's limit",
    "unattended": "object left unattended",
    "new_static_region": "new object resting",
    "equipment_idle": "equipment idle",
    "protocol_step": "protocol step out of order",
}
# The quantity each checked value measures and its format. The density checks compare against a
# floor, below which a place is unusual. Every other check compares against the upper end of the
# normal range.
COMPONENT_MEASURES = {
    "speed": ("its speed", "{:.3g} frame widths/s"),
    "acceleration": ("its change of speed", "{:.3g} frame widths/s²"),
    "area": ("its mask area", "{:.2%} of the frame"),
    "area_growth": ("its change of log area", "{:.3g}/s"),
    "static_s": ("its rest time", "{:.3g} s"),
    "track_count": ("the number of tracked objects", "{:.0f}"),
    "foreground_fraction": ("the changed share of the frame", "{:.2%}"),
    "jump_speed": ("the longest jump between frames", "{:.3g} frame widths/s"),
}


class AnswerError(ValueError):
    """A model answer that is not the JSON form the final step requests."""


@dataclass
class TrackSummary:
    track_id: int
    max_speed: float
    max_area_growth: float
    max_static_s: float
    zones: list[str]
    first_s: float
    last_s: float


def summarise_tracks(frames, start_s: float, end_s: float, track_ids: list[int]) -> list[TrackSummary]:
    """Collect the largest facts of each track inside [start_s, end_s]."""
    summaries: dict[int, TrackSummary] = {}
    wanted = set(track_ids)
    for frame in frames:
        if not start_s - 1.0 <= frame.time_s <= end_s:
            continue
        for fact in frame.tracks:
            if wanted and fact.track_id not in wanted:
                continue
            item = summaries.get(fact.track_id)
            if item is None:
                item = summaries[fact.track_id] = TrackSummary(
                    fact.track_id, 0.0, 0.0, 0.0, [], frame.time_s, frame.time_s
                )
            item.max_speed = max(item.max_speed, fact.speed)
            item.max_area_growth = max(item.max_area_growth, fact.area_growth)
            item.max_static_s = max(item.max_static_s, fact.static_s)
            item.zones = sorted(set(item.zones) | set(fact.zones))
            item.last_s = frame.time_s
    return sorted(summaries.values(), key=lambda item: item.track_id)


def guess_category(segment, tracks: list[TrackSummary], normal_speed: float) -> str:
    """Pick a category from the rules and facts that raised ``segment``; the first match wins.

    Rules come before scene-model facts, because a user set them for this scene.
    """
    rules = {hit["rule"] for hit in segment.rules}
    names = {item["name"] for item in segment.components}
    resting = rules & {"new_static_region", "unattended"} or names & {"unusual_rest_place", "static_s"}
    if "restricted_zone" in rules:
        return "restricted_zone"
    if resting:
        growing = [track for track in tracks if track.max_static_s >= 1.5 and track.max_area_growth > 0.3]
        if growing:
            return "spill"
        fell = [track for track in tracks if track.max_static_s >= 1.5 and track.max_speed > normal_speed]
        if fell:
            return "dropped_object"
        return "wrong_placement" if "unusual_rest_place" in names else "unattended"
    if "max_speed" in rules:
        return "fast_handling"
    if "equipment_idle" in rules:
        return "equipment_idle"
    if "protocol_step" in rules:
        return "protocol_step"
    if names & {"speed", "acceleration", "jump_speed"}:
        return "fast_handling"
    return "other"


def describe_component(item: dict) -> str:
    """Write one scene-model check as a sentence: what its value measures and how it compares."""
    name, value, normal = item["name"], item["value"], item["normal"]
    words = COMPONENT_WORDS.get(name, name)
    track = f" (track {item['track_id']})" if item.get("track_id") is not None else ""
    if name in ("unusual_track_place", "unusual_rest_place"):
        kind = "moving" if name == "unusual_track_place" else "resting"
        return (
            f"Scene model: {words}{track}. The normal videos' density of {kind} objects at this place is "
            f"{value:.2f} of their busiest place, below the floor of {normal:.2f}."
        )
    if name == "unusual_place":
        return (
            f"Scene model: {words}. {value:.0f} grid cell(s) changed where the normal videos had changes "
            f"in fewer than {normal:.3g} frame(s)."
        )
    measure, form = COMPONENT_MEASURES.get(name, ("the value", "{:.3g}"))
    return (
        f"Scene model: {words}{track}. {measure[0].upper()}{measure[1:]} is {form.format(value)}, above the "
        f"upper end of the normal range, {form.format(normal)}."
    )


def describe_rule_hit(rule: str, message: str = "") -> str:
    """Write one rule hit as a sentence with the rule's readable label."""
    label = RULE_LABELS.get(rule, rule.replace("_", " "))
    return f"Rule broken ({label}): {message}." if message else f"Rule broken ({label})."


def describe_facts(segment, tracks: list[TrackSummary]) -> str:
    """Write the facts and rules behind ``segment`` as plain lines for a person or a model."""
    lines = [
        f"Flagged from {segment.start_s:.1f} s to {segment.end_s:.1f} s, peak score {segment.peak_score:.2f} at {segment.peak_s:.1f} s."
    ]
    for hit in segment.rules:
        lines.append(describe_rule_hit(hit["rule"], hit["message"]))
    for item in segment.components[:5]:
        lines.append(describe_component(item))
    for track in tracks:
        zones = ", ".join(track.zones) or "no zone"
        lines.append(
            f"Track {track.track_id}: seen {track.first_s:.1f} to {track.last_s:.1f} s in {zones}, max speed "
            f"{track.max_speed:.2f} frame widths/s, max rest {track.max_static_s:.1f} s, max area growth {track.max_area_growth:.2f}/s."
        )
    return "\n".join(lines)


def measured_explanation(segment, tracks: list[TrackSummary], duration_s: float, normal_speed: float) -> dict:
    category = guess_category(segment, tracks, normal_speed)
    return {
        "source": MEASURED,
        "anomaly": True,
        "category": category,
        "category_label": CATEGORIES[category],
        "start": round(segment.start_s / duration_s, 4) if duration_s else 0.0,
        "end": round(min(1.0, segment.end_s / duration_s), 4) if duration_s else 1.0,
        "explanation": describe_facts(segment, tracks),
    }


def parse_answer(text: str) -> dict:
    """Extract and validate the final JSON answer; raise AnswerError naming what is wrong."""
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if match is None:
        raise AnswerError("the answer contains no JSON object")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as error:
        raise AnswerError(f"the JSON object is invalid ({error.msg} at character {error.pos})") from error
    if not isinstance(data, dict):
        raise AnswerError("the answer is not a JSON object")
    missing = [key for key in ANSWER_KEYS if key not in data]
    if missing:
        raise AnswerError(f"the JSON object lacks {', '.join(missing)}")
    if not isinstance(data["anomaly"], bool):
        raise AnswerError(f"anomaly must be true or false, got {data['anomaly']!r}")
    if data["category"] not in CATEGORIES:
        raise AnswerError(f"category {data['category']!r} is not one of {', '.join(CATEGORIES)}")
    for key in ("start", "end"):
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise AnswerError(f"{key} must be a fraction of the video between 0 and 1, got {value!r}")
    if data["start"] > data["end"]:
        raise AnswerError(f"start ({data['start']}) is after end ({data['end']})")
    if not isinstance(data["explanation"], str) or not data["explanation"].strip():
        raise AnswerError("explanation must be a non-empty string")
    return {key: data[key] for key in ANSWER_KEYS}


def draw_tracks(image: np.ndarray, tracks) -> np.ndarray:
    """Draw each track's box and id onto a copy of an RGB frame."""
    canvas = image.copy()
    scale = max(0.3, image.shape[1] / 640)
    for fact in tracks:
        x1, y1, x2, y2 = (int(round(value)) for value in fact.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (255, 40, 40), max(1, int(2 * scale)))
        cv2.putText(
            canvas,
            str(fact.track_id),
            (x1, max(10, y1 - 3)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * scale,
            (255, 40, 40),
            1,
            cv2.LINE_AA,
        )
    return canvas


def key_frames(path, result, segment, fps: float, max_side: int, count: int = 3) -> list[np.ndarray]:
    """Decode ``count`` frames spread evenly over ``segment`` again and draw the tracks in."""
    last = max(segment.start_s, segment.end_s - 1.0 / fps)
    wanted_times = [segment.start_s + (last - segment.start_s) * step / max(1, count - 1) for step in range(count)]
    by_index = {}
    for target in wanted_times:
        nearest = min(result.frames, key=lambda frame: abs(frame.time_s - target))
        by_index[nearest.index] = nearest
    images = []
    for frame in read_frames(path, fps=fps, max_side=max_side, check_truncation=False):
        facts = by_index.get(frame.index)
        if facts is not None:
            images.append(draw_tracks(frame.image, facts.tracks))
        if len(images) == len(by_index):
            break
    return images


PERCEPTION_PROMPT = (
    "These are key frames from a lab bench camera, with tracked objects boxed and numbered. "
    "Describe the scene and each numbered object: what it is, where it is, what it does.\n"
    "Measured facts:\n{facts}"
)
COGNITION_PROMPT = (
    "Scene description: {description}\nMeasured facts:\n{facts}\n"
    "Compared with a normal lab routine, what is abnormal in these frames, and why?"
)
ANSWER_PROMPT = (
    "Scene description: {description}\nReasoning: {reasoning}\n"
    "Give the final answer as one JSON object and nothing else, with keys: "
    '"anomaly" (true or false), "category" (one of: {categories}), '
    '"start" and "end" (fractions of the video, from 0 to 1; the segment is {start:.3f} to {end:.3f}), '
    '"explanation" (one or two sentences).'
)
REPAIR_PROMPT = (
    "Your answer was rejected because {error}. Reply again with only the JSON object.\nPrevious answer: {answer}"
)


def vlm_explanation(
    vlm,
    images: list[np.ndarray],
    segment,
    facts_text: str,
    fallback: dict,
    duration_s: float,
    max_new_tokens: int = 160,
) -> dict:
    """Run the perception, cognition and answer steps; fall back to ``fallback`` on an invalid answer."""
    start = segment.start_s / duration_s if duration_s else 0.0
    end = min(1.0, segment.end_s / duration_s) if duration_s else 1.0
    description = vlm.generate(
        images, PERCEPTION_PROMPT.format(facts=facts_text), max_new_tokens=max_new_tokens
    ).text.strip()
    reasoning = vlm.generate(
        images, COGNITION_PROMPT.format(description=description, facts=facts_text), max_new_tokens=max_new_tokens
    ).text.strip()
    prompt = ANSWER_PROMPT.format(
        description=description, reasoning=reasoning, categories=", ".join(CATEGORIES), start=start, end=end
    )
    answer = vlm.generate(images, prompt, max_new_tokens=max_new_tokens).text
    record = {"model": vlm.info.version, "description": description, "reasoning": reasoning, "answers": [answer]}
    try:
        parsed = parse_answer(answer)
    except AnswerError as error:
        repaired = vlm.generate(
            images, REPAIR_PROMPT.format(error=error, answer=answer[:500]), max_new_tokens=max_new_tokens
        ).text
        record["answers"].append(repaired)
        try:
            parsed = parse_answer(repaired)
        except AnswerError as second:
            logger.warning("The VLM answer stayed invalid after a repair request: %s", second)
            return {**fallback, "vlm": {**record, "error": str(second)}}
    return {"source": "vlm", **parsed, "category_label": CATEGORIES[parsed["category"]], "vlm": record}


def explain_segments(result, scene, vlm=None, path=None, reporter=None) -> None:
    """Fill ``segment.explanation`` for every segment of ``result``, with the VLM when given."""
    normal_speed = scene.quantiles["speed"]["q99"]
    for number, segment in enumerate(result.segments):
        tracks = summarise_tracks(result.frames, segment.start_s, segment.end_s, segment.track_ids)
        fallback = measured_explanation(segment, tracks, result.duration_s, normal_speed)
        if vlm is None:
            segment.explanation = fallback
        else:
            images = key_frames(path or result.video, result, segment, scene.fps, scene.max_side)
            try:
                segment.explanation = vlm_explanation(
                    vlm, images, segment, fallback["explanation"], fallback, result.duration_s
                )
            except RuntimeError as error:  # EndpointError and model failures; the facts still explain the segment
                logger.warning("The VLM failed on segment %d of %s: %s", number + 1, result.video, error)
                segment.explanation = {**fallback, "vlm": {"model": vlm.info.version, "error": str(error)}}
        if reporter is not None:
            reporter.report("explain", (number + 1) / len(result.segments), f"segment {number + 1}")
