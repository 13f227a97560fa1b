// ESLint (flat config) for the browser code of ballast_ui.components and its node tests.
// The browser modules live in the Python package (services/ui/src/ballast_ui/frontend,
// served by Streamlit as they are), outside this directory, and ESLint lints nothing
// outside its base path: so it runs from services/ui with this file named,
//   cd services/ui && frontend/node_modules/.bin/eslint -c frontend/eslint.config.js
// which `npm run lint` (here) and `make lint-js` do.
// Ref: https://eslint.org/docs/latest/use/configure/configuration-files
import js from '@eslint/js';

const readonly = (names) => Object.fromEntries(names.map((name) => [name, 'readonly']));

// The globals the component modules use (no `globals` package needed).
const browser = readonly([
  'AbortController', 'ArrayBuffer', 'Element', 'HTMLInputElement', 'HTMLTextAreaElement', 'MutationObserver',
  'TextDecoder', 'URLSearchParams', 'WebSocket', 'XMLHttpRequest', 'btoa', 'clearTimeout', 'document',
  'fetch', 'localStorage', 'performance', 'setTimeout', 'window',
]);
const node = readonly(['Buffer', 'TextDecoder', 'TextEncoder', 'btoa', 'URL', 'URLSearchParams', 'console', 'process']);

const rules = {
  ...js.configs.recommended.rules,
  // A journal write may fail (storage full or denied): catching and going on is deliberate.
  'no-unused-vars': ['error', { caughtErrors: 'none' }],
  eqeqeq: 'error',
  'no-var': 'error',
  'prefer-const': 'error',
};

export default [
  { ignores: ['frontend/node_modules/'] },
  {
    files: ['src/ballast_ui/frontend/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: browser },
    rules,
  },
  {
    files: ['frontend/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: node },
    rules,
  },
];
