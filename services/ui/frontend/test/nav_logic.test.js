import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CALM_CHECKS, GIVE_UP_MS, PENDING_MS, clickAhead, isPlainClick, loadOver, navHtml, nextCalm, pageOfSearch,
} from '../../src/ballast_ui/frontend/lib/nav_logic.js';

describe('navHtml', () => {
  test('one link per page, as the server names it', () => {
    const html = navHtml([
      { name: 'home', title: 'Home', icon: '🏠', href: '?page=home' },
      { name: 'projects', title: 'Projects', icon: '📁', href: '?page=projects' },
    ]);
    assert.equal(html,
      '<a href="?page=home" data-page="home"><span aria-hidden="true">🏠</span> Home</a>'
      + '<a href="?page=projects" data-page="projects"><span aria-hidden="true">📁</span> Projects</a>');
    assert.equal(navHtml([]), '');
  });
});

describe('isPlainClick', () => {
  test('a left click without modifiers only', () => {
    assert.equal(isPlainClick({ button: 0 }), true);
    assert.equal(isPlainClick({ button: 1 }), false);
    for (const mod of ['metaKey', 'ctrlKey', 'shiftKey', 'altKey']) {
      assert.equal(isPlainClick({ button: 0, [mod]: true }), false, mod);
    }
  });
});

describe('clickAhead', () => {
  test('a click the server has not confirmed yet, for a while', () => {
    const pending = { page: 'projects', t: 1000 };
    assert.equal(clickAhead(pending, 'home', 1000 + PENDING_MS - 1), true);
    assert.equal(clickAhead(pending, 'home', 1000 + PENDING_MS), false);
    assert.equal(clickAhead(pending, 'projects', 1001), false);
    assert.equal(clickAhead(null, 'home', 0), false);
    assert.equal(clickAhead(undefined, 'home', 0), false);
  });
});

describe('pageOfSearch', () => {
  test('the page parameter of a query string', () => {
    assert.equal(pageOfSearch('?page=projects&id=3'), 'projects');
    assert.equal(pageOfSearch(''), null);
  });
});

describe('the load', () => {
  test('is over after enough calm checks in a row, or after a while anyway', () => {
    let calm = 0;
    for (let i = 0; i < CALM_CHECKS - 1; i++) calm = nextCalm(calm, true);
    assert.equal(loadOver(calm, 0), false);
    assert.equal(loadOver(nextCalm(calm, true), 0), true);
    assert.equal(nextCalm(calm, false), 0);
    assert.equal(nextCalm(calm, undefined), 0);
    assert.equal(loadOver(0, GIVE_UP_MS + 1), true);
    assert.equal(loadOver(0, GIVE_UP_MS), false);
  });
});
