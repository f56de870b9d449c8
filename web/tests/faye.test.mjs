// Gitter's realtime endpoint driven by the real Faye client, configured the way node-gitter
// does it: the token in the handshake's ext, then subscriptions to Gitter's channels.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import faye from 'faye';
import { Weft } from './support.mjs';

let weft;
let alice;
let bob;
let roomId;
let secretId;

before(async () => {
  weft = await Weft.start();
  alice = weft.user('alice');
  bob = weft.user('bob');
  roomId = weft.room('acme/lobby');
  secretId = weft.room('acme/staff', { priv: true });
  await weft.join(alice, 'acme/lobby');
  await weft.join(bob, 'acme/lobby');
});

after(async () => {
  await weft?.stop();
});

// A Faye client that authenticates as node-gitter does; `transport` picks one.
function client(token, transport) {
  const c = new faye.Client(`${weft.base}/bayeux`, { timeout: 10, retry: 1 });
  if (transport === 'long-polling') c.disable('websocket');
  c.addExtension({
    outgoing(message, callback) {
      if (message.channel === '/meta/handshake') message.ext = { token };
      callback(message);
    },
  });
  return c;
}

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

for (const transport of ['websocket', 'long-polling']) {
  test(`a Faye client over ${transport} receives messages posted through the API`, async () => {
    const c = client(bob.token, transport);
    try {
      const received = [];
      let wake;
      const subscription = c.subscribe(`/api/v1/rooms/${roomId}/chatMessages`, (data) => {
        received.push(data);
        wake?.();
      });
      await within(5000, 'subscribe', subscription);
      // The transport Faye settled on (its dispatcher's own field).
      assert.equal(c._dispatcher.connectionType, transport);
      const text = `hello over ${transport}`;
      const arrived = new Promise((resolve) => {
        wake = () => received.some((d) => d.model.text === text) && resolve();
      });
      const posted = await weft.post(alice, roomId, text);
      await within(5000, 'the message', arrived);
      const event = received.find((d) => d.model.text === text);
      assert.equal(event.operation, 'create');
      assert.equal(event.model.id, posted.id);
      assert.equal(event.model.fromUser.username, 'alice');
      assert.equal(event.model.html, posted.html);
    } finally {
      await c.disconnect();
    }
  });
}

test('a Faye client may not follow a private room it cannot read', async () => {
  const c = client(bob.token, 'long-polling');
  try {
    await within(5000, 'subscribe', c.subscribe(`/api/v1/rooms/${roomId}/users`, () => {}));
    const refused = c.subscribe(`/api/v1/rooms/${secretId}/chatMessages`, () => {});
    const error = await within(5000, 'refusal', refused.then(() => null, (e) => e));
    assert.ok(error, 'the subscription was refused');
    assert.equal(error.code, 403);
  } finally {
    await c.disconnect();
  }
});

test('a Faye client with a wrong token is refused at the handshake', async () => {
  const c = client('not-a-token', 'long-polling');
  const refusal = new Promise((resolve) => {
    c.addExtension({
      incoming(message, callback) {
        if (message.channel === '/meta/handshake' && !message.successful) resolve(message);
        callback(message);
      },
    });
  });
  c.subscribe(`/api/v1/rooms/${roomId}/chatMessages`, () => {});
  const message = await within(5000, 'handshake refusal', refusal);
  assert.match(message.error, /^401:/);
  assert.equal(message.clientId, undefined);
  await c.disconnect();
});
