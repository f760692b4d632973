// The demo's environments in headless Chromium, for `crates/cli/tests/dashboard.rs` (which leaves `preview demo
// --keep` running and passes DASHBOARD, TOKEN, PLAYWRIGHT_CORE, CHROMIUM and SCREENSHOTS): `staging` and the
// preview `pr-1` with their commits, URLs and the database snapshot the preview was made from, the pull request's
// webhook deliveries, the session key's secret in `staging` and substitute in the preview; then the preview is
// deleted from the page. Every check throws on failure; the last line says all passed.
import assert from 'node:assert/strict';
import { launch, shot, watchedPage } from './page.mjs';

const { DASHBOARD, TOKEN } = process.env;

const step = (what) => console.log(`demo: ${what}`);

const browser = await launch();
try {
  const { page, pageErrors, failed } = await watchedPage(browser);

  step('sign in');
  await page.goto(DASHBOARD);
  await page.waitForSelector('form.sign-in');
  await page.fill('#token', TOKEN);
  await page.click('button[type=submit]');
  await page.click('a[href="#/p/shop"]');

  // Both environments the demo left running, each with its commit, its URLs and, for the preview, the golden
  // snapshot its database was copied from; the pull request's preview the demo closed is gone.
  step('the demo\'s environments');
  await page.waitForSelector('[data-state="staging"] .badge');
  await page.waitForSelector('[data-state="pr-1"] .badge');
  assert.equal(await page.textContent('[data-state="staging"]'), 'ready');
  assert.equal(await page.textContent('[data-state="pr-1"]'), 'ready');
  assert.equal(await page.locator('[data-state="pr-2"]').count(), 0, 'the closed pull request\'s preview is gone');
  const row = (name) => page.locator('tr', { has: page.locator(`[data-state="${name}"]`) });
  const staging = await row('staging').textContent();
  const preview = await row('pr-1').textContent();
  assert.match(staging, /https:\/\/storefront-staging\.shop\.localhost:\d+/);
  assert.match(preview, /https:\/\/pr-1\.preview\.example\.test:\d+/);
  for (const name of ['staging', 'pr-1']) {
    const commit = await row(name).locator('td').nth(2).textContent();
    assert.match(commit, /^[0-9a-f]{12}$/, `the commit of ${name}: ${commit}`);
  }
  assert.match(preview, /\(\w+ of staging\)/, `the preview's row names no snapshot of staging: ${preview}`);
  // The pull request the demo opened, pushed to and closed, through signed webhooks.
  await page.waitForSelector('#pull-requests table');
  const pull = await page.locator('#pull-requests tr', { hasText: '#2' }).textContent();
  assert.match(pull, /warmer-welcome/);
  assert.match(pull, /none\s*closed/, `a closed pull request has no preview, and is not waiting for one: ${pull}`);
  await page.waitForSelector('#deliveries table');
  const deliveries = await page.locator('#deliveries tr', { hasText: '#2' }).allTextContents();
  assert.equal(deliveries.length, 3, `opened, pushed, closed: ${deliveries.join(' | ')}`);
  // Each with its own detail (what it was about, at which commit) and what became of the pull request since.
  const actions = deliveries.map((delivery) => {
    const [, action] = delivery.match(/acceptedpull request #2 (opened|pushed|closed) at [0-9a-f]{12}; pull request now: closed$/) || [];
    assert.ok(action, `a delivery's detail: ${delivery}`);
    return action;
  });
  assert.deepEqual(actions.sort(), ['closed', 'opened', 'pushed']);
  await page.waitForSelector('#snapshots table');
  assert.match(await page.textContent('#snapshots'), /staging/);
  await shot(page, 'demo-environments');

  // The storefront's session key: in `staging` a secret, shown by its fingerprint; in the preview the substitute
  // the demo set for previews, with staging's value it shadows hidden.
  step('the session key');
  await page.goto(`${DASHBOARD}#/p/shop/e/staging`);
  await page.waitForSelector('[data-service="storefront"] table');
  assert.match(await page.textContent('[data-service="storefront"]'), /SESSION_KEY\[secret\] [0-9a-f]{16} \(service:storefront\)/);
  await page.goto(`${DASHBOARD}#/p/shop/e/pr-1`);
  // (The same page for another environment: waited for until it shows the preview's.)
  await page.locator('[data-service="storefront"]', { hasText: 'PREVIEW_ENVIRONMENTpr-1' }).waitFor();
  const variables = await page.textContent('[data-service="storefront"]');
  assert.match(variables, /SESSION_KEYpreview-only-session-key/);
  assert.match(variables, /source environment: \[secret\] — environment `staging`/);
  await shot(page, 'demo-preview');

  // Deleted from the page: its deployment runs to the end, and the list no longer has it.
  step('delete the preview');
  page.once('dialog', (dialog) => dialog.accept());
  await page.click('[data-action="delete"]');
  await page.waitForURL(/#\/d\/[a-z0-9]+$/);
  await page.waitForSelector('#status .badge.committed', { timeout: 120000 });
  await page.goto(`${DASHBOARD}#/p/shop`);
  await page.waitForSelector('[data-state="staging"]');
  assert.equal(await page.locator('[data-state="pr-1"]').count(), 0);

  assert.deepEqual(pageErrors, [], 'the page raised no error');
  assert.deepEqual(failed.filter((f) => f !== '401 GET /dashboard/session'), [], `failed answers: ${failed.join(', ')}`);
  console.log('demo: every check passed');
} finally {
  await browser.close();
}
