/**
 * Plain-text accounts of a comparison's ranking: the order of the table, how many rows the run
 * kept, and which measured property ranked a row.
 */

/** Return a readable name for the measured property in a hypothesis's `source`. */
export function featureLabel(source) {
  if (!source?.feature) return ''
  // Rows stored before the label was recorded name only the feature.
  return source.label || source.feature.replaceAll('+', ' and ').replaceAll('_', ' ')
}

/** Return the sentence that says what ranked a row, such as "Ranked on each image's measured object count." */
export function describeRanker(row) {
  const label = featureLabel(row.source)
  if (row.ranker === 'measured' && label) return `Ranked on each image's measured ${label}.`
  if (label) return `Ranked by ${row.ranker} on each image's measured ${label}.`
  return `Ranked by ${row.ranker}.`
}

/**
 * Return the order of the table and, when the "Number of hypotheses" option cut the run's
 * ranking short, how many rows it kept of how many.
 */
export function describeRankOrder(data) {
  let text = data.rank_order || ''
  const summary = data.summary || {}
  if (summary.proposed > summary.kept) {
    text += ` The run ranked ${summary.proposed} hypotheses and kept the top ${summary.kept} (the Number of hypotheses option).`
  }
  return text.trim()
}
