// What the browser tests share: a real weft server on a free loopback port over a fresh data
// folder, set up with the weft command line and the REST API, and headless Chromium.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
export const artifacts = path.join(repo, 'test-artifacts');
const weftBin = process.env.WEFT_BIN || path.join(repo, 'target', 'debug', 'weft');
const chromiumBin = process.env.CHROMIUM || '/usr/bin/chromium';

// A port free on loopback right now (also used by the peeking benchmark).
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export class Weft {
  // `matrixServerName`: configure the Matrix bridge for a homeserver of that name (on a
  // loopback port where nothing answers; pages only need to know that the bridge is there).
  static async start({ matrixServerName } = {}) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'weft-browser-'));
    const port = await freePort();
    const weft = new Weft(dir, port);
    if (matrixServerName) {
      const section = weft.cli(
        'matrix', 'registration',
        '--server-name', matrixServerName,
        '--homeserver-url', `http://127.0.0.1:${await freePort()}`,
        '--weft-url', weft.base,
        '--output', path.join(dir, 'registration.yaml'),
      );
      const config = path.join(dir, 'weft.toml');
      writeFileSync(config, section.slice(section.indexOf('[matrix]')) + '\n');
      weft.globalArgs = ['--config', config];
    }
    await weft.spawn();
    return weft;
  }

  constructor(dir, port) {
    this.dir = dir;
    this.port = port;
    this.base = `http://127.0.0.1:${port}`;
    this.tokens = new Map();
    this.output = '';
    this.globalArgs = [];
  }

  env() {
    return { ...process.env, WEFT_RATE_LIMIT_PER_MINUTE: '0', WEFT_LOG: 'warn' };
  }

  // Runs `weft ARGS…` against this server's data folder; returns what it printed.
  cli(...args) {
    return execFileSync(weftBin, [...this.globalArgs, '--data-dir', this.dir, ...args], {
      env: this.env(),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  }

  async spawn() {
    this.process = spawn(weftBin, [...this.globalArgs, '--data-dir', this.dir, 'serve', '--listen', `127.0.0.1:${this.port}`], {
      env: this.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process.stdout.on('data', (d) => { this.output += d; });
    this.process.stderr.on('data', (d) => { this.output += d; });
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline) {
      if (this.process.exitCode !== null) throw new Error(`weft exited early:\n${this.output}`);
      try {
        const r = await fetch(this.base + '/healthz');
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`weft did not start:\n${this.output}`);
  }

  async stop() {
    if (this.process && this.process.exitCode === null) {
      const exited = new Promise((r) => this.process.once('exit', r));
      this.process.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (this.process.exitCode === null) this.process.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  // A user with a password and an API token (created with the command line).
  user(name, { password = 'correct horse battery', displayName, admin = false } = {}) {
    const args = ['user', 'create', name, '--password', password];
    if (displayName) args.push('--display-name', displayName);
    if (admin) args.push('--admin');
    const id = this.cli(...args);
    const token = this.cli('token', 'create', name);
    this.tokens.set(name, token);
    return { id, name, password, token };
  }

  // `community/room` (the community is created first if needed); returns the room id.
  room(uri, { topic = '', priv = false } = {}) {
    const community = uri.split('/')[0];
    try {
      this.cli('group', 'create', community);
    } catch {
      // already there
    }
    const args = ['room', 'create', uri, '--topic', topic];
    if (priv) args.push('--private');
    return this.cli(...args);
  }

  // Calls the REST API as a user (by token); throws on errors.
  async api(user, method, apiPath, body) {
    const headers = { Authorization: `Bearer ${user.token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(this.base + '/v1' + apiPath, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${apiPath}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  join(user, uri) {
    return this.api(user, 'POST', '/rooms', { uri });
  }

  post(user, roomId, text, extra = {}) {
    return this.api(user, 'POST', `/rooms/${roomId}/chatMessages`, { text, ...extra });
  }
}

// Headless Chromium from the system. Playwright starts it with a fresh temporary profile
// (its own --user-data-dir) and removes it on close.
export async function launchBrowser() {
  mkdirSync(artifacts, { recursive: true });
  return chromium.launch({
    executablePath: chromiumBin,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
    ],
  });
}

// A page that fails the test on any script error, and refuses every request that does not
// go to the weft server under test (the app must load nothing from elsewhere).
export async function newPage(browser, weft, options = {}) {
  const context = await browser.newContext({ baseURL: weft.base, ...options });
  const page = await context.newPage();
  page.errors = [];
  page.foreign = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('dialog', (d) => {
    if (d.type() === 'alert') page.errors.push(`alert: ${d.message()}`);
    d.accept();
  });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(weft.base) || url.startsWith(weft.base.replace('http', 'ws')) || url.startsWith('data:') || url.startsWith('blob:')) {
      return route.continue();
    }
    page.foreign.push(url);
    return route.abort();
  });
  return page;
}

export async function signIn(page, user, next = '/') {
  await page.goto(`/login?next=${encodeURIComponent(next)}`);
  await page.fill('#username', user.name);
  await page.fill('#password', user.password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login')), page.click('#login-form button[type=submit]')]);
}

export function shot(page, name) {
  return page.screenshot({ path: path.join(artifacts, name), fullPage: false });
}
