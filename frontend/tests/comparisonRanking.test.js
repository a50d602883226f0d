import { describe, expect, it } from 'vitest'
import { describeRanker, describeRankOrder, featureLabel } from '../src/comparisons/ranking.js'

describe('describeRanker', () => {
  it('names the measured property in words', () => {
    const row = { ranker: 'measured', source: { feature: 'lbp_entropy', label: 'local binary pattern entropy' } }
    expect(describeRanker(row)).toBe("Ranked on each image's measured local binary pattern entropy.")
  })

  it('falls back to the feature name without underscores', () => {
    expect(featureLabel({ feature: 'object_area+circularity' })).toBe('object area and circularity')
  })

  it('names a ranker without a property', () => {
    expect(describeRanker({ ranker: 'clip', source: {} })).toBe('Ranked by clip.')
  })
})

describe('describeRankOrder', () => {
  it('says how many rows the run kept', () => {
    const text = describeRankOrder({ rank_order: 'Sorted by AUROC.', summary: { proposed: 22, kept: 20 } })
    expect(text).toBe('Sorted by AUROC. The run ranked 22 hypotheses and kept the top 20 (the Number of hypotheses option).')
  })

  it('leaves the count out when every row was kept', () => {
    expect(describeRankOrder({ rank_order: 'Sorted by AUROC.', summary: { proposed: 5, kept: 5 } })).toBe('Sorted by AUROC.')
  })
})
