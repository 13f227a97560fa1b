// The page navigation (ballast_ui.components.nav). A click shows the target page at once
// in the browser (every permitted page is rendered and kept; CSS shows the one named by
// body[data-bpage]), then tells the server, whose answer sets the URL.
import {
  POLL_MS, clickAhead, isPlainClick, loadOver, navHtml, nextCalm, pageOfSearch,
} from './lib/nav_logic.js';

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const w = window;
  let root = parentElement.querySelector('nav.ballast-nav');
  const mark = (page) => {
    root.querySelectorAll('a[data-page]').forEach((a) => {
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
  };
  if (!root) {
    root = document.createElement('nav');
    root.className = 'ballast-nav';
    root.setAttribute('aria-label', 'Pages');
    parentElement.appendChild(root);
    root.addEventListener('click', (e) => {
      const a = e.target.closest('a[data-page]');
      if (!a || !isPlainClick(e)) return;
      e.preventDefault();
      const page = a.dataset.page;
      document.body.dataset.bpage = page;
      mark(page);
      // The URL is left to the server's answer (Streamlit pushes the history entry):
      // Streamlit sends its own idea of the query string with every rerun, so a URL
      // pushed here would make the server confirm an older click after a newer one
      // and push a stale entry into the history.
      w.__ballastNavPending = { page, t: performance.now() };
      setTriggerValue('nav', page);
    });
    if (!w.__ballastPop) {
      w.__ballastPop = true;
      window.addEventListener('popstate', () => {
        const page = pageOfSearch(window.location.search);
        if (page && document.querySelector('.st-key-bpage-' + page)) {
          document.body.dataset.bpage = page;
          w.__ballastNavPending = { page, t: performance.now() };
        }
      });
    }
  }
  if (!w.__ballastLoading) {
    // The page load is over once the shown page has its heading and no element of any
    // page is still a loading skeleton, for 300 ms; pages hide their skeletons until
    // then (see ballast_ui.app.LOADING_CSS), never after (a rerun must not hide them).
    w.__ballastLoading = true;
    const t0 = performance.now();
    let calm = 0;
    const tick = () => {
      const shown = document.querySelector('.st-key-bpage-' + (document.body.dataset.bpage || data.current));
      const busy = document.querySelector('[class*="st-key-bpage-"] [data-testid="stSkeleton"]');
      calm = nextCalm(calm, shown && shown.querySelector('h1, h2, h3') && !busy);
      if (loadOver(calm, performance.now() - t0)) document.body.dataset.bloaded = '1';
      else setTimeout(tick, POLL_MS);
    };
    tick();
  }
  const html = navHtml(data.items);
  if (root.__html !== html) { root.innerHTML = html; root.__html = html; }
  const pending = w.__ballastNavPending;
  if (clickAhead(pending, data.current, performance.now())) {
    mark(pending.page);  // the server has not caught up with a click yet
  } else {
    w.__ballastNavPending = null;
    document.body.dataset.bpage = data.current;
    mark(data.current);
  }
}
