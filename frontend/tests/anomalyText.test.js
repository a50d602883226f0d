import { describe, expect, it } from 'vitest'
import { readableError, suggestedCategory } from '../src/anomalies/text.js'

const categories = { spill: 'spill or leak', fast_handling: 'unsafe fast handling', other: 'other anomaly' }

describe('readableError', () => {
  it('keeps a field message that already starts with its label', () => {
    const error = Object.assign(new Error('end_s: End (5 s) must be after Start (6 s).'), {
      errors: { end_s: ['End (5 s) must be after Start (6 s).'] },
    })
    expect(readableError(error)).toBe('End (5 s) must be after Start (6 s).')
  })

  it('prefixes other field messages with the label', () => {
    const error = Object.assign(new Error('category: "alien" is not a valid choice.'), {
      errors: { category: ['"alien" is not a valid choice.'], non_field_errors: ['Try again.'] },
    })
    expect(readableError(error)).toBe('Category: "alien" is not a valid choice. Try again.')
  })

  it('falls back to the message without field errors', () => {
    expect(readableError(new Error('The request failed with HTTP 500.'))).toBe('The request failed with HTTP 500.')
  })
})

describe('suggestedCategory', () => {
  const stored = [
    { start_s: 4.3, end_s: 5.5, category: 'fast_handling' },
    { start_s: 8.0, end_s: 9.0, category: 'spill' },
  ]

  it('takes the category of the stored segment the span overlaps most', () => {
    expect(suggestedCategory([1.2, 5.5], stored, categories)).toBe('fast_handling')
  })

  it('defaults to other without an overlap', () => {
    expect(suggestedCategory([0.0, 1.0], stored, categories)).toBe('other')
  })

  it('defaults to the first category without other', () => {
    expect(suggestedCategory([0.0, 1.0], [], { spill: 'spill or leak' })).toBe('spill')
  })
})
