/**
 * Entry point of the browser bundle, included in every page by base.html through
 * django-vite (`{% vite_asset 'src/main.js' %}`).
 */

import { mountComponents } from './mount.js'
import JobProgress from './components/JobProgress.vue'
import Uploader from './components/Uploader.vue'
import MrcHeaderPreview from './components/MrcHeaderPreview.vue'
import TomogramRun from './components/TomogramRun.vue'
import ComparisonGroups from './components/ComparisonGroups.vue'
import ComparisonResult from './components/ComparisonResult.vue'
import SceneEditor from './components/SceneEditor.vue'
import AnomalyReview from './components/AnomalyReview.vue'

const components = {
  'job-progress': JobProgress,
  uploader: Uploader,
  'mrc-header-preview': MrcHeaderPreview,
  'tomogram-run': TomogramRun,
  'comparison-groups': ComparisonGroups,
  'comparison-result': ComparisonResult,
  'scene-editor': SceneEditor,
  'anomaly-review': AnomalyReview,
}

function mountPage() {
  mountComponents(document, components)
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', mountPage, { once: true })
} else {
  mountPage()
}
