// Moderation in a real browser: a moderator bans a Matrix person from the member panel, sees
// the ban list (weft users and Matrix IDs) and lifts a ban; members see no such controls.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Weft, launchBrowser, newPage, shot, signIn } from './support.mjs';

let weft;
let browser;
let owner;
let alice;
let bridge;
let roomId;

before(async () => {
  weft = await Weft.start();
  owner = weft.user('owner', { displayName: 'Olive Owner' });
  alice = weft.user('alice', { displayName: 'Alice Liddell' });
  const group = await weft.api(owner, 'POST', '/groups', { uri: 'mods', name: 'Mods' });
  const room = await weft.api(owner, 'POST', `/groups/${group.id}/rooms`, { name: 'hall', topic: 'Be nice' });
  roomId = room.id;
  await weft.join(alice, 'mods/hall');
  bridge = weft.user('bridge');
  bridge.token = weft.cli('token', 'create', 'bridge', '--bridge', '--label', 'matrix bridge');
  await weft.post(bridge, roomId, 'buy cheap watches', {
    virtualUser: { type: 'matrix', externalId: '@spam:example.org', displayName: 'Spam Bot' },
  });
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (weft) await weft.stop();
});

test('a moderator bans a Matrix person from the member panel and lifts the ban', async () => {
  const page = await newPage(browser, weft, { viewport: { width: 1280, height: 800 } });
  await signIn(page, owner, '/mods/hall');
  await page.waitForSelector('body[data-live="true"]');
  await page.click('#members-toggle');
  const spam = page.locator('#matrix-list .person', { hasText: 'Spam Bot' });
  await spam.locator('.ban').click();
  const banned = page.locator('#ban-list .person', { hasText: '@spam:example.org' });
  await banned.waitFor();
  const bans = await weft.api(owner, 'GET', `/rooms/${roomId}/bans`);
  assert.deepEqual(bans.map((b) => b.user.username), ['@spam:example.org']);
  const refused = await fetch(`${weft.base}/v1/rooms/${roomId}/chatMessages`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${bridge.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ text: 'more spam', virtualUser: { type: 'matrix', externalId: '@spam:example.org', displayName: 'Spam Bot' } }),
  });
  assert.equal(refused.status, 403, 'a banned Matrix person cannot post');

  // Ban a Matrix ID that has not spoken yet, with a reason, from the form.
  await page.fill('#ban-name', '@later:example.org');
  await page.fill('#ban-reason', 'known spammer');
  await page.click('#ban-form button[type="submit"]');
  await page.locator('#ban-list .person', { hasText: '@later:example.org' }).waitFor();
  await shot(page, 'moderation-bans.png');

  await banned.locator('.unban').click();
  await banned.waitFor({ state: 'detached' });
  const left = await weft.api(owner, 'GET', `/rooms/${roomId}/bans`);
  assert.deepEqual(left.map((b) => [b.user.username, b.reason]), [['@later:example.org', 'known spammer']]);
  await page.close();
});

test('people a bridge lists in the room are in the member list once, with a Matrix badge', async () => {
  const listed = await weft.api(bridge, 'POST', `/rooms/${roomId}/virtualUsers`, {
    type: 'matrix', externalId: '@listed:example.org', displayName: 'Listed Person',
  });
  const page = await newPage(browser, weft, { viewport: { width: 1280, height: 800 } });
  await signIn(page, owner, '/mods/hall');
  await page.waitForSelector('body[data-live="true"]');
  await page.click('#members-toggle');
  const person = page.locator('#member-list .person', { hasText: 'Listed Person' });
  await person.waitFor();
  assert.equal(await person.locator('.badge').textContent(), 'Matrix');
  assert.equal(await page.locator('#matrix-list .person', { hasText: 'Listed Person' }).count(), 0,
    'not listed twice');
  // Unlisted by the bridge: the open list follows.
  await weft.api(bridge, 'DELETE', `/rooms/${roomId}/virtualUsers/${listed.id}`);
  await person.waitFor({ state: 'detached' });
  await page.close();
});

test('members see no moderation controls', async () => {
  const page = await newPage(browser, weft, { viewport: { width: 1280, height: 800 } });
  await signIn(page, alice, '/mods/hall');
  await page.waitForSelector('body[data-live="true"]');
  await page.click('#members-toggle');
  await page.locator('#matrix-list .person').first().waitFor();
  assert.equal(await page.locator('#bans').count(), 0);
  assert.equal(await page.locator('#matrix-list .ban').count(), 0);
  await page.close();
});
