// The pure logic of the direct upload (upload.js): which parts to send, resuming from
// the parts the object store holds, the record that lets a refreshed page resume, the
// progress, and a small pool that sends a few parts at once, retrying a failed one.

// Parts sent at the same time, URLs asked for at once, attempts per part.
export const PARALLEL = 3;
export const SIGN_BATCH = 12;
export const ATTEMPTS = 5;
export const RETRY_MS = 500;
const RECORDS = 'ballast.uploads.';
// A record older than this is dropped (the bucket drops incomplete uploads after a day).
export const RECORD_TTL_MS = 20 * 3600 * 1000;

/** The byte range [start, end) of part `number` (1-based). */
export function partRange(number, size, partSize) {
  const start = (number - 1) * partSize;
  return [start, Math.min(start + partSize, size)];
}

/** The number of parts of a `size`-byte file cut in `partSize` parts. */
export function partCount(size, partSize) {
  return Math.ceil(size / partSize);
}

/**
 * What is left to send: the parts the store does not hold whole. `held` is the list
 * the server answered ({number, size, etag}); a part of the wrong size is sent again.
 * Returns {todo: [numbers], done: {number: etag}, sent: bytes already there}.
 */
export function resumePlan(size, partSize, held) {
  const count = partCount(size, partSize);
  const done = {};
  let sent = 0;
  for (const part of held || []) {
    if (!Number.isInteger(part.number) || part.number < 1 || part.number > count) continue;
    const [start, end] = partRange(part.number, size, partSize);
    if (part.size === end - start && part.etag) {
      done[part.number] = part.etag;
      sent += part.size;
    }
  }
  const todo = [];
  for (let n = 1; n <= count; n += 1) if (!(n in done)) todo.push(n);
  return { todo, done, sent };
}

/** The parts to name on completion, in order. */
export function completion(etags) {
  return Object.keys(etags).map(Number).sort((a, b) => a - b)
    .map((number) => ({ number, etag: etags[number] }));
}

/** Whether a kept record is about this very file (name, size and modification time). */
export function sameFile(record, file) {
  return !!record && record.name === file.name && record.size === file.size
    && record.lastModified === file.lastModified;
}

function recordsKey(user) {
  return RECORDS + (user || 'anonymous');
}

/** The kept records of unfinished uploads ({id, name, size, lastModified, at}). */
export function loadRecords(storage, user, now = Date.now()) {
  try {
    const list = JSON.parse(storage.getItem(recordsKey(user)) || '[]');
    return Array.isArray(list) ? list.filter((r) => r && r.id && now - (r.at || 0) < RECORD_TTL_MS) : [];
  } catch (e) {
    return [];
  }
}

function saveRecords(storage, user, list) {
  try {
    if (list.length) storage.setItem(recordsKey(user), JSON.stringify(list));
    else storage.removeItem(recordsKey(user));
  } catch (e) {
    // storage full or denied: the upload works, only a refresh cannot resume it
  }
}

/** The record of an unfinished upload of `file`, if one is kept. */
export function findRecord(storage, user, file, now = Date.now()) {
  return loadRecords(storage, user, now).find((r) => sameFile(r, file)) || null;
}

/** Keep (replace) the record of an upload of `file`. */
export function keepRecord(storage, user, file, id, now = Date.now()) {
  const list = loadRecords(storage, user, now).filter((r) => !sameFile(r, file) && r.id !== id);
  list.push({ id, name: file.name, size: file.size, lastModified: file.lastModified, at: now });
  saveRecords(storage, user, list);
}

/** Forget the record of upload `id`. */
export function dropRecord(storage, user, id, now = Date.now()) {
  saveRecords(storage, user, loadRecords(storage, user, now).filter((r) => r.id !== id));
}

/** Bytes sent so far: the finished parts plus what is in flight. */
export function progress(total, sent, inFlight) {
  let done = sent;
  for (const key of Object.keys(inFlight)) done += inFlight[key];
  done = Math.min(done, total);
  return { done, total, fraction: total ? done / total : 0 };
}

function unit(bytes) {
  if (bytes >= 1e9) return (bytes / 1e9).toFixed(2) + ' GB';
  if (bytes >= 1e6) return (bytes / 1e6).toFixed(1) + ' MB';
  if (bytes >= 1e3) return (bytes / 1e3).toFixed(1) + ' kB';
  return bytes + ' B';
}

/** "12.3 MB of 40.0 MB (30 %)". */
export function progressText(done, total) {
  const pct = total ? Math.floor((100 * done) / total) : 0;
  return `${unit(done)} of ${unit(total)} (${pct} %)`;
}

/** Wait before attempt `attempt` (1-based; 0 for the first) of a part. */
export function retryDelay(attempt, base = RETRY_MS) {
  return attempt <= 1 ? 0 : base * 2 ** (attempt - 2);
}

/**
 * Run `work(item)` for every item, at most `parallel` at once; the first error stops
 * taking new items and is thrown once the running ones ended.
 */
export async function pool(items, parallel, work) {
  const queue = items.slice();
  let failure = null;
  const lane = async () => {
    while (queue.length && !failure) {
      const item = queue.shift();
      try {
        await work(item);
      } catch (e) {
        failure = failure || e;
      }
    }
  };
  const lanes = [];
  for (let i = 0; i < Math.min(parallel, items.length); i += 1) lanes.push(lane());
  await Promise.all(lanes);
  if (failure) throw failure;
}

/**
 * Send one part with retries: `put(attempt)` resolves to the ETag or throws an error
 * with `retry` false for a refusal that another attempt cannot fix (e.g. cancelled).
 */
export async function withRetries(put, { attempts = ATTEMPTS, sleep, base = RETRY_MS } = {}) {
  const pause = sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
  let last = null;
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    const wait = retryDelay(attempt, base);
    if (wait) await pause(wait);
    try {
      return await put(attempt);
    } catch (e) {
      last = e;
      if (e && e.retry === false) break;
    }
  }
  throw last;
}
