/**
 * Plain-text account of how a typed hypothesis was ranked, from the `typed_ranking` field of
 * the hypotheses API: the path (CLIP image embeddings, sentence embedder or shared words), the
 * measured property it matched, and why a better path was not taken.
 */

function formatSimilarity(value) {
  return typeof value === 'number' ? `, cosine similarity ${value.toFixed(2)}` : ''
}

export function describeTypedRanking(ranking) {
  if (!ranking) return ''
  let text
  if (ranking.path === 'clip') {
    text = `Ranked by CLIP (${ranking.model}) on the stored image embeddings.`
  } else {
    const how = ranking.path === 'sentence_embedder' ? 'by the sentence embedder' : 'by shared words'
    text = `Matched to the measured property "${ranking.phrase}" (${ranking.feature}) ${how}${formatSimilarity(ranking.similarity)}.`
  }
  if (ranking.note) text += ` Note: ${ranking.note}.`
  return text
}

/** Return the short label shown under a typed row's description in the table. */
export function matchLabel(ranking) {
  if (!ranking) return ''
  if (ranking.path === 'clip') return 'CLIP image embeddings'
  return `matched: ${ranking.phrase} (${ranking.feature})`
}
