// The pure logic of the file field (file.js): whether a chosen file is accepted, and
// the value it sends to the server ({name, size, type, sha256, content_b64}). The
// bytes travel on the session's own WebSocket (a trigger value), never to an upload
// URL of one server process, so any ui replica can serve every HTTP request.

/** The lower-case extension of `name` without its dot ('' when none). */
export function extension(name) {
  const dot = String(name).lastIndexOf('.');
  return dot > 0 ? String(name).slice(dot + 1).toLowerCase() : '';
}

/** `n` bytes for people: "812 bytes", "1.5 KB", "12.0 MB". */
export function formatBytes(n) {
  if (n < 1024) return `${n.toLocaleString('en-US')} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 * 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MB`;
  return `${(n / (1024 * 1024 * 1024)).toFixed(1)} GB`;
}

/**
 * Why `file` ({name, size}) cannot be taken, or null. `accept` lists the allowed
 * extensions (empty: any); `maxBytes` is the largest size (0: no limit).
 */
export function refusal(file, { accept = [], maxBytes = 0 } = {}) {
  const allowed = (accept || []).map((e) => String(e).toLowerCase().replace(/^\./, ''));
  if (allowed.length && !allowed.includes(extension(file.name))) {
    return `${file.name} is not one of: ${allowed.map((e) => '.' + e).join(', ')}.`;
  }
  if (maxBytes > 0 && file.size > maxBytes) {
    return `${file.name} is ${formatBytes(file.size)}; this field takes at most ${formatBytes(maxBytes)}.`;
  }
  return null;
}

/** Lower-case hex of the bytes in `buffer` (an ArrayBuffer). */
export function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Base64 of `bytes` (a Uint8Array), in slices (no argument-count limit). */
export function base64(bytes) {
  const SLICE = 0x8000;
  let binary = '';
  for (let i = 0; i < bytes.length; i += SLICE) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + SLICE));
  }
  return btoa(binary);
}

/**
 * The value sent for a chosen file: its content (base64) when it is at most
 * `inlineLimit` bytes, its SHA-256 when `subtle` (crypto.subtle) is there (only in a
 * secure context: HTTPS or localhost; the server computes it itself from the content).
 */
export async function fileValue(file, bytes, { inlineLimit = 0, subtle = null } = {}) {
  let sha256 = null;
  if (subtle) {
    try {
      sha256 = hex(await subtle.digest('SHA-256', bytes));
    } catch (e) {
      sha256 = null;
    }
  }
  return {
    name: file.name,
    size: bytes.byteLength,
    type: file.type || 'application/octet-stream',
    sha256,
    content_b64: bytes.byteLength <= inlineLimit ? base64(bytes) : null,
  };
}

/** The line under the field: the kept file, or nothing. */
export function keptText(kept) {
  if (!kept || !kept.name) return '';
  return `Kept: ${kept.name} (${Number(kept.size || 0).toLocaleString('en-US')} bytes)`;
}
