/**
 * Flagged segments from frame scores, computed in the browser as analysis.anomaly.pipeline
 * find_segments computes them: runs of frames at or above the threshold, merged across gaps
 * of at most `mergeGapS` seconds, and kept when they last at least `minLengthS`.
 */

export const MERGE_GAP_S = 1.0
export const MIN_LENGTH_S = 0.5

/** Returns [{startS, endS, first, last}] for the frames whose score is at or above `threshold`. */
export function findSegments(times, scores, threshold, frameS, mergeGapS = MERGE_GAP_S, minLengthS = MIN_LENGTH_S) {
  const runs = []
  for (let index = 0; index < scores.length; index += 1) {
    if (!(scores[index] >= threshold)) continue
    const previous = runs[runs.length - 1]
    if (previous && times[index] - times[previous[1]] <= mergeGapS + frameS) {
      previous[1] = index
    } else {
      runs.push([index, index])
    }
  }
  return runs
    .filter(([first, last]) => times[last] - times[first] + frameS >= minLengthS)
    .map(([first, last]) => ({ first, last, startS: times[first], endS: times[last] + frameS }))
}

/** Returns the index of the last frame whose time is at or before `timeS`, or 0 before the first. */
export function frameIndexAt(times, timeS) {
  let low = 0
  let high = times.length - 1
  if (high < 0 || timeS <= times[0]) return 0
  while (low < high) {
    const middle = Math.ceil((low + high) / 2)
    if (times[middle] <= timeS) low = middle
    else high = middle - 1
  }
  return low
}

/** Returns the temporal intersection over union of two spans given as [startS, endS]. */
export function temporalIou([startA, endA], [startB, endB]) {
  const overlap = Math.max(0, Math.min(endA, endB) - Math.max(startA, startB))
  const union = Math.max(endA, endB) - Math.min(startA, startB)
  return union > 0 ? overlap / union : 0
}

/**
 * Returns the stored segment ({start_s, end_s}) that best overlaps a live segment ({startS, endS})
 * with a temporal IoU of at least `minIou`, or null when the live segment is new at this threshold.
 */
export function matchingSegment(live, stored, minIou = 0.5) {
  let best = null
  let bestIou = minIou
  for (const segment of stored) {
    const iou = temporalIou([live.startS, live.endS], [segment.start_s, segment.end_s])
    if (iou >= bestIou) {
      best = segment
      bestIou = iou
    }
  }
  return best
}

/**
 * Returns the mask polygons of frame `index` as [{trackId, points: [[x, y], ...]}], from the run's
 * masks file ({frames: [[{track_id, polygons: [[x0, y0, x1, y1, ...]]}]]}); empty when none.
 */
export function maskPolygonsAt(masks, index) {
  const items = masks?.frames?.[index] || []
  const polygons = []
  for (const item of items) {
    for (const flat of item.polygons) {
      const points = []
      for (let offset = 0; offset + 1 < flat.length; offset += 2) points.push([flat[offset], flat[offset + 1]])
      if (points.length >= 3) polygons.push({ trackId: item.track_id, points })
    }
  }
  return polygons
}
