import { describe, expect, it } from 'vitest'
import { chunkAt, formatBytes, formatRate, isRetryableStatus, percentOf, planChunks, resumeKey } from '../src/upload/protocol.js'

describe('chunkAt', () => {
  it('returns a full chunk inside the file', () => {
    expect(chunkAt(0, 10, 4)).toEqual({ offset: 0, end: 4, length: 4 })
  })

  it('cuts the last chunk at the file size', () => {
    expect(chunkAt(8, 10, 4)).toEqual({ offset: 8, end: 10, length: 2 })
  })

  it('returns an empty chunk at the end', () => {
    expect(chunkAt(10, 10, 4)).toEqual({ offset: 10, end: 10, length: 0 })
  })

  it('rejects invalid arguments', () => {
    expect(() => chunkAt(11, 10, 4)).toThrow(/past the end/)
    expect(() => chunkAt(-1, 10, 4)).toThrow(RangeError)
    expect(() => chunkAt(0, 10, 0)).toThrow(/chunk size/)
    expect(() => chunkAt(0, 10, 2.5)).toThrow(/chunk size/)
    expect(() => chunkAt(0.5, 10, 4)).toThrow(RangeError)
  })
})

describe('planChunks', () => {
  it('covers a size that is a multiple of the chunk size', () => {
    expect(planChunks(12, 4)).toEqual([
      { offset: 0, end: 4, length: 4 },
      { offset: 4, end: 8, length: 4 },
      { offset: 8, end: 12, length: 4 },
    ])
  })

  it('ends with a short chunk', () => {
    const chunks = planChunks(10, 4)
    expect(chunks.map((chunk) => chunk.length)).toEqual([4, 4, 2])
    expect(chunks.at(-1).end).toBe(10)
  })

  it('is empty for an empty file', () => {
    expect(planChunks(0, 4)).toEqual([])
  })

  it('uses one chunk for a file smaller than a chunk', () => {
    expect(planChunks(3, 8)).toEqual([{ offset: 0, end: 3, length: 3 }])
  })

  it('resumes from an offset on a chunk boundary', () => {
    expect(planChunks(10, 4, 4)).toEqual([
      { offset: 4, end: 8, length: 4 },
      { offset: 8, end: 10, length: 2 },
    ])
  })

  it('resumes from an offset between boundaries', () => {
    // A 409 can return any committed offset, so chunks may start off a multiple of the size.
    expect(planChunks(10, 4, 3)).toEqual([
      { offset: 3, end: 7, length: 4 },
      { offset: 7, end: 10, length: 3 },
    ])
  })

  it('is empty when resuming at the end', () => {
    expect(planChunks(10, 4, 10)).toEqual([])
  })

  it('rejects an offset past the end', () => {
    expect(() => planChunks(10, 4, 12)).toThrow(/past the end/)
  })

  it('covers every byte once for large sizes', () => {
    const size = 5 * 1024 ** 3 + 17
    const chunkSize = 8 * 1024 * 1024
    const chunks = planChunks(size, chunkSize)
    expect(chunks.length).toBe(Math.ceil(size / chunkSize))
    expect(chunks.reduce((total, chunk) => total + chunk.length, 0)).toBe(size)
    for (let i = 1; i < chunks.length; i += 1) expect(chunks[i].offset).toBe(chunks[i - 1].end)
  })
})

describe('resumeKey', () => {
  const file = { name: 'cell 1.tif', size: 1024, lastModified: 1700000000000 }

  it('contains dataset, name, size and time', () => {
    expect(resumeKey('ds-1', file)).toBe('biovlm:upload:ds-1:cell%201.tif:1024:1700000000000')
  })

  it('differs when the file changes', () => {
    const key = resumeKey('ds-1', file)
    expect(resumeKey('ds-1', { ...file, size: 1025 })).not.toBe(key)
    expect(resumeKey('ds-1', { ...file, lastModified: 1700000000001 })).not.toBe(key)
    expect(resumeKey('ds-2', file)).not.toBe(key)
  })

  it('keeps colons in names unambiguous', () => {
    const a = resumeKey('ds', { name: 'a:1', size: 2, lastModified: 3 })
    const b = resumeKey('ds', { name: 'a', size: 1, lastModified: 2 })
    expect(a).not.toBe(b)
    expect(a).toContain('a%3A1')
  })

  it('requires a dataset uuid', () => {
    expect(() => resumeKey('', file)).toThrow(TypeError)
  })
})

describe('isRetryableStatus', () => {
  it.each([0, 408, 429, 500, 502, 503, 504])('retries %i', (status) => {
    expect(isRetryableStatus(status)).toBe(true)
  })

  it.each([400, 401, 403, 404, 409, 413])('does not retry %i', (status) => {
    expect(isRetryableStatus(status)).toBe(false)
  })
})

describe('formatting', () => {
  it('formats bytes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(1023)).toBe('1023 B')
    expect(formatBytes(1536)).toBe('1.50 KiB')
    expect(formatBytes(50 * 1024 * 1024)).toBe('50.0 MiB')
    expect(formatBytes(-1)).toBe('–')
  })

  it('formats rates in MB/s', () => {
    expect(formatRate(12_345_678)).toBe('12.3 MB/s')
    expect(formatRate(0)).toBe('–')
    expect(formatRate(Number.NaN)).toBe('–')
  })

  it('computes whole percentages', () => {
    expect(percentOf(0, 10)).toBe(0)
    expect(percentOf(999, 1000)).toBe(99)
    expect(percentOf(10, 10)).toBe(100)
    expect(percentOf(0, 0)).toBe(100)
  })
})
