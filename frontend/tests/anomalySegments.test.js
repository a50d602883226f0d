import { describe, expect, it } from 'vitest'
import { findSegments, frameIndexAt, maskPolygonsAt, matchingSegment, temporalIou } from '../src/anomalies/segments.js'

// Ten frames per second for three seconds.
const times = Array.from({ length: 30 }, (_, index) => index / 10)

function scoresAbove(indices) {
  return times.map((_, index) => (indices.includes(index) ? 0.9 : 0.1))
}

describe('findSegments', () => {
  it('returns one run of high frames with the frame length added to its end', () => {
    const segments = findSegments(times, scoresAbove([5, 6, 7, 8, 9, 10]), 0.5, 0.1)
    expect(segments).toHaveLength(1)
    expect(segments[0].startS).toBeCloseTo(0.5)
    expect(segments[0].endS).toBeCloseTo(1.1)
  })

  it('merges runs across a gap of at most the merge gap', () => {
    const segments = findSegments(times, scoresAbove([2, 3, 4, 5, 6, 14, 15, 16, 17, 18]), 0.5, 0.1)
    expect(segments.map((segment) => [segment.first, segment.last])).toEqual([[2, 18]])
  })

  it('keeps runs apart across a longer gap', () => {
    const segments = findSegments(times, scoresAbove([0, 1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29]), 0.5, 0.1)
    expect(segments.map((segment) => [segment.first, segment.last])).toEqual([[0, 5], [24, 29]])
  })

  it('splits where the score stays below the threshold longer than the merge gap', () => {
    // 1.2 s to 1.5 s and 2.8 s to 3.0 s are above; the 1.3 s between are at 0.
    const longTimes = Array.from({ length: 40 }, (_, index) => index / 10)
    const scores = longTimes.map((_, index) => ([12, 13, 14, 28, 29].includes(index) ? 0.6 : 0))
    const segments = findSegments(longTimes, scores, 0.3, 0.1, 1.0, 0.15)
    expect(segments.map((segment) => [segment.first, segment.last])).toEqual([[12, 14], [28, 29]])
    // A drop of 0.9 s (frames 15 to 23) merges.
    const short = longTimes.map((_, index) => ([12, 13, 14, 24, 25].includes(index) ? 0.6 : 0))
    expect(findSegments(longTimes, short, 0.3, 0.1, 1.0, 0.15).map((segment) => [segment.first, segment.last])).toEqual([[12, 25]])
  })

  it('drops runs shorter than the minimum length', () => {
    expect(findSegments(times, scoresAbove([12, 13]), 0.5, 0.1)).toEqual([])
  })

  it('counts a score equal to the threshold as above it', () => {
    const scores = times.map((_, index) => (index >= 10 && index < 20 ? 0.5 : 0))
    expect(findSegments(times, scores, 0.5, 0.1)).toHaveLength(1)
    expect(findSegments(times, scores, 0.51, 0.1)).toHaveLength(0)
  })
})

describe('frameIndexAt', () => {
  it('returns the last frame at or before the time', () => {
    expect(frameIndexAt(times, -1)).toBe(0)
    expect(frameIndexAt(times, 0.15)).toBe(1)
    expect(frameIndexAt(times, 0.2)).toBe(2)
    expect(frameIndexAt(times, 99)).toBe(29)
  })
})

describe('matchingSegment', () => {
  const stored = [{ uuid: 'a', start_s: 6, end_s: 9 }, { uuid: 'b', start_s: 1, end_s: 2 }]

  it('matches a live segment to the stored segment it overlaps most', () => {
    expect(matchingSegment({ startS: 6.1, endS: 9.0 }, stored).uuid).toBe('a')
  })

  it('returns null for a live segment that overlaps no stored one enough', () => {
    expect(matchingSegment({ startS: 0, endS: 10 }, stored)).toBeNull()
  })

  it('computes temporal IoU of spans', () => {
    expect(temporalIou([0, 2], [1, 3])).toBeCloseTo(1 / 3)
    expect(temporalIou([0, 1], [2, 3])).toBe(0)
  })
})

describe('maskPolygonsAt', () => {
  const masks = {
    frames: [
      [],
      [{ track_id: 4, polygons: [[0, 0, 10, 0, 10, 10], [20, 20, 30, 20]] }],
    ],
  }

  it('returns the polygons of one frame with their track ids', () => {
    expect(maskPolygonsAt(masks, 1)).toEqual([{ trackId: 4, points: [[0, 0], [10, 0], [10, 10]] }])
  })

  it('returns nothing for frames without masks or before masks load', () => {
    expect(maskPolygonsAt(masks, 0)).toEqual([])
    expect(maskPolygonsAt(masks, 7)).toEqual([])
    expect(maskPolygonsAt(null, 1)).toEqual([])
  })
})
