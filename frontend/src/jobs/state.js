/**
 * Pure helpers for a job snapshot `{uuid, kind, status, stage, progress, log, error, ...}`
 * as sent by the server in the page and over the progress websocket.
 */

/** Job statuses after which the job never changes again. */
export const FINISHED_STATUSES = new Set(['succeeded', 'failed', 'cancelled'])

/** Lines of the job log shown under the progress bar: all that a snapshot carries. */
export const VISIBLE_LOG_LINES = 50

export function isFinished(status) {
  return FINISHED_STATUSES.has(status)
}

/**
 * Returns the job's progress as a whole percentage 0–100 from `progress`, a fraction 0..1.
 * A succeeded job counts as 100 even if its last report was lower.
 */
export function progressPercent(job) {
  if (job?.status === 'succeeded') return 100
  const fraction = Number(job?.progress)
  if (!Number.isFinite(fraction)) return 0
  return Math.max(0, Math.min(100, Math.round(fraction * 100)))
}

/** Returns the last `count` lines of the job log, or an empty array. */
export function lastLogLines(job, count = VISIBLE_LOG_LINES) {
  return Array.isArray(job?.log) ? job.log.slice(-count) : []
}

/** Returns the websocket URL of a job's progress stream on the page's own host. */
export function jobSocketUrl(location, jobUuid) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${location.host}/ws/jobs/${encodeURIComponent(jobUuid)}/`
}

/**
 * Parses one websocket message. Returns `{type, job}` for a snapshot or update that
 * carries a job object, otherwise null.
 */
export function parseJobMessage(text) {
  let message
  try {
    message = JSON.parse(text)
  } catch {
    return null
  }
  if (!message || (message.type !== 'snapshot' && message.type !== 'update')) return null
  if (!message.job || typeof message.job !== 'object' || typeof message.job.status !== 'string') return null
  return message
}
