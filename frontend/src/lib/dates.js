/**
 * Formats an ISO 8601 time as "YYYY-MM-DD HH:MM" in UTC, the form the server's templates use,
 * so times written by the page and by the server read alike. Returns the input unchanged when
 * it is not a valid time, and '' for an empty value.
 */
export function formatDateTime(iso) {
  if (!iso) return ''
  const date = new Date(iso)
  if (Number.isNaN(date.getTime())) return iso
  return date.toISOString().slice(0, 16).replace('T', ' ')
}
