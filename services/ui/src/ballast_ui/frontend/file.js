// The file field (ballast_ui.components.file_field, used by widgets.s_file): a file
// input whose choice is read here, in the browser, and sent on the session's own
// WebSocket as one trigger value {name, size, type, sha256, content_b64} (content only
// up to the field's inline limit). Streamlit's own uploader PUTs the bytes to an URL
// that only the server process holding the session can take; this field needs no
// affinity, so any ui replica serves every HTTP request of the page.
import { fileValue, formatBytes, keptText, refusal } from './lib/file_logic.js';

function view(parent, data) {
  let root = parent.querySelector('.ballast-file');
  if (root) return root;
  root = document.createElement('div');
  root.className = 'ballast-file';
  root.innerHTML = `
    <style>
      .ballast-file { display: flex; flex-direction: column; gap: .3rem; font: inherit; }
      .ballast-file label { font-size: .875rem; line-height: 1.4; min-height: 1.25rem; }
      .ballast-file .row { display: flex; gap: .5rem; align-items: center; min-height: 2.5rem; }
      .ballast-file input[type=file] { flex: 1; min-width: 0; font: inherit; font-size: .875rem; }
      .ballast-file button { font: inherit; font-size: .875rem; padding: .3rem .8rem; border-radius: .5rem;
        border: 1px solid rgba(49, 51, 63, .2); background: transparent; color: inherit; cursor: pointer; }
      .ballast-file button:disabled { opacity: .45; cursor: default; }
      .ballast-file [role=status] { font-size: .875rem; line-height: 1.4; min-height: 1.25rem; opacity: .7;
        white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
      .ballast-file [role=status][data-problem] { opacity: 1; color: rgb(255, 43, 43); }
    </style>
    <label></label>
    <div class="row">
      <input type="file" data-testid="ballast-file-input">
      <button type="button" data-testid="ballast-file-remove">Remove</button>
    </div>
    <div data-testid="ballast-file-status" role="status"></div>`;
  const input = root.querySelector('input');
  input.id = `ballast-file-${data.key || ''}`.replace(/[^A-Za-z0-9_-]/g, '-');
  root.querySelector('label').htmlFor = input.id;
  parent.appendChild(root);
  return root;
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const root = view(parentElement, data);
  const label = root.querySelector('label');
  const input = root.querySelector('input');
  const remove = root.querySelector('button');
  const status = root.querySelector('[role=status]');
  root.__data = data;
  root.__state = root.__state || { busy: false, message: '', problem: false, sent: null };
  const state = root.__state;

  const show = () => {
    const d = root.__data;
    const kept = d.kept || null;
    // The server refused the last file sent (its `problem`, new each time): say why.
    if (d.problem && d.problem.at !== state.problemAt) {
      state.problemAt = d.problem.at;
      state.sent = null;
      state.message = d.problem.text;
      state.problem = true;
    }
    // A sent file is shown as sending until the server's answer names it.
    if (state.sent && kept && kept.name === state.sent.name && kept.size === state.sent.size) {
      state.sent = null;
      state.message = '';
    }
    if (state.sent && !kept && state.sent.removed) state.sent = null;
    label.textContent = d.label || '';
    input.setAttribute('aria-label', d.label || 'File');
    input.accept = (d.accept || []).map((e) => '.' + String(e).replace(/^\./, '')).join(',');
    input.disabled = !!d.disabled || state.busy;
    remove.disabled = !!d.disabled || state.busy || !kept;
    remove.style.visibility = kept ? 'visible' : 'hidden';
    const text = state.message || keptText(kept);
    status.textContent = text || '\u00a0';
    if (state.problem && state.message) status.dataset.problem = '';
    else delete status.dataset.problem;
  };

  const say = (message, problem = false) => {
    state.message = message;
    state.problem = problem;
    show();
  };

  const choose = async () => {
    const d = root.__data;
    const file = input.files && input.files[0];
    if (!file) return;
    const problem = refusal(file, { accept: d.accept, maxBytes: d.max_bytes || 0 });
    if (problem) {
      input.value = '';
      say(problem, true);
      return;
    }
    state.busy = true;
    say(`Reading ${file.name} (${formatBytes(file.size)})…`);
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const subtle = window.crypto && window.crypto.subtle ? window.crypto.subtle : null;
      const value = await fileValue(file, bytes, { inlineLimit: d.inline_limit || 0, subtle });
      state.sent = { name: value.name, size: value.size };
      state.busy = false;
      say(`Sending ${file.name}…`);
      setTriggerValue('file', { ...value, at: Date.now() });
    } catch (e) {
      state.busy = false;
      say(`${file.name} could not be read: ${(e && e.message) || e}. Choose it again.`, true);
    } finally {
      input.value = '';
    }
  };

  if (!root.__bound) {
    root.__bound = true;
    input.addEventListener('change', () => { choose(); });
    remove.addEventListener('click', () => {
      state.sent = { removed: true };
      say('');
      setTriggerValue('file', { removed: true, at: Date.now() });
    });
  }
  show();
}
