// The web app in a real browser: peeking, signing in, the live room (send, receive, edit,
// delete, react, threads, uploads, typing), archives, tokens, a phone-sized screen, and
// markup in messages, names and topics that must never run.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { Weft, artifacts, launchBrowser, newPage, repo, shot, signIn } from './support.mjs';

let weft;
let browser;
let alice;
let bob;
let roomId;
// A page signed in as alice on rust/general, shared by the tests that follow one another.
let page;

const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAYAAABytg0kAAAAFklEQVR4nGP8z8DwnwEImBigAC4DAEf/AwMlUyg9AAAAAElFTkSuQmCC',
  'base64',
);

before(async () => {
  weft = await Weft.start();
  alice = weft.user('alice', { displayName: 'Alice Liddell' });
  bob = weft.user('bob', { displayName: 'Bob Builder' });
  roomId = weft.room('rust/general', { topic: 'Talk about Rust' });
  weft.room('rust/secret', { priv: true });
  await weft.join(alice, 'rust/general');
  await weft.join(bob, 'rust/general');
  for (let i = 0; i < 60; i++) await weft.post(bob, roomId, `history message ${i}`);
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (weft) await weft.stop();
});

function messageText(p, text) {
  return p.locator('#messages .msg', { hasText: text });
}

test('a visitor gets the last messages in the first HTML response', async () => {
  const r = await fetch(weft.base + '/rust/general', { headers: { Accept: 'text/html' } });
  assert.equal(r.status, 200);
  const html = await r.text();
  assert.match(html, /history message 59/);
  assert.match(html, /history message 10</);
  assert.doesNotMatch(html, /history message 9</, 'only the last 50 are in the page');
  assert.match(html, /Talk about Rust/);
  assert.match(html, /"seq":\d+/);
});

test('private rooms are not found for visitors', async () => {
  const r = await fetch(weft.base + '/rust/secret', { headers: { Accept: 'text/html' } });
  assert.equal(r.status, 404);
  const archives = await fetch(weft.base + '/rust/secret/archives', { headers: { Accept: 'text/html' } });
  assert.equal(archives.status, 404);
});

test('peeking: messages stream in live and scrolling up loads older ones in place', async () => {
  const visitor = await newPage(browser, weft);
  await visitor.goto('/rust/general');
  await visitor.waitForSelector('body[data-live="true"]');
  assert.equal(await visitor.locator('#messages .msg').count(), 50);
  await weft.post(bob, roomId, 'posted while a visitor watches');
  await messageText(visitor, 'posted while a visitor watches').waitFor();

  // Scroll back: the message that was on top stays where it was on screen.
  const anchor = messageText(visitor, 'history message 11');
  await visitor.evaluate(() => { document.getElementById('messages').scrollTop = 0; });
  const before = await anchor.boundingBox();
  await visitor.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 61);
  await visitor.waitForTimeout(100);
  const after = await anchor.boundingBox();
  assert.ok(Math.abs(after.y - before.y) < 5, `no jump: ${before.y} → ${after.y}`);
  await messageText(visitor, 'history message 0').waitFor({ state: 'attached' });
  assert.equal(await visitor.locator('#composer').count(), 0, 'visitors get no composer');
  await visitor.evaluate(() => { const l = document.getElementById('messages'); l.scrollTop = l.scrollHeight; });
  await shot(visitor, 'room-visitor.png');
  assert.deepEqual(visitor.errors, []);
  assert.deepEqual(visitor.foreign, []);
  await visitor.context().close();
});

test('signing in with a password leads back to the room', async () => {
  page = await newPage(browser, weft, { viewport: { width: 1280, height: 800 } });
  await page.goto('/login');
  await page.fill('#username', 'alice');
  await page.fill('#password', 'wrong password!');
  await page.click('#login-form button[type=submit]');
  await page.locator('.error', { hasText: 'Wrong username or password' }).waitFor();
  await signIn(page, alice, '/rust/general');
  assert.equal(new URL(page.url()).pathname, '/rust/general');
  await page.waitForSelector('body[data-live="true"]');
  await page.locator('#room-list li.current', { hasText: 'rust/general' }).waitFor();
  await page.locator('.account .me', { hasText: 'Alice Liddell' }).waitFor();
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'weft_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Lax');
});

test('the session cookie alone cannot change anything', async () => {
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'weft_session');
  const headers = { Cookie: `weft_session=${session.value}`, 'Content-Type': 'application/json' };
  const refused = await fetch(`${weft.base}/v1/rooms/${roomId}/chatMessages`, {
    method: 'POST', headers, body: JSON.stringify({ text: 'forged' }),
  });
  assert.equal(refused.status, 403);
  const read = await fetch(`${weft.base}/v1/user/me`, { headers });
  assert.equal((await read.json()).username, 'alice');
});

test('sending a message with Enter', async () => {
  await page.fill('#compose', 'hello from the browser');
  await page.press('#compose', 'Enter');
  const mine = messageText(page, 'hello from the browser');
  await mine.waitFor();
  assert.equal(await mine.locator('.author').textContent(), 'Alice Liddell');
  assert.equal(await page.inputValue('#compose'), '');
  await page.fill('#compose', 'line one');
  await page.press('#compose', 'Shift+Enter');
  await page.type('#compose', 'line two');
  assert.equal(await page.inputValue('#compose'), 'line one\nline two');
  await page.press('#compose', 'Enter');
  await messageText(page, 'line two').waitFor();
  const stored = await weft.api(bob, 'GET', `/rooms/${roomId}/chatMessages?limit=2`);
  assert.deepEqual(stored.map((m) => m.text), ['hello from the browser', 'line one\nline two']);
});

test('a message posted through the API by someone else appears live, with typing first', async () => {
  await weft.api(bob, 'POST', `/rooms/${roomId}/typing`);
  await page.locator('#typing', { hasText: 'Bob Builder is typing' }).waitFor();
  await weft.post(bob, roomId, 'hi alice, from the API');
  await messageText(page, 'hi alice, from the API').waitFor();
});

test('Up-arrow edits my last message', async () => {
  await page.click('#compose');
  await page.press('#compose', 'ArrowUp');
  await page.waitForFunction(() => document.getElementById('compose').value === 'line one\nline two');
  await page.fill('#compose', 'line one, edited');
  await page.press('#compose', 'Enter');
  const edited = messageText(page, 'line one, edited');
  await edited.waitFor();
  await edited.locator('.edited').waitFor();
  const m = await weft.api(bob, 'GET', `/rooms/${roomId}/chatMessages?limit=1&beforeId=${(await weft.api(bob, 'GET', `/rooms/${roomId}/chatMessages?limit=1`))[0].id}`);
  assert.equal(m[0].text, 'line one, edited');
});

test('people bridged from Matrix appear with a Matrix badge', async () => {
  const bridge = weft.user('bridge');
  bridge.token = weft.cli('token', 'create', 'bridge', '--bridge', '--label', 'matrix bridge');
  await weft.post(bridge, roomId, 'hello from the other side', {
    // Matrix media is not something a browser can load: the avatar is drawn by weft instead.
    virtualUser: { type: 'matrix', externalId: '@carl:example.org', displayName: 'Carl on Matrix', avatarUrl: 'mxc://example.org/carl' },
  });
  const bridged = messageText(page, 'hello from the other side');
  await bridged.waitFor();
  assert.equal(await bridged.locator('.author').textContent(), 'Carl on Matrix');
  assert.equal(await bridged.locator('.badge').textContent(), 'Matrix');
  assert.equal(await bridged.locator('.username').textContent(), '@carl:example.org');
  const loaded = (img) => img.complete && img.naturalWidth > 0;
  assert.equal(await bridged.locator('img.avatar').getAttribute('src'), '/avatars/%40carl%3Aexample.org');
  await page.waitForFunction(loaded, await bridged.locator('img.avatar').elementHandle());
  await page.reload();
  await page.waitForSelector('body[data-live="true"]');
  const reloaded = messageText(page, 'hello from the other side');
  assert.equal(await reloaded.locator('.badge').textContent(), 'Matrix');
  assert.equal(await reloaded.locator('img.avatar').getAttribute('src'), '/avatars/%40carl%3Aexample.org');
  // Everyone else's avatar is served by weft too, as an SVG of their initials.
  const fromBob = messageText(page, 'hi alice, from the API').locator('img.avatar');
  assert.equal(await fromBob.getAttribute('src'), '/avatars/bob');
  await page.waitForFunction(loaded, await fromBob.elementHandle());
});

test('reacting with the picker, and taking it back', async () => {
  const target = messageText(page, 'hi alice, from the API');
  await target.hover();
  await target.locator('[data-act="react"]').click();
  await page.locator('.picker .pick', { hasText: '🎉' }).click();
  const chip = target.locator('.reaction.mine', { hasText: '🎉' });
  await chip.waitFor();
  assert.equal(await chip.locator('.count').textContent(), '1');
  const id = await target.getAttribute('data-id');
  const reactions = await weft.api(bob, 'GET', `/rooms/${roomId}/chatMessages/${id}/reactions`);
  assert.deepEqual(reactions.map((r) => [r.emoji, r.count]), [['🎉', 1]]);
  // Bob's reaction arrives live and keeps mine marked.
  await weft.api(bob, 'POST', `/rooms/${roomId}/chatMessages/${id}/reactions`, { emoji: '🎉' });
  await target.locator('.reaction.mine .count', { hasText: '2' }).waitFor();
  await chip.click();
  await target.locator('.reaction:not(.mine) .count', { hasText: '1' }).waitFor();
});

test('replying in a thread in the side panel', async () => {
  const head = messageText(page, 'hi alice, from the API');
  await head.hover();
  await head.locator('[data-act="thread"]').click();
  await page.locator('#thread:not([hidden]) #thread-parent .msg', { hasText: 'hi alice, from the API' }).waitFor();
  await page.fill('#thread-compose', 'a reply in the thread');
  await page.press('#thread-compose', 'Enter');
  await page.locator('#thread-messages .msg', { hasText: 'a reply in the thread' }).waitFor();
  await head.locator('.thread-link', { hasText: '1 reply' }).waitFor();
  assert.equal(await messageText(page, 'a reply in the thread').count(), 0, 'replies stay out of the main feed');
  // A reply from someone else arrives in the open panel.
  await weft.post(bob, roomId, 'bob answers in the thread', { parentId: await head.getAttribute('data-id') });
  await page.locator('#thread-messages .msg', { hasText: 'bob answers in the thread' }).waitFor();
  await head.locator('.thread-link', { hasText: '2 replies' }).waitFor();
  await shot(page, 'room-thread.png');
  await page.click('#thread-close');
  await page.locator('#thread').waitFor({ state: 'hidden' });
});

test('deleting my message', async () => {
  const mine = messageText(page, 'hello from the browser');
  const id = await mine.getAttribute('data-id');
  await mine.hover();
  await mine.locator('[data-act="delete"]').click();
  await mine.waitFor({ state: 'detached' });
  const r = await fetch(`${weft.base}/v1/rooms/${roomId}/chatMessages/${id}`, { headers: { Authorization: `Bearer ${bob.token}` } });
  assert.equal(r.status, 404);
});

test('uploading a file', async () => {
  await page.setInputFiles('#file-input', { name: 'dot.png', mimeType: 'image/png', buffer: PNG });
  const img = page.locator('#messages .msg .attachment img[alt="dot.png"]');
  await img.waitFor();
  const src = await img.getAttribute('src');
  const r = await fetch(weft.base + src);
  assert.equal(r.status, 200);
  assert.deepEqual(Buffer.from(await r.arrayBuffer()), PNG);
  await page.waitForFunction((s) => {
    const i = document.querySelector(`img[src="${s}"]`);
    return i && i.complete && i.naturalWidth === 2;
  }, src);
});

test('the room view, for the record', async () => {
  await weft.post(bob, roomId, 'Has anyone tried the new `let else` syntax?\n\n```rust\nlet Some(x) = maybe else { return };\n```');
  const posted = messageText(page, 'Has anyone tried');
  await posted.waitFor();
  // The server highlighted the code block; the style sheet colours its tokens.
  const code = posted.locator('pre code.language-rust');
  const keyword = code.locator('.hl-keyword').first();
  assert.equal(await keyword.textContent(), 'let');
  const colours = await keyword.evaluate((k) => [getComputedStyle(k).color, getComputedStyle(k.closest('code')).color]);
  assert.notEqual(colours[0], colours[1], 'keywords have their own colour');
  await page.evaluate(() => { const l = document.getElementById('messages'); l.scrollTop = l.scrollHeight; });
  await page.mouse.move(0, 0);
  await shot(page, 'room.png');
  // The README's picture is refreshed only on request, so a test run never changes the tree.
  if (process.env.WEFT_UPDATE_SCREENSHOT === '1') {
    mkdirSync(path.join(repo, 'docs'), { recursive: true });
    copyFileSync(path.join(artifacts, 'room.png'), path.join(repo, 'docs', 'screenshot-room.png'));
  }
  assert.deepEqual(page.errors, []);
  assert.deepEqual(page.foreign, []);
});

test('a permalink shows the room around that message', async () => {
  const [old] = await weft.api(bob, 'GET', `/rooms/${roomId}/chatMessages?q=${encodeURIComponent('"history message 3"')}&limit=1`);
  assert.ok(old, 'found the old message');
  await page.goto(`/rust/general?at=${old.id}`);
  const target = page.locator(`#m-${old.id}.highlight`);
  await target.waitFor();
  assert.ok(await target.isVisible());
  await page.locator('.newer a', { hasText: 'Jump to the latest' }).waitFor();
});

test('markup in messages, names and topics never runs', async () => {
  const mallory = weft.user('mallory', { displayName: '<img src=x onerror="window.__xss=1">' });
  const xssRoom = weft.room('rust/xss', { topic: '<script>window.__xss=2</script><b>bold</b>' });
  await weft.join(mallory, 'rust/xss');
  await weft.join(alice, 'rust/xss');
  await weft.post(mallory, xssRoom, '<img src=x onerror="window.__xss=3"> and <script>window.__xss=4</script>');
  const p = await newPage(browser, weft);
  await signIn(p, alice, '/rust/xss');
  await p.waitForSelector('body[data-live="true"]');
  // Delivered live as well as rendered by the server.
  await weft.post(mallory, xssRoom, '<img src=x onerror="window.__xss=5"><svg onload="window.__xss=6">');
  await p.locator('#messages .msg').nth(1).waitFor();
  await p.waitForTimeout(300);
  assert.equal(await p.evaluate(() => window.__xss), undefined);
  assert.equal(await p.locator('#messages .msg .author').first().textContent(), '<img src=x onerror="window.__xss=1">');
  assert.equal(await p.locator('#room-topic').textContent(), '<script>window.__xss=2</script><b>bold</b>');
  assert.equal(await p.locator('#messages img[onerror], #messages script, #messages svg').count(), 0);
  const visitor = await newPage(browser, weft);
  await visitor.goto('/rust/xss/archives');
  await visitor.locator('.heatmap a.day').first().click();
  await visitor.locator('#messages .msg').first().waitFor();
  assert.equal(await visitor.evaluate(() => window.__xss), undefined);
  assert.deepEqual(p.errors, []);
  assert.deepEqual(visitor.errors, []);
  await p.context().close();
  await visitor.context().close();
});

test('archives work without JavaScript and honour noindex', async () => {
  const noscript = await newPage(browser, weft, { javaScriptEnabled: false });
  await noscript.goto('/rust/general/archives');
  const day = noscript.locator('#heatmap a.day');
  assert.equal(await day.count(), 1, 'one day with messages');
  assert.match(await day.getAttribute('title'), /: 6\d messages$/);
  await shot(noscript, 'archives.png');
  await day.click();
  await noscript.locator('#messages .msg', { hasText: 'history message 0' }).waitFor();
  await noscript.locator('#messages .msg', { hasText: 'hi alice, from the API' }).waitFor();
  assert.equal(await noscript.locator('#messages .msg', { hasText: 'a reply in the thread' }).count(), 0);
  assert.equal(await noscript.locator('meta[name="robots"]').count(), 0);
  await shot(noscript, 'archives-day.png');
  const dayUrl = noscript.url();

  const admin = weft.user('root', { admin: true });
  await weft.api(admin, 'PUT', `/rooms/${roomId}`, { noindex: true });
  await noscript.goto(dayUrl);
  assert.equal(await noscript.locator('meta[name="robots"][content="noindex"]').count(), 1);
  const sitemap = await (await fetch(weft.base + '/sitemap.xml')).text();
  assert.doesNotMatch(sitemap, /rust\/general/);
  assert.match(sitemap, /<loc>http:\/\/127\.0\.0\.1:\d+\/rust\/xss\/archives<\/loc>/);
  assert.doesNotMatch(sitemap, /rust\/secret/);
  await weft.api(admin, 'PUT', `/rooms/${roomId}`, { noindex: false });
  await noscript.context().close();
});

test('the directory lists and searches public rooms', async () => {
  const visitor = await newPage(browser, weft);
  await visitor.goto('/');
  await visitor.locator('#directory .room-card', { hasText: 'rust/general' }).waitFor();
  assert.equal(await visitor.locator('#directory .room-card', { hasText: 'rust/secret' }).count(), 0);
  await visitor.fill('#room-search', 'about rust');
  await visitor.press('#room-search', 'Enter');
  await visitor.waitForURL(/q=about/);
  assert.equal(await visitor.locator('#directory .room-card').count(), 1);
  await shot(visitor, 'directory.png');
  await visitor.context().close();
});

test('personal access tokens: create, use, revoke', async () => {
  await page.goto('/settings/tokens');
  await page.fill('#token-name', 'my bot');
  await page.click('#token-form button[type=submit]');
  const secret = (await page.locator('#new-token').textContent()).trim();
  const me = await fetch(`${weft.base}/v1/user/me`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal((await me.json()).username, 'alice');
  await shot(page, 'tokens.png');
  await page.locator('#tokens tr', { hasText: 'my bot' }).locator('button', { hasText: 'Revoke' }).click();
  await page.waitForURL(/\/settings\/tokens$/);
  assert.equal(await page.locator('#tokens tr', { hasText: 'my bot' }).count(), 0);
  const gone = await fetch(`${weft.base}/v1/user/me`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(gone.status, 401);
});

test('joining and leaving a room', async () => {
  const carol = weft.user('carol');
  const p = await newPage(browser, weft);
  await signIn(p, carol, '/rust/general');
  await p.click('#join');
  await p.locator('#compose').waitFor();
  await p.locator('#room-list li.current', { hasText: 'rust/general' }).waitFor();
  await p.click('#leave');
  await p.locator('#join').waitFor();
  await p.context().close();
});

test('a phone-sized screen has no sideways scrolling and a room menu', async () => {
  const phone = await newPage(browser, weft, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await signIn(phone, alice, '/rust/general');
  await phone.waitForSelector('body[data-live="true"]');
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
  assert.ok(await phone.locator('#compose').isVisible());
  assert.equal(await phone.locator('#sidebar').isVisible(), false);
  await shot(phone, 'room-phone.png');
  await phone.click('#menu-toggle');
  assert.ok(await phone.locator('#sidebar').isVisible());
  await shot(phone, 'room-phone-menu.png');
  await phone.context().close();
});

test('signing out ends the session', async () => {
  await page.goto('/rust/general');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'weft_session').value;
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.click('.account button', { hasText: 'Sign out' })]);
  await page.locator('#sign-in').waitFor();
  const r = await fetch(`${weft.base}/v1/user/me`, { headers: { Authorization: `Bearer ${session}` } });
  assert.equal(r.status, 401);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
