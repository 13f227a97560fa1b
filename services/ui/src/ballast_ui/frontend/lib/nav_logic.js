// The navigation's decisions, apart from the DOM.

// The links, one per page (items: {name, title, icon, href}, made by the server).
export function navHtml(items) {
  return items.map((it) =>
    `<a href="${it.href}" data-page="${it.name}"><span aria-hidden="true">${it.icon}</span> ${it.title}</a>`
  ).join('');
}

// A plain left click (no modifier): the page is shown in place; others keep the
// browser's own meaning (new tab, new window, ...).
export function isPlainClick(e) {
  return !(e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey);
}

// How long a click waits for the server to confirm the page before the server's word wins.
export const PENDING_MS = 3000;

// Whether a click (pending: {page, t}) is still ahead of the server's current page.
export function clickAhead(pending, current, now) {
  return Boolean(pending && pending.page !== current && now - pending.t < PENDING_MS);
}

// The page named by a URL's query string (null when none).
export function pageOfSearch(search) {
  return new URLSearchParams(search).get('page');
}

// The load is over after this many calm checks in a row (one per POLL_MS), or after
// GIVE_UP_MS whatever the page does.
export const CALM_CHECKS = 6;
export const POLL_MS = 50;
export const GIVE_UP_MS = 10000;

// The next count of calm checks: one more when the page is settled, else none.
export function nextCalm(calm, settled) {
  return settled ? calm + 1 : 0;
}

export function loadOver(calm, elapsed) {
  return calm >= CALM_CHECKS || elapsed > GIVE_UP_MS;
}
