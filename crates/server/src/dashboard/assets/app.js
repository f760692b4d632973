// The preview dashboard: one page that reads and changes everything through the daemon's REST API with its
// session cookie, follows what changes through server-sent events, and sends its CSRF token with every change.
// Every element is built from text (textContent), never from HTML, so nothing an app, a commit message or a pull
// request's title holds can become markup.
'use strict';

const state = { csrf: null, streams: [] };

// ---------------------------------------------------------------------------------------------------- building

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const badge = (text, kind) => el('span', { class: `badge ${kind || text}`, text });
// A link only to this page's views or to web addresses; anything else (a `javascript:` URL a forge or an app
// answered with) is shown as text.
const link = (href, text) => (/^(#|https?:\/\/)/.test(href || '') ? el('a', { href, text }) : el('span', { text }));
const short = (commit) => (commit ? commit.slice(0, 12) : '');
const when = (ms) => (ms ? new Date(ms).toLocaleString() : '');

function ago(ms) {
  if (!ms) return '';
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return '';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function table(headings, rows, empty) {
  if (rows.length === 0) return el('p', { class: 'quiet', text: empty });
  return el('table', {},
    el('thead', {}, el('tr', {}, headings.map((h) => el('th', { text: h })))),
    el('tbody', {}, rows.map((cells) => el('tr', {}, cells.map((c) => el('td', {}, c))))));
}

// Replaces `node`'s children with `children`, leaving out the absent ones.
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function show(...nodes) {
  fill(document.getElementById('main'), ...nodes);
}

function crumbs(...parts) {
  const nav = document.getElementById('crumbs');
  nav.replaceChildren(...parts.map(([href, text]) => el('span', {}, href ? link(href, text) : text)));
}

// ------------------------------------------------------------------------------------------------ talking to it

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') headers['X-CSRF-Token'] = state.csrf || '';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (response.status === 401) {
    signIn('Your session ended; sign in again.');
    throw new Error('signed out');
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((data && data.error && data.error.message) || response.statusText);
  return data;
}

// Follows `path`'s server-sent `event`s until the page changes. When the stream breaks, a session that ended
// (a daemon restart, a sign-out elsewhere) brings the sign-in back; the browser connects again otherwise.
function follow(path, event, onData) {
  const source = new EventSource(path);
  source.addEventListener(event, (message) => onData(JSON.parse(message.data), source));
  source.addEventListener('open', () => { document.getElementById('live').hidden = false; });
  source.addEventListener('failure', (message) => {
    source.close();
    show(failure(new Error(JSON.parse(message.data).message)));
  });
  source.addEventListener('error', async () => {
    document.getElementById('live').hidden = true;
    if (!state.streams.includes(source)) return;
    const session = await fetch('/dashboard/session', { credentials: 'same-origin' }).catch(() => null);
    if (session && session.status === 401) signIn('Your session ended; sign in again.');
  });
  state.streams.push(source);
  return source;
}

function closeStreams() {
  for (const source of state.streams) source.close();
  state.streams = [];
  document.getElementById('live').hidden = true;
}

function failure(error) {
  return el('p', { class: 'notice', role: 'alert', text: error.message || String(error) });
}

// Runs a change and goes where it leads (a deployment's page), or says why it did not happen.
async function change(method, path, body, then) {
  try {
    const answer = await api(method, path, body);
    if (answer && answer.deployment && answer.deployment.id) location.hash = `#/d/${answer.deployment.id}`;
    else if (then) then(answer);
  } catch (error) {
    if (error.message !== 'signed out') window.alert(error.message);
  }
}

// ------------------------------------------------------------------------------------------------------ signing in

function signIn(message) {
  closeStreams();
  state.csrf = null;
  document.getElementById('sign-out').hidden = true;
  crumbs();
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true });
  const said = el('p', { class: 'error', role: 'alert', text: message || '' });
  const form = el('form', {
    class: 'sign-in',
    onsubmit: async (event) => {
      event.preventDefault();
      const response = await fetch('/dashboard/session', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token: input.value }),
        credentials: 'same-origin',
      });
      input.value = '';
      if (!response.ok) {
        const answer = await response.json().catch(() => null);
        said.textContent = response.status === 401
          ? 'That is not the API token; it is in client.json in the daemon\'s data directory.'
          : ((answer && answer.error && answer.error.message) || response.statusText);
        return;
      }
      const signedIn = (await response.json()).csrf;
      // The browser must have kept the cookie: it drops a Secure one on plain HTTP other than loopback.
      const kept = await fetch('/dashboard/session', { credentials: 'same-origin' });
      if (!kept.ok) {
        said.textContent = 'This browser did not keep the session cookie: open the dashboard on a loopback address (http://127.0.0.1:PORT/) or over HTTPS.';
        return;
      }
      state.csrf = signedIn;
      route();
    },
  },
  el('h1', { text: 'Sign in' }),
  el('label', { for: 'token', text: 'API token' }), input,
  el('p', { class: 'quiet', text: 'The token is in client.json in the daemon\'s data directory (preview prints where).' }),
  said,
  el('button', { type: 'submit', class: 'primary', text: 'Sign in' }));
  show(form);
  input.focus();
}

async function signOut() {
  const response = await fetch('/dashboard/session', { method: 'DELETE', headers: { 'X-CSRF-Token': state.csrf || '' }, credentials: 'same-origin' });
  if (!response.ok && response.status !== 401) {
    window.alert('Not signed out: reload the page and try again.');
    return;
  }
  signIn('Signed out.');
}

// -------------------------------------------------------------------------------------------------------- routing

function route() {
  closeStreams();
  if (!state.csrf) return start();
  document.getElementById('sign-out').hidden = false;
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const view = (() => {
    if (parts.length === 0) return projectsView();
    if (parts[0] === 'd' && parts.length === 2) return deploymentView(parts[1]);
    if (parts[0] === 'p' && parts.length === 2) return projectView(parts[1]);
    if (parts[0] === 'p' && parts[2] === 'e' && parts.length === 4) return environmentView(parts[1], parts[3]);
    if (parts[0] === 'p' && parts[2] === 'e' && parts[4] === 'logs' && parts.length === 6) return logsView(parts[1], parts[3], parts[5]);
    return show(el('p', { class: 'notice', text: 'No such page.' }));
  })();
  Promise.resolve(view).catch((error) => { if (error.message !== 'signed out') show(failure(error)); });
}

async function start() {
  const response = await fetch('/dashboard/session', { credentials: 'same-origin' });
  if (!response.ok) return signIn();
  state.csrf = (await response.json()).csrf;
  route();
}

const enc = encodeURIComponent;
const environmentPath = (project, name) => `/v1/projects/${enc(project)}/environments/${enc(name)}`;

// -------------------------------------------------------------------------------------------------------- projects

async function projectsView() {
  crumbs();
  const { projects } = await api('GET', '/v1/projects');
  show(el('h1', { text: 'Projects' }), el('section', {},
    table(['project', 'spec', 'registered'], projects.map((p) => [
      link(`#/p/${enc(p.name)}`, p.name), el('span', { class: 'mono', text: p.file }), ago(p.updated_at),
    ]), 'No project yet: `preview project register -f preview.yaml` registers one.')));
}

// An environment's state: `attention`, `running` / `rolling_back` (a deployment under way), `failed` or
// `abandoned` (its last deployment could not finish), `sleeping`, else `ready` — with a note when its last
// deployment rolled back (it runs the version before).
function environmentState(entry) {
  if (entry.attention) return 'attention';
  const last = entry.last_deployment;
  if (last && ['running', 'rolling_back', 'failed', 'abandoned'].includes(last.status)) return last.status;
  if (entry.sleeping) return 'sleeping';
  return 'ready';
}

function stateBadges(entry) {
  const last = entry.last_deployment;
  const rolledBack = last && last.status === 'rolled_back';
  return [badge(environmentState(entry)), rolledBack ? [' ', badge('last deployment rolled back', 'rolled_back')] : null];
}

function environmentActions(project, entry, refresh) {
  const path = environmentPath(project, entry.name);
  const last = entry.last_deployment;
  const running = last && (last.status === 'running' || last.status === 'rolling_back');
  return el('div', { class: 'actions' },
    el('button', { type: 'button', text: 'Deploy', 'data-action': 'deploy', onclick: () => change('POST', `${path}/deploy`, {}) }),
    el('button', {
      type: 'button', text: 'Clone…', 'data-action': 'clone',
      onclick: () => {
        const name = window.prompt(`Clone ${entry.name} into a new environment named:`);
        if (name) change('POST', `${path}/clone`, { name });
      },
    }),
    running && el('button', { type: 'button', text: 'Cancel', 'data-action': 'cancel', onclick: () => change('POST', `${path}/cancel`, undefined, refresh) }),
    entry.sleeping && el('button', { type: 'button', text: 'Wake', 'data-action': 'wake', onclick: () => change('POST', `${path}/wake`, undefined, refresh) }),
    el('button', {
      type: 'button', class: 'danger', text: 'Delete…', 'data-action': 'delete',
      onclick: () => {
        if (window.confirm(`Delete ${entry.name}? Its apps, data and settings go with it.`)) change('DELETE', path);
      },
    }));
}

async function projectView(project) {
  crumbs([`#/p/${enc(project)}`, project]);
  const base = `/v1/projects/${enc(project)}`;
  const quietly = (promise, fallback) => promise.catch(() => fallback);
  // The pull requests, snapshots and deliveries, read again whenever the environments change.
  const others = () => Promise.all([
    quietly(api('GET', `${base}/previews`), { previews: [] }),
    quietly(api('GET', `${base}/database-snapshots`), { snapshots: [] }),
    quietly(api('GET', `${base}/webhooks`), { deliveries: [] }),
  ]);
  const [listed, [previews, snapshots, webhooks]] = await Promise.all([api('GET', `${base}/environments`), others()]);
  let context = { previews, snapshots, webhooks };
  const sections = {
    environments: el('div', { id: 'environments' }),
    pulls: el('div', { id: 'pull-requests' }),
    snapshots: el('div', { id: 'snapshots' }),
    deliveries: el('div', { id: 'deliveries' }),
  };
  const refresh = () => api('GET', `${base}/environments`).then(render);
  function render(list) {
    const byEnvironment = new Map(context.previews.previews.filter((p) => p.environment).map((p) => [p.environment, p]));
    const snapshotOf = new Map();
    for (const snapshot of context.snapshots.snapshots) {
      for (const name of snapshot.environments || []) snapshotOf.set(name, snapshot);
    }
    fill(sections.environments, table(
      ['environment', 'state', 'commit', 'age', 'idle', 'URLs', 'database snapshot', ''],
      list.environments.map((entry) => {
        const preview = byEnvironment.get(entry.name);
        const snapshot = snapshotOf.get(entry.name);
        return [
          el('span', {}, link(`#/p/${enc(project)}/e/${enc(entry.name)}`, entry.name),
            preview ? el('span', { class: 'quiet' }, ' · ', link(preview.url || '#', `PR #${preview.number}`)) : null),
          el('span', { 'data-state': entry.name }, stateBadges(entry)),
          el('span', { class: 'mono', text: short(entry.commit) }),
          ago(entry.created_at),
          entry.last_request_at ? ago(entry.last_request_at) : '',
          el('span', {}, (entry.urls || []).map((url) => el('div', {}, link(url, url)))),
          snapshot ? el('span', { class: 'mono', text: `${snapshot.name} (${snapshot.policy} of ${snapshot.from})` }) : '',
          entry.created_at ? environmentActions(project, entry, refresh) : '',
        ];
      }), 'No environment yet: `preview env create staging` makes one.'));
    fill(sections.pulls, table(
      ['pull request', 'branch', 'head', 'preview', 'decision', 'idle'],
      context.previews.previews.map((p) => [
        el('span', {}, link(p.url || '#', `#${p.number}`), ' ', p.title || ''),
        el('span', { class: 'mono', text: p.branch || '' }),
        el('span', { class: 'mono', text: short(p.head) }),
        // A closed pull request's preview is gone; an open one's without an environment waits for one.
        p.environment ? link(`#/p/${enc(project)}/e/${enc(p.environment)}`, p.environment)
          : p.open ? badge('waiting') : el('span', { class: 'quiet', text: 'none' }),
        el('span', { class: 'quiet', text: p.decision || p.outcome || '' }),
        p.last_request_at ? ago(p.last_request_at) : '',
      ]), 'No pull request seen.'));
    fill(sections.snapshots, table(
      ['service', 'snapshot', 'copy of', 'made', 'tables', 'rows', 'environments'],
      context.snapshots.snapshots.map((s) => [
        s.service, el('span', { class: 'mono', text: s.name }), `${s.from} (${s.policy})`,
        ago(s.made_at * 1000), String(s.tables), String(s.rows), (s.environments || []).join(', '),
      ]), 'No golden snapshot: no database of this project is a clone.'));
    fill(sections.deliveries, table(
      ['received', 'forge', 'event', 'pull request', 'verdict', 'detail'],
      context.webhooks.deliveries.map((d) => [
        ago(d.received_at), d.forge, [d.event, d.action].filter(Boolean).join(' '),
        d.pull_request ? `#${d.pull_request}` : '', badge(d.verdict),
        // The delivery's own detail, and for an accepted one what became of its pull request since.
        el('span', { class: 'quiet', text: [d.detail, d.reconciler && `pull request now: ${d.reconciler}`].filter(Boolean).join('; ') }),
      ]), 'No delivery received.'));
  }
  render(listed);
  follow(`${base}/events`, 'environments', async (list) => {
    const [p, s, w] = await others();
    context = { previews: p, snapshots: s, webhooks: w };
    render(list);
  });

  show(
    el('h1', { text: project }),
    el('section', {}, el('h2', { text: 'Environments and previews' }), sections.environments),
    el('section', {}, el('h2', { text: 'Pull requests' }), sections.pulls),
    el('section', {}, el('h2', { text: 'Database snapshots' }), sections.snapshots),
    el('section', {}, el('h2', { text: 'Webhook deliveries' }), sections.deliveries));
}

// ---------------------------------------------------------------------------------------------------- environment

async function environmentView(project, name) {
  crumbs([`#/p/${enc(project)}`, project], [null, name]);
  const path = environmentPath(project, name);
  const [shown, variables, secrets] = await Promise.all([
    api('GET', path),
    api('GET', `${path}/variables`),
    api('GET', `/v1/projects/${enc(project)}/secrets`),
  ]);
  const refresh = () => route();
  const entry = { name, sleeping: shown.sleeping, attention: shown.attention, created_at: shown.environment.created_at, last_deployment: shown.deployments[0] };

  const fingerprints = (variable) => {
    const matching = secrets.secrets.filter((s) => s.name === variable.name);
    const named = matching.filter((s) => variable.source.includes(s.scope));
    return (named.length ? named : matching).map((s) => `${s.fingerprint} (${s.scope})`).join(', ');
  };

  show(
    el('h1', {}, `${name} `, stateBadges(entry)),
    shown.attention ? el('p', { class: 'notice', text: shown.attention }) : null,
    el('section', {},
      el('dl', { class: 'facts' },
        el('dt', { text: 'commit' }), el('dd', { class: 'mono', text: shown.commit || '' }),
        el('dt', { text: 'follows' }), el('dd', { text: shown.environment.follows || 'HEAD' }),
        el('dt', { text: 'cloned from' }), el('dd', { text: shown.environment.based_on || '' }),
        el('dt', { text: 'last request' }), el('dd', { text: ago(shown.last_request_at) || 'none since the daemon started' })),
      el('h2', { text: 'Actions' }), environmentActions(project, entry, refresh)),
    el('section', {}, el('h2', { text: 'Services' }), table(
      ['service', 'state', 'address', 'restarts', 'URLs', 'log'],
      shown.services.map((s) => [
        s.service, badge(s.state === 'running' ? 'ready' : s.state, s.state === 'running' ? 'ready' : s.state),
        el('span', { class: 'mono', text: s.address || '' }), String(s.restarts),
        el('span', {}, shown.routes.filter((r) => r.service === s.service).map((r) => el('div', {}, link(r.url, r.url)))),
        link(`#/p/${enc(project)}/e/${enc(name)}/logs/${enc(s.service)}`, 'live log'),
      ]), 'Nothing runs.')),
    el('section', {}, el('h2', { text: 'Deployments' }), table(
      ['deployment', 'operation', 'status', 'commit', 'started', 'reason'],
      shown.deployments.map((d) => [
        link(`#/d/${enc(d.id)}`, d.id), d.operation, badge(d.status), el('span', { class: 'mono', text: short(d.commit) }),
        ago(d.created_at), el('span', { class: 'quiet', text: d.reason || '' }),
      ]), 'No deployment.')),
    variables.services.map((service) => el('section', { 'data-service': service.service },
      el('h2', { text: `Variables of ${service.service}` }),
      table(['name', 'value', 'from', 'shadows'], service.variables.map((v) => [
        el('span', { class: 'mono', text: v.name }),
        v.secret
          ? el('span', {}, badge('[secret]', 'secret'), ' ', el('span', { class: 'mono quiet', text: fingerprints(v) }))
          : el('span', { class: 'mono', text: v.value }),
        el('span', {}, el('div', { text: v.level }), el('div', { class: 'quiet', text: v.source }), v.note ? el('div', { class: 'quiet', text: v.note }) : null),
        v.shadowed.length
          ? el('details', {}, el('summary', { text: `${v.shadowed.length} shadowed` }),
            v.shadowed.map((s) => el('div', { class: 'quiet' }, `${s.level}: `, el('span', { class: 'mono', text: s.value }), ` — ${s.source}`)))
          : '',
      ]), 'No variable.'))));
}

// ----------------------------------------------------------------------------------------------------- deployment

async function deploymentView(id) {
  const path = `/v1/deployments/${enc(id)}`;
  let shown = await api('GET', path);
  let journal = await api('GET', `${path}/logs`);
  const finished = (d) => ['committed', 'rolled_back', 'abandoned'].includes(d.status);
  const page = el('div', {});
  function render() {
    const d = shown.deployment;
    crumbs([`#/p/${enc(d.project)}`, d.project], [`#/p/${enc(d.project)}/e/${enc(d.environment)}`, d.environment], [null, d.id]);
    const running = d.status === 'running' || d.status === 'rolling_back';
    const lines = (index) => journal.entries.filter((e) => e.step === index - 1 && e.event === 'log');
    fill(page,
      el('h1', {}, `${d.operation} ${d.environment} `, el('span', { id: 'status' }, badge(d.status))),
      d.reason ? el('p', { class: 'notice', text: `${d.status === 'rolled_back' ? 'Rolled back: ' : ''}${d.reason}` }) : null,
      el('section', {},
        el('dl', { class: 'facts' },
          el('dt', { text: 'commit' }), el('dd', { class: 'mono', text: d.commit || '' }),
          el('dt', { text: 'started' }), el('dd', { text: when(d.created_at) }),
          el('dt', { text: 'ended' }), el('dd', { text: d.finished_at ? `${when(d.finished_at)} (${duration(d.finished_at - d.created_at)})` : 'not yet' }),
          el('dt', { text: 'point of no return' }), el('dd', { text: d.point_of_no_return ? `before step ${d.point_of_no_return}` : 'none' }),
          d.last_error ? [el('dt', { text: 'last error' }), el('dd', { class: 'error', text: d.last_error })] : null),
        running ? el('div', { class: 'actions' }, el('button', {
          type: 'button', text: 'Cancel', 'data-action': 'cancel',
          onclick: () => change('POST', `${path}/cancel`),
        })) : null),
      el('section', {}, el('h2', { text: 'Steps' }), el('ol', { class: 'timeline', id: 'steps' },
        shown.steps.map((step) => {
          const stepState = step.state === 'interrupted' && running ? 'running' : step.state;
          const log = lines(step.index);
          return el('li', { class: stepState.replace(' ', '-'), 'data-step': String(step.index), 'data-state': stepState },
            el('div', { class: 'step-head' },
              el('span', { class: 'what', text: `${step.index}. ${step.action} ${step.resource}` }),
              badge(stepState, stepState.replace(' ', '-')),
              step.started_at ? el('span', { class: 'quiet', text: new Date(step.started_at).toLocaleTimeString() }) : null,
              step.duration_ms !== null ? el('span', { class: 'quiet', text: duration(step.duration_ms) }) : null),
            step.error ? el('div', { class: 'error', text: step.error }) : null,
            log.length ? el('div', { class: 'lines mono' }, log.map((e) => el('div', { class: e.phase, text: `${e.phase === 'compensate' ? 'undo: ' : ''}${e.message}` }))) : null);
        }))),
      (shown.urls || []).length ? el('section', {}, el('h2', { text: 'URLs' }), shown.urls.map((url) => el('div', {}, link(url, url)))) : null);
  }
  render();
  show(page);
  // Each event holds the deployment, its steps and its journal; once it has ended there is nothing to follow.
  if (!finished(shown.deployment)) {
    follow(`${path}/events`, 'deployment', (data, source) => {
      shown = data;
      journal = { entries: data.entries };
      render();
      if (finished(data.deployment)) {
        source.close();
        document.getElementById('live').hidden = true;
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------------------- logs

function logsView(project, name, service) {
  crumbs([`#/p/${enc(project)}`, project], [`#/p/${enc(project)}/e/${enc(name)}`, name], [null, `${service} log`]);
  const log = el('pre', { class: 'log', id: 'log' });
  show(el('h1', { text: `Log of ${service} in ${name}` }), log);
  follow(`${environmentPath(project, name)}/services/${enc(service)}/logs/events`, 'log', (chunk) => {
    if (!chunk.text) return;
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(document.createTextNode(chunk.text));
    if (atEnd) log.scrollTop = log.scrollHeight;
  });
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  // A hidden tab lets its streams go (browsers allow a few connections per host), and follows again when shown.
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) closeStreams();
    else if (state.csrf) route();
  });
  start();
});
