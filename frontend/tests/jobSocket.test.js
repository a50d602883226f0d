import { describe, expect, it } from 'vitest'
import { CLOSE_FORBIDDEN, connectJobSocket } from '../src/jobs/socket.js'

// A WebSocket stand-in that records instances so a test can open, message and close them.
function fakeWebSocketClass() {
  const sockets = []
  class FakeWebSocket {
    constructor(url) {
      this.url = url
      this.readyState = 0
      this.sent = []
      this.closedWith = null
      sockets.push(this)
    }
    send(data) {
      this.sent.push(data)
    }
    close(code, reason) {
      this.closedWith = { code, reason }
      this.readyState = 3
    }
    serverOpen() {
      this.readyState = 1
      this.onopen?.({})
    }
    serverMessage(payload) {
      this.onmessage?.({ data: typeof payload === 'string' ? payload : JSON.stringify(payload) })
    }
    serverClose(code) {
      this.readyState = 3
      this.onclose?.({ code })
    }
  }
  return { FakeWebSocket, sockets }
}

function fakeTimers() {
  const pending = []
  return {
    pending,
    setTimer: (callback, ms) => {
      const timer = { callback, ms }
      pending.push(timer)
      return timer
    },
    clearTimer: (timer) => {
      const index = pending.indexOf(timer)
      if (index !== -1) pending.splice(index, 1)
    },
    runNext() {
      const timer = pending.shift()
      timer.callback()
      return timer.ms
    },
  }
}

function connect() {
  const { FakeWebSocket, sockets } = fakeWebSocketClass()
  const timers = fakeTimers()
  const jobs = []
  const states = []
  const stream = connectJobSocket('ws://127.0.0.1/ws/jobs/j-1/', {
    WebSocketImpl: FakeWebSocket,
    setTimer: timers.setTimer,
    clearTimer: timers.clearTimer,
    onJob: (job, type) => jobs.push({ job, type }),
    onConnection: (state) => states.push(state),
  })
  return { stream, sockets, timers, jobs, states }
}

const running = { uuid: 'j-1', status: 'running', stage: 'detect', progress: 0.4, log: [] }

describe('connectJobSocket', () => {
  it('delivers snapshots and updates', () => {
    const { sockets, jobs, states } = connect()
    sockets[0].serverOpen()
    sockets[0].serverMessage({ type: 'snapshot', job: running })
    sockets[0].serverMessage({ type: 'update', job: { ...running, progress: 0.5 } })

    expect(sockets[0].url).toBe('ws://127.0.0.1/ws/jobs/j-1/')
    expect(states).toEqual(['connecting', 'open'])
    expect(jobs.map((entry) => entry.type)).toEqual(['snapshot', 'update'])
    expect(jobs[1].job.progress).toBe(0.5)
  })

  it('ignores malformed messages', () => {
    const { sockets, jobs } = connect()
    sockets[0].serverOpen()
    sockets[0].serverMessage('not json')
    sockets[0].serverMessage({ type: 'ping' })
    sockets[0].serverMessage({ type: 'update', job: null })
    sockets[0].serverMessage({ type: 'update', job: { progress: 1 } })

    expect(jobs).toEqual([])
  })

  it('reconnects with doubling delays', () => {
    const { sockets, timers, states } = connect()
    const delays = []
    for (let attempt = 0; attempt < 7; attempt += 1) {
      sockets.at(-1).serverClose(1006)
      delays.push(timers.runNext())
    }

    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000])
    expect(sockets).toHaveLength(8)
    expect(states.at(-1)).toBe('reconnecting')
  })

  it('resets the delay after a connection opens', () => {
    const { sockets, timers } = connect()
    sockets[0].serverClose(1006)
    timers.runNext()
    sockets[1].serverClose(1006)
    expect(timers.runNext()).toBe(1000)

    sockets[2].serverOpen()
    sockets[2].serverClose(1001)

    expect(timers.runNext()).toBe(500)
  })

  it('stops when the job finishes', () => {
    const { sockets, timers, states } = connect()
    sockets[0].serverOpen()
    sockets[0].serverMessage({ type: 'update', job: { ...running, status: 'succeeded', progress: 1 } })
    sockets[0].serverClose(1000)

    expect(sockets[0].closedWith.code).toBe(1000)
    expect(timers.pending).toHaveLength(0)
    expect(states.at(-1)).toBe('closed')
    expect(sockets).toHaveLength(1)
  })

  it('stops on close code 4403', () => {
    const { sockets, timers, states } = connect()
    sockets[0].serverOpen()
    sockets[0].serverClose(CLOSE_FORBIDDEN)

    expect(states.at(-1)).toBe('forbidden')
    expect(timers.pending).toHaveLength(0)
  })

  it('sends refresh only while open', () => {
    const { stream, sockets } = connect()
    expect(stream.refresh()).toBe(false)

    sockets[0].serverOpen()

    expect(stream.refresh()).toBe(true)
    expect(JSON.parse(sockets[0].sent[0])).toEqual({ type: 'refresh' })
  })

  it('close cancels a pending reconnect', () => {
    const { stream, sockets, timers, states } = connect()
    sockets[0].serverClose(1006)
    expect(timers.pending).toHaveLength(1)

    stream.close()

    expect(timers.pending).toHaveLength(0)
    expect(states.at(-1)).toBe('closed')
  })
})
