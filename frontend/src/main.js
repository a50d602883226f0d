/**
 * Entry point of the browser bundle, included in every page by base.html through
 * django-vite (`{% vite_asset 'src/main.js' %}`).
 */

import { mountComponents } from './mount.js'
import JobProgress from './components/JobProgress.vue'
import Uploader from './components/Uploader.vue'
import MrcHeaderPreview from './components/MrcHeaderPreview.vue'
import TomogramRun from './components/TomogramRun.vue'

const components = {
  'job-progress': JobProgress,
  uploader: Uploader,
  'mrc-header-preview': MrcHeaderPreview,
  'tomogram-run': TomogramRun,
}

function mountPage() {
  mountComponents(document, components)
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', mountPage, { once: true })
} else {
  mountPage()
}
