import { describe, expect, it } from 'vitest'
import { isFinished, jobSocketUrl, lastLogLines, parseJobMessage, progressPercent } from '../src/jobs/state.js'

describe('progressPercent', () => {
  it('rounds the fraction to a percentage', () => {
    expect(progressPercent({ status: 'running', progress: 0.424 })).toBe(42)
    expect(progressPercent({ status: 'running', progress: 0.425 })).toBe(43)
  })

  it('clamps out-of-range values', () => {
    expect(progressPercent({ status: 'running', progress: 1.7 })).toBe(100)
    expect(progressPercent({ status: 'running', progress: -0.2 })).toBe(0)
  })

  it('treats missing progress as zero', () => {
    expect(progressPercent({ status: 'queued', progress: null })).toBe(0)
    expect(progressPercent({ status: 'queued' })).toBe(0)
    expect(progressPercent(null)).toBe(0)
  })

  it('shows 100 for a succeeded job', () => {
    expect(progressPercent({ status: 'succeeded', progress: 0.97 })).toBe(100)
  })

  it('keeps the last value of a failed job', () => {
    expect(progressPercent({ status: 'failed', progress: 0.3 })).toBe(30)
  })
})

describe('isFinished', () => {
  it.each(['succeeded', 'failed', 'cancelled'])('is true for %s', (status) => {
    expect(isFinished(status)).toBe(true)
  })

  it.each(['queued', 'running', undefined])('is false for %s', (status) => {
    expect(isFinished(status)).toBe(false)
  })
})

describe('lastLogLines', () => {
  it('returns the last fifty lines', () => {
    const log = Array.from({ length: 75 }, (_, i) => `line ${i}`)
    const lines = lastLogLines({ log })
    expect(lines).toHaveLength(50)
    expect(lines[0]).toBe('line 25')
    expect(lines.at(-1)).toBe('line 74')
  })

  it('handles a missing log', () => {
    expect(lastLogLines({})).toEqual([])
    expect(lastLogLines({ log: 'text' })).toEqual([])
  })
})

describe('jobSocketUrl', () => {
  it('uses ws on http', () => {
    expect(jobSocketUrl({ protocol: 'http:', host: '127.0.0.1:8765' }, 'abc')).toBe('ws://127.0.0.1:8765/ws/jobs/abc/')
  })

  it('uses wss on https', () => {
    expect(jobSocketUrl({ protocol: 'https:', host: 'lab.example' }, 'abc')).toBe('wss://lab.example/ws/jobs/abc/')
  })

  it('encodes the uuid', () => {
    expect(jobSocketUrl({ protocol: 'http:', host: 'h' }, 'a/b')).toBe('ws://h/ws/jobs/a%2Fb/')
  })
})

describe('parseJobMessage', () => {
  it('accepts snapshots and updates', () => {
    const job = { status: 'running' }
    expect(parseJobMessage(JSON.stringify({ type: 'snapshot', job }))).toEqual({ type: 'snapshot', job })
    expect(parseJobMessage(JSON.stringify({ type: 'update', job }))).toEqual({ type: 'update', job })
  })

  it('rejects other messages', () => {
    expect(parseJobMessage('{')).toBeNull()
    expect(parseJobMessage('null')).toBeNull()
    expect(parseJobMessage(JSON.stringify({ type: 'hello', job: { status: 'running' } }))).toBeNull()
    expect(parseJobMessage(JSON.stringify({ type: 'update', job: { status: 3 } }))).toBeNull()
  })
})
