/**
 * Page wording for the anomaly review: readable field names in API errors and the default
 * category of a span a reviewer confirms.
 */

import { temporalIou } from './segments.js'

// Labels of the review form's fields, as the API names them.
export const FIELD_LABELS = {
  start_s: 'Start',
  end_s: 'End',
  category: 'Category',
  threshold: 'Threshold',
  decision: 'Decision',
  note: 'Note',
}

/**
 * Returns an API error as one line that names the form's fields by their labels. `error.errors`
 * contains the API's field errors ({field: [message, ...]}); without it the error's message is used.
 */
export function readableError(error, labels = FIELD_LABELS) {
  if (!error?.errors || typeof error.errors !== 'object') return error?.message ?? String(error)
  const parts = []
  for (const [field, messages] of Object.entries(error.errors)) {
    const text = (Array.isArray(messages) ? messages : [messages]).join(' ')
    const label = labels[field]
    if (field === 'non_field_errors' || !label || text.startsWith(label)) parts.push(text)
    else parts.push(`${label}: ${text}`)
  }
  return parts.join(' ')
}

/**
 * Returns the category to preselect for a span [startS, endS]: that of the stored segment it
 * overlaps most, else "other" when the categories have it, else the first category.
 */
export function suggestedCategory(span, stored, categories) {
  let best = null
  let bestIou = 0
  for (const segment of stored) {
    const iou = temporalIou(span, [segment.start_s, segment.end_s])
    if (iou > bestIou && segment.category in categories) {
      best = segment.category
      bestIou = iou
    }
  }
  if (best) return best
  return 'other' in categories ? 'other' : Object.keys(categories)[0]
}
