// The direct upload of the Data page (ballast_ui.components.upload): the browser sends
// the file's parts straight to the object store, to URLs the api presigns, a few at a
// time, with a progress bar; the ui's /_ballast/uploads routes forward to the api with
// the session cookie. Keeps {upload id, file name, size, lastModified} in localStorage,
// so choosing the same file again after a refresh resumes it: the store says which
// parts it holds and only the others are sent. Nothing is kept in a ui server process.
import {
  PARALLEL, SIGN_BATCH, completion, dropRecord, findRecord, keepRecord, partRange, pool,
  progress, progressText, resumePlan, withRetries,
} from './lib/upload_logic.js';

const BASE = '_ballast/uploads';
const ACCEPT = '.csv,.txt,.xlsx,.xlsm,.json,.jsonl,.ndjson,.parquet,.pq';

class UploadError extends Error {
  constructor(message, { status = 0, code = '', retry = true } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retry = retry;
  }
}

async function call(method, path, body) {
  let r;
  try {
    r = await fetch(BASE + path, {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: body ? { 'Content-Type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    throw new UploadError('The server is unreachable; try again in a moment.');
  }
  if (r.status === 204) return null;
  let data = null;
  try {
    data = await r.json();
  } catch (e) {
    data = null;
  }
  if (!r.ok) {
    throw new UploadError((data && data.message) || `the server answered ${r.status}`, {
      status: r.status, code: (data && data.code) || '', retry: r.status >= 500,
    });
  }
  return data;
}

// PUT one part with XMLHttpRequest (fetch reports no upload progress); its ETag.
function putPart(url, blob, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        const etag = xhr.getResponseHeader('ETag');
        if (etag) resolve(etag);
        else reject(new UploadError('The object store hides the ETag header: its CORS rule must expose it.', { retry: false }));
      } else {
        reject(new UploadError(`the object store answered ${xhr.status}`, { status: xhr.status }));
      }
    };
    xhr.onerror = () => reject(new UploadError('the object store is unreachable'));
    xhr.onabort = () => reject(new UploadError('cancelled', { retry: false, code: 'cancelled' }));
    if (signal) signal.addEventListener('abort', () => xhr.abort());
    xhr.send(blob);
  });
}

function view(parent) {
  let root = parent.querySelector('.ballast-upload');
  if (root) return root;
  root = document.createElement('div');
  root.className = 'ballast-upload';
  root.innerHTML = `
    <style>
      .ballast-upload { display: flex; flex-direction: column; gap: .45rem; min-height: 6.5rem; font: inherit; }
      .ballast-upload .row { display: flex; gap: .5rem; align-items: center; }
      .ballast-upload input[type=file] { flex: 1; min-width: 0; font: inherit; font-size: .875rem; }
      .ballast-upload button { font: inherit; font-size: .875rem; padding: .3rem .8rem; border-radius: .5rem;
        border: 1px solid rgba(49, 51, 63, .2); background: transparent; color: inherit; cursor: pointer; }
      .ballast-upload button:disabled { opacity: .45; cursor: default; }
      .ballast-upload progress { width: 100%; height: .6rem; }
      .ballast-upload [role=status] { min-height: 1.4rem; font-size: .875rem; }
    </style>
    <div class="row">
      <input type="file" accept="${ACCEPT}" data-testid="ballast-upload-file" aria-label="File to upload directly">
      <button type="button" data-testid="ballast-upload-start">Upload directly</button>
      <button type="button" data-testid="ballast-upload-cancel" disabled>Cancel upload</button>
    </div>
    <progress data-testid="ballast-upload-progress" max="1" value="0" aria-label="Upload progress"></progress>
    <div data-testid="ballast-upload-status" role="status"></div>`;
  parent.appendChild(root);
  return root;
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const w = window;
  w.__ballastUploads = w.__ballastUploads || {};
  const root = view(parentElement);
  const input = root.querySelector('input[type=file]');
  const start = root.querySelector('[data-testid=ballast-upload-start]');
  const cancel = root.querySelector('[data-testid=ballast-upload-cancel]');
  const bar = root.querySelector('progress');
  const status = root.querySelector('[role=status]');
  root.__data = data;
  // One upload at a time per page, kept on the window: a rerun redraws the element and
  // finds the running upload there.
  const state = w.__ballastUploads[data.user || ''] || (w.__ballastUploads[data.user || ''] = { phase: 'idle' });

  const show = () => {
    const busy = state.phase === 'sending' || state.phase === 'completing';
    start.disabled = busy || !data.enabled;
    input.disabled = busy || !data.enabled;
    cancel.disabled = state.phase !== 'sending';
    bar.value = state.fraction || 0;
    status.textContent = state.message || '';
    root.dataset.phase = state.phase;
  };
  state.show = show;

  const run = async (file) => {
    const d = root.__data;
    const stop = new AbortController();
    Object.assign(state, { phase: 'sending', stop, fraction: 0, message: 'Starting…' });
    state.show();
    let upload = null;
    try {
      const record = findRecord(localStorage, d.user, file);
      if (record) {
        try {
          upload = await call('GET', '/' + record.id);
        } catch (e) {
          if (e.status !== 404) throw e;
        }
        if (!upload || upload.state === 'ABORTED') {
          dropRecord(localStorage, d.user, record.id);
          upload = null;
        }
      }
      if (!upload) {
        const body = { filename: file.name, size: file.size, content_type: file.type || 'application/octet-stream' };
        if (d.name) body.name = d.name;
        if (d.project) body.project_id = d.project;
        upload = await call('POST', '', body);
        keepRecord(localStorage, d.user, file, upload.id);
      }
      let finished = null;
      let resumed = '';
      if (upload.state === 'OPEN') {
        const plan = resumePlan(file.size, upload.part_size, upload.parts);
        const had = Object.keys(plan.done).length;
        if (had) resumed = ` (resumed: ${had} of ${upload.part_count} parts were already stored)`;
        const etags = { ...plan.done };
        let sent = plan.sent;
        const inFlight = {};
        const tick = () => {
          const p = progress(file.size, sent, inFlight);
          state.fraction = p.fraction;
          state.message = (plan.sent ? 'Resumed: ' : 'Uploading: ') + progressText(p.done, p.total);
          state.show();
        };
        tick();
        const sign = async (numbers) => {
          const answer = await call('POST', `/${upload.id}/parts`, { numbers });
          const urls = {};
          for (const u of answer.urls) urls[u.number] = u.url;
          return urls;
        };
        for (let i = 0; i < plan.todo.length; i += SIGN_BATCH) {
          const batch = plan.todo.slice(i, i + SIGN_BATCH);
          const urls = await sign(batch);
          await pool(batch, PARALLEL, async (number) => {
            const [from, to] = partRange(number, file.size, upload.part_size);
            let last = null;
            etags[number] = await withRetries(async (attempt) => {
              if (stop.signal.aborted) throw new UploadError('cancelled', { retry: false, code: 'cancelled' });
              // A refused URL may have expired: a fresh one for the next attempt.
              if (attempt > 1 && last && last.status === 403) Object.assign(urls, await sign([number]));
              inFlight[number] = 0;
              try {
                return await putPart(urls[number], file.slice(from, to), (n) => { inFlight[number] = n; tick(); }, stop.signal);
              } catch (e) {
                last = e;
                inFlight[number] = 0;
                throw e;
              }
            });
            delete inFlight[number];
            sent += to - from;
            tick();
          });
        }
        Object.assign(state, { phase: 'completing', message: 'Joining the parts…' });
        state.show();
        finished = await call('POST', `/${upload.id}/complete`, { parts: completion(etags) });
      } else if (upload.state === 'COMPLETED') {
        finished = await call('POST', `/${upload.id}/complete`, { parts: [{ number: 1, etag: '-' }] });
      }
      dropRecord(localStorage, d.user, upload.id);
      Object.assign(state, {
        phase: 'done', fraction: 1, message: `Uploaded ${file.name}${resumed}: importing…`,
      });
      state.show();
      setTriggerValue('done', { dataset: finished.dataset.id, job: finished.job.id, at: Date.now() });
    } catch (e) {
      const cancelled = e && e.code === 'cancelled';
      if (cancelled && upload) {
        dropRecord(localStorage, d.user, upload.id);
        call('DELETE', '/' + upload.id).catch(() => {});
      }
      const unavailable = e && e.code === 'direct_upload_unavailable';
      Object.assign(state, {
        phase: cancelled ? 'idle' : 'failed',
        fraction: cancelled ? 0 : state.fraction,
        message: cancelled ? 'Cancelled.'
          : unavailable ? 'Direct upload needs S3 storage here: use the file field above.'
            : `Not uploaded: ${e.message}. Choose the same file again to resume.`,
      });
      state.show();
    }
  };

  if (!root.__bound) {
    root.__bound = true;
    start.addEventListener('click', () => {
      const file = input.files && input.files[0];
      if (!file) {
        state.message = 'Choose a file first.';
        state.show();
        return;
      }
      if (!file.size) {
        state.message = `${file.name} is empty: choose a file with data.`;
        state.show();
        return;
      }
      run(file);
    });
    cancel.addEventListener('click', () => {
      if (state.stop) state.stop.abort();
    });
  }
  show();
}
