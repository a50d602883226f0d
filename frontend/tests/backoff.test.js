import { describe, expect, it } from 'vitest'
import { backoffDelay, backoffSchedule, sleep } from '../src/lib/backoff.js'
import { RETRY_DELAYS_MS } from '../src/upload/protocol.js'
import { RECONNECT_BASE_MS, RECONNECT_MAX_MS } from '../src/jobs/socket.js'

describe('backoffDelay', () => {
  it('doubles from the base', () => {
    expect(backoffDelay(0)).toBe(500)
    expect(backoffDelay(1)).toBe(1000)
    expect(backoffDelay(2)).toBe(2000)
    expect(backoffDelay(3)).toBe(4000)
  })

  it('caps at the maximum', () => {
    expect(backoffDelay(5)).toBe(10_000)
    expect(backoffDelay(100)).toBe(10_000)
    expect(backoffDelay(3, { baseMs: 100, maxMs: 250 })).toBe(250)
  })

  it('rejects invalid attempts', () => {
    expect(() => backoffDelay(-1)).toThrow(RangeError)
    expect(() => backoffDelay(1.5)).toThrow(RangeError)
  })
})

describe('backoffSchedule', () => {
  it('lists successive delays', () => {
    expect(backoffSchedule(6)).toEqual([500, 1000, 2000, 4000, 8000, 10_000])
  })

  it('is empty for zero retries', () => {
    expect(backoffSchedule(0)).toEqual([])
  })
})

describe('retry schedules in use', () => {
  it('chunk retries wait 0.5 s doubling to 8 s', () => {
    expect(RETRY_DELAYS_MS).toEqual([500, 1000, 2000, 4000, 8000])
  })

  it('websocket reconnects wait 0.5 s doubling to 10 s', () => {
    const delays = backoffSchedule(7, { baseMs: RECONNECT_BASE_MS, maxMs: RECONNECT_MAX_MS })
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000])
  })
})

describe('sleep', () => {
  it('resolves after the delay', async () => {
    await expect(sleep(1)).resolves.toBeUndefined()
  })

  it('rejects when the signal aborts', async () => {
    const controller = new AbortController()
    const pending = sleep(10_000, controller.signal)
    controller.abort()
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' })
  })

  it('rejects at once on an aborted signal', async () => {
    await expect(sleep(10_000, AbortSignal.abort())).rejects.toMatchObject({ name: 'AbortError' })
  })
})
