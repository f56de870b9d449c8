// The people side of a room in a real browser: the member list (pages, roles, people from
// Matrix), favourites, and the room settings that only admins see.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Weft, launchBrowser, newPage, shot, signIn } from './support.mjs';

let weft;
let browser;
let owner;
let alice;
let roomId;
let otherId;

before(async () => {
  weft = await Weft.start();
  owner = weft.user('owner', { displayName: 'Olive Owner' });
  alice = weft.user('alice', { displayName: 'Alice Liddell' });
  const group = await weft.api(owner, 'POST', '/groups', { uri: 'acme', name: 'Acme' });
  const room = await weft.api(owner, 'POST', `/groups/${group.id}/rooms`, { name: 'lobby', topic: 'Say hello' });
  roomId = room.id;
  otherId = weft.room('acme/zoo');
  await weft.join(alice, 'acme/lobby');
  await weft.join(alice, 'acme/zoo');
  // 32 more members: the list shows 30 at first.
  for (let i = 0; i < 32; i++) {
    const u = weft.user(`member${String(i).padStart(2, '0')}`);
    await weft.join(u, 'acme/lobby');
  }
  const bridge = weft.user('bridge');
  bridge.token = weft.cli('token', 'create', 'bridge', '--bridge', '--label', 'matrix bridge');
  await weft.post(bridge, roomId, 'hi from matrix', {
    virtualUser: { type: 'matrix', externalId: '@carl:example.org', displayName: 'Carl on Matrix' },
  });
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (weft) await weft.stop();
});

test('the member list pages with "load more", shows roles and people from Matrix', async () => {
  const page = await newPage(browser, weft, { viewport: { width: 1280, height: 800 } });
  await signIn(page, alice, '/acme/lobby');
  await page.waitForSelector('body[data-live="true"]');
  assert.equal(await page.locator('#members').isHidden(), true);
  await page.click('#members-toggle');
  assert.equal(await page.getAttribute('#members-toggle', 'aria-expanded'), 'true');
  await page.waitForFunction(() => document.querySelectorAll('#member-list .person').length === 30);
  await page.locator('#members-more').waitFor({ state: 'visible' });
  const aliceItem = page.locator('#member-list .person', { hasText: 'Alice Liddell' });
  assert.equal(await aliceItem.locator('.username').textContent(), '@alice');
  assert.equal(await aliceItem.locator('.badge').count(), 0, 'plain members get no badge');
  const aliceAvatar = aliceItem.locator('img.avatar');
  assert.equal(await aliceAvatar.getAttribute('src'), '/avatars/alice');
  await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await aliceAvatar.elementHandle());
  await page.click('#members-more');
  await page.waitForFunction(() => document.querySelectorAll('#member-list .person').length === 34);
  await page.locator('#members-more').waitFor({ state: 'hidden' });
  const ownerItem = page.locator('#member-list .person', { hasText: 'Olive Owner' });
  assert.equal(await ownerItem.locator('.badge').textContent(), 'Admin');
  assert.equal(await ownerItem.locator('.username').textContent(), '@owner');

  // Searching by the start of a username or name.
  await page.fill('#member-search', 'member1');
  await page.waitForFunction(() => document.querySelectorAll('#member-list .person').length === 10);
  assert.deepEqual(
    await page.locator('#member-list .person .username').allTextContents(),
    Array.from({ length: 10 }, (_, i) => `@member1${i}`),
  );
  assert.equal(await page.locator('#members-more').isHidden(), true);
  await page.fill('#member-search', 'olive');
  await page.waitForFunction(() => document.querySelectorAll('#member-list .person').length === 1);
  assert.equal(await page.textContent('#member-list .person .author'), 'Olive Owner');
  await page.fill('#member-search', '');
  await page.waitForFunction(() => document.querySelectorAll('#member-list .person').length === 30);

  const carl = page.locator('#matrix-list .person', { hasText: 'Carl on Matrix' });
  await carl.waitFor();
  assert.equal(await carl.locator('.badge').textContent(), 'Matrix');
  assert.equal(await carl.locator('.username').textContent(), '@carl:example.org');
  assert.equal(await carl.locator('img.avatar').getAttribute('src'), '/avatars/%40carl%3Aexample.org');
  // Without a bridge configured there is no Matrix address to join from.
  assert.equal(await page.locator('#matrix-link').count(), 0);
  assert.equal(await page.locator('#members[data-matrix-server]').count(), 0);

  // A new Matrix voice appears while the list is open.
  const bridge = { token: weft.cli('token', 'create', 'bridge', '--bridge', '--label', 'second') };
  await weft.post(bridge, roomId, 'dana says hi', {
    virtualUser: { type: 'matrix', externalId: '@dana:example.org', displayName: 'Dana <b>M</b>' },
  });
  const dana = page.locator('#matrix-list .person', { hasText: 'Dana <b>M</b>' });
  await dana.waitFor();
  assert.equal(await page.locator('#matrix-list b').count(), 0, 'names are text, not markup');
  await shot(page, 'room-members.png');

  await page.keyboard.press('Escape');
  await page.locator('#members').waitFor({ state: 'hidden' });
  assert.equal(await page.getAttribute('#members-toggle', 'aria-expanded'), 'false');
  assert.deepEqual(page.errors, []);
  assert.deepEqual(page.foreign, []);
  await page.context().close();
});

test('visitors see the member list too', async () => {
  const page = await newPage(browser, weft);
  await page.goto('/acme/lobby');
  await page.click('#members-toggle');
  await page.locator('#member-list .person', { hasText: 'Alice Liddell' }).waitFor();
  assert.equal(await page.locator('#favourite').count(), 0, 'no star for visitors');
  assert.equal(await page.locator('#member-list .person-open').count(), 0, 'visitors cannot open chats');
  // Someone joining while the list is open shows up in it.
  const count = Number(await page.textContent('#member-count'));
  await page.waitForSelector('body[data-live="true"]');
  const newcomer = weft.user('aaron', { displayName: 'Aaron Newcomer' });
  await weft.join(newcomer, 'acme/lobby');
  await page.locator('#member-list .person', { hasText: 'Aaron Newcomer' }).waitFor();
  assert.equal(Number(await page.textContent('#member-count')), count + 1);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('the star makes a room a favourite, listed first', async () => {
  const page = await newPage(browser, weft, { viewport: { width: 1280, height: 800 } });
  await signIn(page, alice, '/acme/zoo');
  await page.waitForSelector('body[data-live="true"]');
  const names = () => page.locator('#room-list li a').allTextContents();
  assert.deepEqual(await names(), ['acme/lobby', 'acme/zoo']);
  assert.equal(await page.getAttribute('#favourite', 'aria-pressed'), 'false');
  await page.click('#favourite');
  await page.waitForSelector('#favourite[aria-pressed="true"]');
  await page.waitForSelector('#room-list li[data-favourite] a >> text=acme/zoo');
  assert.deepEqual(await names(), ['acme/zoo', 'acme/lobby']);
  const rooms = await weft.api(alice, 'GET', '/rooms');
  assert.equal(rooms.find((r) => r.id === otherId).favourite, 1);

  // Server-rendered the same way after a reload, then off again.
  await page.reload();
  assert.equal(await page.getAttribute('#favourite', 'aria-pressed'), 'true');
  assert.equal(await page.locator('#room-list li').first().getAttribute('data-favourite'), 'true');
  await page.click('#favourite');
  await page.waitForSelector('#favourite[aria-pressed="false"]');
  await page.waitForFunction(() => !document.querySelector('#room-list li[data-favourite]'));
  assert.deepEqual(await names(), ['acme/lobby', 'acme/zoo']);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('room settings: admins change topic, name, privacy and noindex; others see no button', async () => {
  const member = await newPage(browser, weft);
  await signIn(member, alice, '/acme/lobby');
  assert.equal(await member.locator('#room-settings').count(), 0);
  assert.equal(await member.locator('#settings-dialog').count(), 0);

  const page = await newPage(browser, weft, { viewport: { width: 1280, height: 800 } });
  await signIn(page, owner, '/acme/lobby');
  await page.waitForSelector('body[data-live="true"]');
  await member.waitForSelector('body[data-live="true"]');
  await page.click('#room-settings');
  await page.locator('#settings-dialog[open]').waitFor();
  assert.equal(await page.inputValue('#settings-topic'), 'Say hello');
  await page.fill('#settings-name', 'The <Lobby>');
  await page.fill('#settings-topic', 'New topic <img src=x onerror=alert(1)>');
  await page.check('input[name="security"][value="PRIVATE"]');
  await page.check('#settings-noindex');
  assert.equal(await page.isHidden('#room-avatar'), true, 'no avatar yet');
  await page.fill('#settings-avatar', '/avatars/lobby');
  await shot(page, 'room-settings.png');
  await page.click('#settings-save');
  await page.locator('#settings-dialog').waitFor({ state: 'hidden' });
  assert.equal(await page.textContent('#room-name'), 'The <Lobby>');
  assert.equal(await page.textContent('#room-topic'), 'New topic <img src=x onerror=alert(1)>');
  assert.equal(await page.getAttribute('#room-avatar', 'src'), '/avatars/lobby');
  assert.equal(await page.isVisible('#room-avatar'), true);
  // The other member's page follows live.
  await member.locator('#room-topic', { hasText: 'New topic' }).waitFor();
  await member.locator('#room-avatar[src="/avatars/lobby"]').waitFor();

  const room = await weft.api(owner, 'GET', `/rooms/${roomId}`);
  assert.equal(room.topic, 'New topic <img src=x onerror=alert(1)>');
  assert.equal(room.security, 'PRIVATE');
  assert.equal(room.noindex, true);
  assert.equal(room.avatarUrl, '/avatars/lobby');
  const visitor = await fetch(weft.base + '/acme/lobby', { headers: { Accept: 'text/html' } });
  assert.equal(visitor.status, 404, 'private now');

  // An empty field takes the avatar away.
  await page.click('#room-settings');
  await page.fill('#settings-avatar', '');
  await page.click('#settings-save');
  await page.locator('#settings-dialog').waitFor({ state: 'hidden' });
  assert.equal(await page.isHidden('#room-avatar'), true);
  assert.equal((await weft.api(owner, 'GET', `/rooms/${roomId}`)).avatarUrl, null);

  // Esc closes the dialog without saving.
  await page.click('#room-settings');
  await page.fill('#settings-topic', 'not saved');
  await page.keyboard.press('Escape');
  await page.locator('#settings-dialog').waitFor({ state: 'hidden' });
  assert.equal((await weft.api(owner, 'GET', `/rooms/${roomId}`)).topic, 'New topic <img src=x onerror=alert(1)>');
  assert.deepEqual(page.errors, []);
  assert.deepEqual(member.errors, []);
  await page.context().close();
  await member.context().close();
});

test('typeahead completes :emoji: and @mentions from the keyboard', async () => {
  const page = await newPage(browser, weft, { viewport: { width: 1280, height: 800 } });
  await signIn(page, alice, '/acme/lobby');
  await page.waitForSelector('body[data-live="true"]');
  const box = page.locator('#compose-typeahead');
  const options = box.locator('[role="option"]');

  await page.type('#compose', 'hello :tad');
  await box.waitFor({ state: 'visible' });
  assert.equal(await page.getAttribute('#compose', 'aria-expanded'), 'true');
  assert.equal(await options.first().locator('.detail').textContent(), ':tada:');
  await page.press('#compose', 'Enter');
  assert.equal(await page.inputValue('#compose'), 'hello 🎉 ');
  await box.waitFor({ state: 'hidden' });

  // Arrows move, Tab picks.
  await page.type('#compose', ':smi');
  await box.waitFor({ state: 'visible' });
  assert.deepEqual((await options.locator('.detail').allTextContents()).slice(0, 2), [':smile:', ':smiley:']);
  await page.press('#compose', 'ArrowDown');
  assert.equal(await options.nth(1).getAttribute('aria-selected'), 'true');
  await page.press('#compose', 'Tab');
  assert.equal(await page.inputValue('#compose'), 'hello 🎉 😃 ');

  // Esc closes the list and keeps the text.
  await page.type('#compose', ':roc');
  await box.waitFor({ state: 'visible' });
  await page.press('#compose', 'Escape');
  await box.waitFor({ state: 'hidden' });
  assert.equal(await page.inputValue('#compose'), 'hello 🎉 😃 :roc');

  // @mentions come from the room's members.
  await page.fill('#compose', '');
  await page.type('#compose', 'ping @member0');
  await options.nth(7).waitFor();
  await shot(page, 'room-typeahead.png');
  assert.equal(await options.first().locator('.detail').textContent(), '@member00');
  await page.press('#compose', 'ArrowDown');
  await page.press('#compose', 'ArrowDown');
  await page.press('#compose', 'ArrowUp');
  await page.press('#compose', 'Enter');
  assert.equal(await page.inputValue('#compose'), 'ping @member01 ');
  await page.type('#compose', 'and @Oli');
  await page.locator('#compose-typeahead [role="option"]', { hasText: 'Olive Owner' }).waitFor();
  await page.press('#compose', 'Tab');
  assert.equal(await page.inputValue('#compose'), 'ping @member01 and @owner ');
  await page.press('#compose', 'Enter');
  await page.locator('#messages .msg', { hasText: 'ping @member01 and @owner' }).waitFor();
  const [sent] = await weft.api(alice, 'GET', `/rooms/${roomId}/chatMessages?limit=1`);
  assert.deepEqual(sent.mentions.map((m) => m.screenName).sort(), ['member01', 'owner']);
  assert.ok(sent.mentions.every((m) => m.userId), 'both mentions resolve to users');

  // People from Matrix who spoke in the room are offered too, by their Matrix ID.
  await page.type('#compose', 'thanks @carl');
  const carl = page.locator('#compose-typeahead [role="option"]', { hasText: 'Carl on Matrix' });
  await carl.waitFor();
  assert.equal(await carl.locator('.detail').textContent(), '@carl:example.org · Matrix');
  await page.press('#compose', 'Tab');
  assert.equal(await page.inputValue('#compose'), 'thanks @carl:example.org ');
  await page.press('#compose', 'Enter');
  await page.locator('#messages .msg', { hasText: 'thanks @carl:example.org' }).waitFor();
  const [thanks] = await weft.api(alice, 'GET', `/rooms/${roomId}/chatMessages?limit=1`);
  assert.deepEqual(thanks.mentions.map((m) => m.screenName), ['carl:example.org']);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('clicking a member opens a one-to-one chat that only the two of them can see', async () => {
  const page = await newPage(browser, weft, { viewport: { width: 1280, height: 800 } });
  await signIn(page, alice, '/acme/lobby');
  await page.waitForSelector('body[data-live="true"]');
  await page.click('#members-toggle');
  const open = page.locator('#member-list .person-open[data-username="member00"]');
  await open.waitFor();
  assert.equal(await page.locator('#member-list .person-open[data-username="alice"]').count(), 0, 'not with oneself');
  await Promise.all([page.waitForURL(/\/-\/dm\/[0-9a-f]+$/), open.click()]);
  const dmPath = new URL(page.url()).pathname;
  const dmId = dmPath.split('/').pop();
  await page.waitForSelector('body[data-live="true"]');
  assert.equal(await page.textContent('#room-name'), 'member00');
  assert.equal(await page.textContent('.room-head .room-uri'), '@member00');
  assert.equal(await page.locator('.room-actions a', { hasText: 'Archives' }).count(), 0);
  assert.equal(await page.locator('#leave').count(), 0);
  const item = page.locator(`#room-list li[data-room-id="${dmId}"]`);
  await item.waitFor();
  assert.equal(await item.getAttribute('data-one-to-one'), 'true');
  assert.equal(await item.locator('a').textContent(), 'member00');
  assert.equal(await item.locator('a').getAttribute('href'), dmPath);

  await page.fill('#compose', 'hello, just between us');
  await page.press('#compose', 'Enter');
  await page.locator('#messages .msg', { hasText: 'hello, just between us' }).waitFor();
  const member00 = { token: weft.tokens.get('member00') };
  const [last] = await weft.api(member00, 'GET', `/rooms/${dmId}/chatMessages?limit=1`);
  assert.equal(last.text, 'hello, just between us');
  await weft.post(member00, dmId, 'hi alice, private reply');
  await page.locator('#messages .msg', { hasText: 'hi alice, private reply' }).waitFor();
  await shot(page, 'room-one-to-one.png');

  // Server-rendered in the menu of other rooms too.
  await page.goto('/acme/zoo');
  assert.equal(await page.locator(`#room-list li[data-room-id="${dmId}"] a`).getAttribute('href'), dmPath);

  // Nobody else: not visitors, not other signed-in people, not by a made-up id.
  const visitor = await fetch(weft.base + dmPath, { headers: { Accept: 'text/html' } });
  assert.equal(visitor.status, 404);
  const other = await newPage(browser, weft);
  await signIn(other, owner, '/');
  const response = await other.goto(dmPath);
  assert.equal(response.status(), 404);
  assert.equal(await other.locator('#messages').count(), 0);
  assert.equal((await other.goto('/-/dm/not-an-id')).status(), 404);
  assert.equal((await other.goto(`/-/dm/${roomId}`)).status(), 404, 'a normal room is not a one-to-one');
  assert.deepEqual(page.errors, []);
  assert.deepEqual(other.errors, []);
  await other.context().close();
  await page.context().close();
});

test('where the Matrix bridge runs, the member list links the room on matrix.to', async () => {
  const bridged = await Weft.start({ matrixServerName: 'chat.example.org' });
  try {
    bridged.room('Rust/General');
    bridged.room('rust/hidden', { priv: true });
    const page = await newPage(browser, bridged);
    await page.goto('/Rust/General');
    await page.click('#members-toggle');
    const link = page.locator('#matrix-link');
    await link.waitFor();
    assert.equal(await link.getAttribute('href'), 'https://matrix.to/#/#rust_general:chat.example.org');
    assert.equal(await link.textContent(), 'Join from Matrix');
    assert.equal(await page.getAttribute('#members', 'data-matrix-server'), 'chat.example.org');
    assert.deepEqual(page.errors, []);
    assert.deepEqual(page.foreign, [], 'the link is not followed by itself');

    // Private rooms are not reachable from Matrix, so they get no link.
    const admin = bridged.user('root', { admin: true });
    await signIn(page, admin, '/rust/hidden');
    assert.equal(new URL(page.url()).pathname, '/rust/hidden');
    assert.equal(await page.locator('#matrix-link').count(), 0);
    await page.context().close();
  } finally {
    await bridged.stop();
  }
});

test('on a phone-sized screen the member list and settings fit without sideways scrolling', async () => {
  const page = await newPage(browser, weft, { viewport: { width: 375, height: 700 }, isMobile: true, hasTouch: true });
  await signIn(page, owner, '/acme/lobby');
  await page.waitForSelector('body[data-live="true"]');
  const fits = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  await page.click('#members-toggle');
  await page.locator('#member-list .person').first().waitFor();
  const panel = await page.locator('#members').boundingBox();
  assert.ok(panel.width <= 375 && panel.x >= 0, `panel inside the screen: ${JSON.stringify(panel)}`);
  assert.ok(await fits(), 'no sideways scrolling with the member list open');
  await shot(page, 'phone-members.png');
  await page.click('#members-close');
  await page.locator('#members').waitFor({ state: 'hidden' });
  await page.click('#room-settings');
  const dialog = await page.locator('#settings-dialog').boundingBox();
  assert.ok(dialog.x >= 0 && dialog.x + dialog.width <= 375, `dialog inside the screen: ${JSON.stringify(dialog)}`);
  assert.ok(await fits());
  await page.click('#settings-cancel');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
