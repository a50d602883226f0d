import { describe, expect, it } from 'vitest'
import { formatDateTime } from '../src/lib/dates.js'

describe('formatDateTime', () => {
  it('writes UTC minutes like the server templates', () => {
    expect(formatDateTime('2026-12-05T01:02:03.456789+00:00')).toBe('2026-12-05 01:02')
  })

  it('converts other offsets to UTC', () => {
    expect(formatDateTime('2026-12-05T01:02:00+02:00')).toBe('2026-12-04 23:02')
  })

  it('keeps invalid and empty values', () => {
    expect(formatDateTime('not a time')).toBe('not a time')
    expect(formatDateTime(null)).toBe('')
  })
})
