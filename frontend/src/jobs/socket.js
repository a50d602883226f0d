/**
 * A job progress websocket that reconnects with exponential backoff until the job is
 * finished or the server closes with 4403 (the visitor may no longer watch the job).
 */

import { backoffDelay } from '../lib/backoff.js'
import { isFinished, parseJobMessage } from './state.js'

/** Close code the server sends when the visitor may not watch the job. */
export const CLOSE_FORBIDDEN = 4403

/** Reconnect delays: 0.5 s doubling to at most 10 s. */
export const RECONNECT_BASE_MS = 500
export const RECONNECT_MAX_MS = 10_000

/**
 * Opens and keeps open the progress stream at `url`.
 *
 * Callbacks: `onJob(job, type)` for each snapshot or update, and `onConnection(state)` with
 * state "connecting", "open", "reconnecting", "forbidden" or "closed" ("closed" after the
 * job finished or `close()` was called). `WebSocketImpl` and `setTimer`/`clearTimer`
 * exist for tests. Returns `{refresh, close}`.
 */
export function connectJobSocket(url, options) {
  const {
    onJob = () => {},
    onConnection = () => {},
    WebSocketImpl = globalThis.WebSocket,
    setTimer = (callback, ms) => setTimeout(callback, ms),
    clearTimer = (timer) => clearTimeout(timer),
  } = options

  let socket = null
  let retryTimer = null
  let failedAttempts = 0
  let stopped = false

  function stop(state) {
    stopped = true
    if (retryTimer !== null) clearTimer(retryTimer)
    retryTimer = null
    onConnection(state)
  }

  function open() {
    retryTimer = null
    onConnection(failedAttempts === 0 ? 'connecting' : 'reconnecting')
    const current = new WebSocketImpl(url)
    socket = current

    current.onopen = () => {
      failedAttempts = 0
      onConnection('open')
    }

    current.onmessage = (event) => {
      const message = parseJobMessage(event.data)
      if (!message) return
      onJob(message.job, message.type)
      if (isFinished(message.job.status) && !stopped) {
        stop('closed')
        current.close(1000, 'job finished')
      }
    }

    current.onclose = (event) => {
      if (socket === current) socket = null
      if (stopped) return
      if (event.code === CLOSE_FORBIDDEN) {
        stop('forbidden')
        return
      }
      // NOTE: a server that rejects the handshake (closing before accept) reaches the
      // browser as code 1006, the same as a network failure, so that case keeps retrying.
      const delay = backoffDelay(failedAttempts, { baseMs: RECONNECT_BASE_MS, maxMs: RECONNECT_MAX_MS })
      failedAttempts += 1
      onConnection('reconnecting')
      retryTimer = setTimer(open, delay)
    }
  }

  open()

  return {
    /** Asks the server for a fresh snapshot. Returns false when the socket is not open. */
    refresh() {
      if (!socket || socket.readyState !== 1) return false
      socket.send(JSON.stringify({ type: 'refresh' }))
      return true
    },

    /** Closes the stream for good. */
    close() {
      if (stopped) return
      stop('closed')
      socket?.close(1000, 'page closed')
    },
  }
}
