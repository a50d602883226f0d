import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

const root = fileURLToPath(new URL('.', import.meta.url))

// Django serves the build from static/dist through django-vite, which looks entries up in
// static/dist/.vite/manifest.json by their path relative to this root ("src/main.js").
export default defineConfig({
  root,
  base: '/static/dist/',
  plugins: [vue()],
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL('../static/dist', import.meta.url)),
    emptyOutDir: true,
    manifest: true,
    rolldownOptions: {
      input: fileURLToPath(new URL('./src/main.js', import.meta.url)),
    },
  },
  test: {
    include: ['tests/**/*.test.js'],
    environment: 'node',
  },
})
