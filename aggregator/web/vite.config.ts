/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// The build lands in aggregator/internal/console/dist, where `go build
// -tags console` embeds it (go:embed cannot reach outside its package).
// scripts/postbuild.mjs then writes the .gz/.br siblings the Go handler
// serves and checks the size budget.
export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: '../internal/console/dist',
    emptyOutDir: true,
    target: 'es2022',
    cssCodeSplit: true,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    assetsInlineLimit: 0,
  },
  server: {
    // `npm run dev` proxies the API to an aggregator on :8080 (change the
    // port to the one `make demo` prints).
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
