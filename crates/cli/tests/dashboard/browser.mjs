// The dashboard in headless Chromium, for `crates/cli/tests/dashboard.rs` (which starts the daemon and passes
// DASHBOARD, TOKEN, GATEWAY, PLAYWRIGHT_CORE, CHROMIUM, SCREENSHOTS, CANARY, CONTROL and REPO). Every check throws on
// failure; the last line says all passed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { launch, shot, watchedPage } from './page.mjs';

const { DASHBOARD, TOKEN, GATEWAY, CANARY, CONTROL, REPO } = process.env;
const origin = new URL(DASHBOARD).origin;

// Everything the browser received, to look for the secret's value in.
const received = [];

/// A new commit on the project's branch, so that the next deployment has something to build.
function commit(message) {
  execFileSync('git', ['-C', REPO, '-c', 'user.name=test', '-c', 'user.email=test@example.test', '-c', 'safe.directory=*',
    'commit', '--quiet', '--allow-empty', '-m', message]);
}

function step(what) {
  console.log(`dashboard: ${what}`);
}

/// A GET through the gateway to the app of `environment`.
function throughGateway(environment, urlPath) {
  const [host, port] = GATEWAY.split(':');
  return new Promise((resolve, reject) => {
    const request = http.request({ host, port, path: urlPath, headers: { Host: `web-${environment}.board.localhost` } }, (response) => {
      let body = '';
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode, body }));
    });
    request.on('error', reject);
    request.end();
  });
}

const browser = await launch();
try {
  const { context, page, pageErrors, failed } = await watchedPage(browser);
  const streamsOpened = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/events')) streamsOpened.push(new URL(request.url()).pathname);
  });
  page.on('response', async (response) => {
    try {
      const type = response.headers()['content-type'] || '';
      if (!type.includes('event-stream')) received.push(`${response.url()}\n${await response.text()}`);
    } catch { /* a body the browser no longer holds */ }
  });

  // Sign in: a wrong token is refused; the right one gives an HttpOnly, SameSite=Strict, Secure cookie.
  step('sign in');
  const first = await page.goto(DASHBOARD);
  const policy = first.headers()['content-security-policy'];
  assert.match(policy, /default-src 'none'; script-src 'self'; style-src 'self'/);
  assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval/);
  await page.waitForSelector('form.sign-in');
  await shot(page, 'sign-in');
  await page.fill('#token', 'not-the-token');
  await page.click('button[type=submit]');
  await page.waitForSelector('text=That is not the API token');
  await page.fill('#token', TOKEN);
  await page.click('button[type=submit]');
  await page.waitForSelector('a[href="#/p/board"]');
  const [cookie] = await context.cookies();
  assert.equal(cookie.name, '__Host-preview_session');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(cookie.secure, true);
  assert.notEqual(cookie.value, TOKEN);

  // The project's environments, with their states, commits and actions.
  step('environments');
  await page.click('a[href="#/p/board"]');
  await page.waitForSelector('[data-state="staging"] .badge');
  assert.equal(await page.textContent('[data-state="staging"]'), 'ready');
  assert.equal(await page.textContent('[data-state="qa"]'), 'ready last deployment rolled back');
  await shot(page, 'environments');

  // The list follows changes made elsewhere (here through the API with the token), without being loaded again.
  step('the environments, live');
  await page.evaluate(() => { window.notReloaded = true; });
  const cloned = await fetch(`${origin}/v1/projects/board/environments/staging/clone`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'later' }),
  });
  assert.equal(cloned.status, 202);
  await page.waitForSelector('[data-state="later"]', { timeout: 60000 });
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not loaded again');

  // A deployment's steps change live, without the page being loaded again.
  step('a deployment, live');
  commit('a change to deploy');
  await page.evaluate(() => { window.notReloaded = true; });
  const staging = page.locator('tr', { has: page.locator('[data-state="staging"]') });
  await staging.locator('[data-action="deploy"]').click();
  await page.waitForURL(/#\/d\/[a-z0-9]+$/);
  await page.waitForSelector('li[data-state="running"]', { timeout: 30000 });
  await shot(page, 'deployment-live');
  const runningStep = await page.getAttribute('li[data-state="running"]', 'data-step');
  const deploymentId = page.url().split('/').pop();
  await page.waitForSelector('#status .badge.committed', { timeout: 60000 });
  assert.equal(await page.getAttribute(`li[data-step="${runningStep}"]`, 'data-state'), 'applied');
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not loaded again');
  assert.ok((await page.locator('li[data-state="applied"]').count()) >= 2);
  // Its journal lines arrived with the events (the build's line is there), and once it ended nothing is followed.
  assert.match(await page.textContent('#steps'), /built web at [0-9a-f]{12}/);
  const followed = () => streamsOpened.filter((p) => p === `/v1/deployments/${deploymentId}/events`).length;
  const opened = followed();
  assert.ok(opened >= 1, 'the page followed the deployment through its event stream');
  await page.waitForTimeout(4000);
  assert.equal(followed(), opened, 'the stream is not opened again after the deployment ended');

  // A rollback shows the steps it undid.
  step('a rollback');
  await page.goto(`${DASHBOARD}#/p/board/e/qa`);
  await page.locator('tr', { hasText: 'rolled_back' }).first().locator('a').first().click();
  await page.waitForSelector('li[data-state="undone"]');
  assert.match(await page.textContent('.notice'), /^Rolled back: /);
  assert.ok((await page.locator('li[data-state="failed"], li[data-state="undone"]').count()) >= 2);
  assert.ok((await page.locator('.lines .compensate').count()) >= 1, 'the undo\'s journal lines are shown');
  await shot(page, 'rollback');

  // Cancelling a running deployment rolls it back, as the page shows live.
  step('cancel');
  commit('a change to cancel');
  await page.goto(`${DASHBOARD}#/p/board/e/staging`);
  await page.click('[data-action="deploy"]');
  await page.waitForSelector('li[data-state="running"]', { timeout: 30000 });
  await page.click('[data-action="cancel"]');
  await page.waitForSelector('#status .badge.rolled_back', { timeout: 60000 });

  // Clone and delete, each through its confirmation; a declined deletion deletes nothing.
  step('clone and delete');
  await page.goto(`${DASHBOARD}#/p/board/e/staging`);
  page.once('dialog', (dialog) => dialog.accept('scratch'));
  await page.click('[data-action="clone"]');
  await page.waitForSelector('#status .badge.committed', { timeout: 60000 });
  await page.goto(`${DASHBOARD}#/p/board/e/scratch`);
  await page.waitForSelector('[data-action="delete"]');
  page.once('dialog', (dialog) => dialog.dismiss());
  await page.click('[data-action="delete"]');
  await page.waitForTimeout(500);
  assert.match(page.url(), /#\/p\/board\/e\/scratch$/, 'a declined deletion does nothing');
  page.once('dialog', (dialog) => dialog.accept());
  await page.click('[data-action="delete"]');
  await page.waitForURL(/#\/d\/[a-z0-9]+$/);
  await page.waitForSelector('#status .badge.committed', { timeout: 60000 });
  await page.goto(`${DASHBOARD}#/p/board`);
  await page.waitForSelector('[data-state="staging"]');
  assert.equal(await page.locator('[data-state="scratch"]').count(), 0);

  // A service's log, live: a request made while the page is open shows up in it.
  step('live log');
  await page.goto(`${DASHBOARD}#/p/board/e/staging/logs/web`);
  await page.waitForSelector('#log');
  // The app printed its secret when it started: the log shows where, not what.
  const logDeadline = Date.now() + 20000;
  while (!(await page.textContent('#log')).includes('session key: [secret]')) {
    assert.ok(Date.now() < logDeadline, `the log does not hide the secret's value: ${await page.textContent('#log')}`);
    await page.waitForTimeout(200);
  }
  const marker = `/marker-${Date.now()}`;
  const answered = await throughGateway('staging', marker);
  assert.equal(answered.status, 200);
  // (Polled from here: the page's policy allows no evaluated code, which waitForFunction needs.)
  const deadline = Date.now() + 20000;
  while (!(await page.textContent('#log')).includes(`served ${marker}`)) {
    assert.ok(Date.now() < deadline, `the log did not show the request: ${await page.textContent('#log')}`);
    await page.waitForTimeout(200);
  }
  await shot(page, 'log');

  // Variables with their provenance; the secret as [secret] with its fingerprint, never its value.
  step('variables');
  await page.goto(`${DASHBOARD}#/p/board/e/staging`);
  await page.waitForSelector('[data-service="web"] table');
  const variables = await page.textContent('[data-service="web"]');
  assert.match(variables, /SESSION_KEY\[secret\] [0-9a-f]{16} \(service:web\)/);
  assert.ok(variables.includes(CONTROL), 'the environment-scoped value is shown');
  assert.match(variables, /1 shadowed/, 'what the environment\'s value shadows is there');
  await page.click('[data-service="web"] details summary');
  assert.ok((await page.textContent('[data-service="web"] details')).includes('hello'));
  await shot(page, 'variables');

  // No secret value anywhere the browser got: pages, scripts, every answer.
  step('no secret in the browser');
  const html = await page.content();
  const script = await (await page.request.get(`${origin}/dashboard/app.js`)).text();
  const everything = [html, script, ...received].join('\n');
  assert.ok(everything.includes(CONTROL), 'the scan sees what the browser got');
  assert.ok(!everything.includes(CANARY), 'a secret value reached the browser');
  assert.ok(received.length > 20, `the scan saw ${received.length} answers`);

  // Every answer carries the policy, the API's JSON too.
  const [apiStatus, apiPolicy, apiSniff] = await page.evaluate(async () => {
    const answer = await fetch('/v1/projects');
    return [answer.status, answer.headers.get('content-security-policy'), answer.headers.get('x-content-type-options')];
  });
  assert.equal(apiStatus, 200);
  assert.match(apiPolicy, /default-src 'none'/);
  assert.equal(apiSniff, 'nosniff');

  // Refused: a change without the CSRF token, a database's login, and anything without the cookie.
  step('refusals');
  const login = await page.evaluate(async () => {
    const { csrf } = await (await fetch('/dashboard/session')).json();
    const answer = await fetch('/v1/projects/board/environments/staging/databases/web/login', {
      method: 'POST', headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin',
    });
    return [answer.status, (await answer.json()).error.message];
  });
  assert.deepEqual(login, [403, 'a database\'s login is not given to the dashboard; use `preview db psql`']);
  // Only that route: an environment that happens to be named `login` is no secret.
  const named = await page.evaluate(async () => (await fetch('/v1/projects/board/environments/login')).status);
  assert.equal(named, 404);
  const withoutCsrf = await page.evaluate(async () => (await fetch('/v1/projects/board/environments/staging/deploy', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}', credentials: 'same-origin',
  })).status);
  assert.equal(withoutCsrf, 403);
  const wrongCsrf = await page.evaluate(async () => (await fetch('/v1/projects/board/environments/staging/deploy', {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': 'guess' }, body: '{}', credentials: 'same-origin',
  })).status);
  assert.equal(wrongCsrf, 403);
  const anonymous = await browser.newContext();
  const withoutCookie = await anonymous.request.get(`${origin}/v1/projects`);
  assert.equal(withoutCookie.status(), 401);
  const changeWithoutCookie = await anonymous.request.post(`${origin}/v1/projects/board/environments/staging/deploy`, { data: {} });
  assert.equal(changeWithoutCookie.status(), 401);
  await anonymous.close();

  // Signing out ends the session: the old cookie opens nothing.
  step('sign out');
  const cookieHeader = `__Host-preview_session=${cookie.value}`;
  await page.click('#sign-out');
  await page.waitForSelector('form.sign-in');
  const afterSignOut = await fetch(`${origin}/v1/projects`, { headers: { Cookie: cookieHeader } });
  assert.equal(afterSignOut.status, 401);

  assert.deepEqual(pageErrors, [], 'the page raised no error');
  // The only failed answers are those asked for: the session before signing in, the wrong token, the refusals.
  const expected = new Set([
    '401 GET /dashboard/session', '401 POST /dashboard/session',
    '403 POST /v1/projects/board/environments/staging/deploy',
    '403 POST /v1/projects/board/environments/staging/databases/web/login',
    '404 GET /v1/projects/board/environments/login',
  ]);
  assert.deepEqual(failed.filter((f) => !expected.has(f)), [], `unexpected failed answers: ${failed.join(', ')}`);
  console.log('dashboard: every check passed');
} finally {
  await browser.close();
}
