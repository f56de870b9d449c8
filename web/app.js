// weft's web app: makes a server-rendered room live. The page arrives with its last messages
// and the event log position they were read at; this script follows the WebSocket feed from
// exactly there, and adds sending, editing, deleting, reactions, threads and uploads.
//
// Untrusted text only ever goes in through textContent; the one exception is a message's
// `html`, which the server sanitised when it rendered the message.
'use strict';

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const REACTIONS = ['👍', '👎', '😄', '🎉', '❤️', '🚀', '👀', '😕'];
  const PAGE = 50;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function button(cls, label, title) {
    const b = el('button', cls, label);
    b.type = 'button';
    if (title) {
      b.title = title;
      b.setAttribute('aria-label', title);
    }
    return b;
  }

  // The same hue the server picks for a name (see the avatar in the server's renderer).
  function hue(name) {
    let h = 7;
    for (const b of new TextEncoder().encode(name)) h = (Math.imul(h, 31) + b) >>> 0;
    return h % 360;
  }

  // Someone's avatar: their own picture when it is one this page may load (http, https or a
  // path on this server; not a Matrix mxc: URL), else the one the server draws for the name.
  function avatarSrc(url, username) {
    const u = String(url || '').trim();
    if (/^https?:\/\//i.test(u) || (u.startsWith('/') && !u.startsWith('//'))) return u;
    return '/avatars/' + encodeURIComponent(username || '');
  }

  function avatarImg(url, username, size) {
    const img = document.createElement('img');
    img.className = 'avatar';
    img.src = avatarSrc(url, username);
    img.alt = '';
    img.width = size;
    img.height = size;
    img.style.setProperty('--hue', String(hue(username || '')));
    return img;
  }

  // Times show at once in the reader's time zone as HH:MM, from Date's own getters. The
  // locale's format (a 12-hour clock, say) and the full date in the title follow once the page
  // has been painted: a page's first Intl formatter loads locale data, which in a fresh tab
  // took 30 to 170 ms, and the messages should not wait for it.
  let shortTime = null;
  let fullTime = null;
  const pad = (n) => String(n).padStart(2, '0');

  function localizeTime(t) {
    const d = new Date(t.dateTime);
    if (Number.isNaN(d.getTime())) return;
    if (shortTime) {
      t.textContent = shortTime.format(d);
      t.title = fullTime.format(d);
    } else {
      t.textContent = pad(d.getHours()) + ':' + pad(d.getMinutes());
    }
  }

  function localizeTimes(root) {
    $$('.msg time[datetime]', root).forEach(localizeTime);
  }

  let toastTimer = 0;
  function showError(message) {
    let toast = $('#toast');
    if (!toast) {
      toast = el('div', 'toast');
      toast.id = 'toast';
      toast.setAttribute('role', 'alert');
      document.body.append(toast);
    }
    toast.textContent = message;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, 6000);
  }

  // Every change carries the header that tells weft it comes from its own pages.
  async function api(method, path, body) {
    const options = {
      method,
      credentials: 'same-origin',
      headers: { 'X-Requested-With': 'weft', Accept: 'application/json' },
    };
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const response = await fetch('/v1' + path, options);
    if (response.status === 204) return null;
    const json = await response.json().catch(() => null);
    if (!response.ok) throw new Error((json && json.error) || response.statusText);
    return json;
  }

  function setupMenu() {
    const toggle = $('#menu-toggle');
    if (!toggle) return;
    toggle.addEventListener('click', () => {
      const open = document.body.classList.toggle('menu-open');
      toggle.setAttribute('aria-expanded', String(open));
    });
  }

  localizeTimes(document);
  requestAnimationFrame(() => setTimeout(() => {
    // Made once: toLocaleString() would build a new formatter for every message.
    shortTime = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });
    fullTime = new Intl.DateTimeFormat([], {
      year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    localizeTimes(document);
  }, 0));
  setupMenu();

  const dataNode = $('#weft-page');
  if (!dataNode) return;
  const page = JSON.parse(dataNode.textContent);
  const me = page.me;
  const list = $('#messages');
  const threadPanel = $('#thread');
  const threadList = $('#thread-messages');
  const composer = $('#composer');
  const compose = $('#compose');
  const roomPath = '/rooms/' + page.roomId;

  // My own reactions per message: live patches carry counts for everyone, not who "me" is.
  const myReactions = new Map();
  $$('.msg', list).forEach((li) => {
    const mine = $$('.reaction.mine', li).map((b) => b.dataset.emoji);
    if (mine.length) myReactions.set(li.dataset.id, new Set(mine));
  });

  // ---- Rendering -------------------------------------------------------------------------

  function badgeLabel(kind) {
    return String(kind || '').toLowerCase() === 'matrix' ? 'Matrix' : String(kind || '');
  }

  function renderReactions(container, messageId, reactions) {
    container.replaceChildren();
    const mine = myReactions.get(messageId) || new Set();
    for (const r of reactions || []) {
      const isMine = mine.has(r.emoji) || (r.me && !myReactions.has(messageId));
      const b = button('reaction' + (isMine ? ' mine' : ''), r.emoji + ' ');
      b.dataset.emoji = r.emoji;
      b.title = r.emoji;
      b.setAttribute('aria-pressed', String(isMine));
      b.append(el('span', 'count', String(r.count)));
      container.append(b);
    }
  }

  function setThreadCount(body, count) {
    let link = $('.thread-link', body);
    if (!count) {
      if (link) link.remove();
      return;
    }
    if (!link) {
      link = button('thread-link', '');
      body.append(link);
    }
    link.dataset.count = String(count);
    link.textContent = count + (count === 1 ? ' reply' : ' replies');
  }

  function renderMessage(m, inThread) {
    const li = el('li', 'msg');
    if (m.status) li.classList.add('status');
    if (m.deleted) li.classList.add('deleted');
    if (!inThread) li.id = 'm-' + m.id;
    li.dataset.id = m.id;
    const u = m.fromUser || {};
    li.dataset.author = u.id || '';
    const name = u.displayName || u.username || 'someone';
    const avatar = avatarImg(u.avatarUrl, u.username, 34);
    const body = el('div', 'body');
    const meta = el('div', 'meta');
    meta.append(el('span', 'author', name), ' ', el('span', 'username', (u.virtual ? '' : '@') + (u.username || '')));
    if (u.virtual) meta.append(' ', el('span', 'badge', badgeLabel(u.badge)));
    const link = el('a', 'time');
    link.href = page.base + '?at=' + encodeURIComponent(m.id);
    const time = document.createElement('time');
    time.dateTime = m.sent;
    localizeTime(time);
    link.append(time);
    meta.append(' ', link);
    if (m.undelivered) {
      // The bridge gave up carrying it: its author should know it never arrived there.
      const net = badgeLabel(m.undelivered.network);
      const mark = el('span', 'undelivered', '⚠ not on ' + net);
      mark.title = 'Not delivered to ' + net + ': ' + m.undelivered.reason;
      meta.append(' ', mark);
    }
    if (m.editedAt) meta.append(' ', el('span', 'edited', '(edited)'));
    body.append(meta);
    const text = el('div', 'text');
    if (m.deleted) text.append(el('em', null, 'This message was deleted.'));
    else text.innerHTML = m.html; // sanitised by the server
    body.append(text);
    if (m.attachments && m.attachments.length) {
      const files = el('div', 'attachments');
      for (const a of m.attachments) {
        const link = el('a', 'attachment');
        link.href = a.url;
        if (String(a.mimeType).startsWith('image/')) {
          link.target = '_blank';
          const img = document.createElement('img');
          img.src = a.url;
          img.alt = a.name;
          img.loading = 'lazy';
          link.append(img);
        } else {
          link.classList.add('file');
          link.download = '';
          link.textContent = a.name;
        }
        files.append(link);
      }
      body.append(files);
    }
    if (Array.isArray(m.reactions)) {
      const mine = m.reactions.filter((r) => r.me).map((r) => r.emoji);
      if (mine.length && !myReactions.has(m.id)) myReactions.set(m.id, new Set(mine));
    }
    const reactions = el('div', 'reactions');
    renderReactions(reactions, m.id, m.reactions);
    body.append(reactions);
    if (!inThread) setThreadCount(body, m.threadMessageCount || 0);
    li.append(avatar, body);
    decorate(li, inThread);
    return li;
  }

  // Adds the actions a signed-in member has on a message.
  function decorate(li, inThread) {
    if (!me || !page.member || li.classList.contains('deleted') || $('.actions', li)) return;
    const actions = el('div', 'actions');
    const react = button('act', '☺', 'Add a reaction');
    react.dataset.act = 'react';
    actions.append(react);
    if (!inThread) {
      const reply = button('act', '↳', 'Reply in thread');
      reply.dataset.act = 'thread';
      actions.append(reply);
    }
    if (li.dataset.author === me.id) {
      const edit = button('act', '✎', 'Edit');
      edit.dataset.act = 'edit';
      const del = button('act', '🗑', 'Delete');
      del.dataset.act = 'delete';
      actions.append(edit, del);
    }
    li.append(actions);
  }

  function messageNodes(id) {
    return $$('.msg[data-id="' + CSS.escape(id) + '"]');
  }

  // ---- Scrolling and history ------------------------------------------------------------

  let hasOlder = page.hasOlder;
  let atEnd = page.atEnd;
  let loadingOlder = false;
  let loadingNewer = false;

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function scrollToBottom() {
    list.scrollTop = list.scrollHeight;
  }

  async function loadOlder() {
    if (!hasOlder || loadingOlder) return;
    const first = $('.msg', list);
    if (!first) return;
    loadingOlder = true;
    try {
      const older = await api('GET', roomPath + '/chatMessages?beforeId=' + encodeURIComponent(first.dataset.id) + '&limit=' + PAGE);
      const before = list.scrollHeight;
      const top = list.scrollTop;
      const fragment = document.createDocumentFragment();
      for (const m of older) if (!messageNodes(m.id).length) fragment.append(renderMessage(m, false));
      list.prepend(fragment);
      // Keep what the reader was looking at in place.
      list.scrollTop = top + (list.scrollHeight - before);
      if (older.length < PAGE) {
        hasOlder = false;
        // Keep the bar's height, so that nothing below it moves.
        const more = $('#older');
        if (more) more.textContent = 'This is the beginning of the room.';
      }
    } catch (e) {
      showError('Could not load older messages: ' + e.message);
    } finally {
      loadingOlder = false;
    }
  }

  async function loadNewer() {
    if (atEnd || loadingNewer) return;
    const all = $$('.msg', list);
    const last = all[all.length - 1];
    if (!last) return;
    loadingNewer = true;
    try {
      const newer = await api('GET', roomPath + '/chatMessages?afterId=' + encodeURIComponent(last.dataset.id) + '&limit=' + PAGE);
      for (const m of newer) if (!messageNodes(m.id).length) list.append(renderMessage(m, false));
      if (newer.length < PAGE) {
        atEnd = true;
        const jump = $('.newer');
        if (jump) jump.remove();
      }
    } catch (e) {
      showError('Could not load newer messages: ' + e.message);
    } finally {
      loadingNewer = false;
    }
  }

  list.addEventListener('scroll', () => {
    if (list.scrollTop < 200) loadOlder();
    if (!atEnd && nearBottom()) loadNewer();
  }, { passive: true });
  const olderButton = $('#load-older');
  if (olderButton) olderButton.addEventListener('click', loadOlder);

  const highlighted = page.highlight && $('#m-' + CSS.escape(page.highlight));
  if (highlighted) highlighted.scrollIntoView({ block: 'center' });
  else scrollToBottom();

  // ---- Reading state ---------------------------------------------------------------------

  let readTimer = 0;
  function markRead() {
    if (!me || !page.member || !atEnd || document.hidden) return;
    clearTimeout(readTimer);
    readTimer = setTimeout(() => {
      api('DELETE', '/user/me/rooms/' + page.roomId + '/unreadItems/all').catch(() => {});
    }, 500);
  }
  markRead();
  document.addEventListener('visibilitychange', markRead);

  // ---- Room list --------------------------------------------------------------------------

  const roomList = $('#room-list');
  const otherRooms = new Set();

  function badge(li, cls, value, prefix) {
    let b = $('.' + cls, li);
    if (!value) {
      if (b) b.remove();
      return;
    }
    if (!b) {
      b = el('span', cls);
      li.append(b);
    }
    b.textContent = (prefix || '') + value;
  }

  async function refreshRooms() {
    if (!me || !roomList) return;
    try {
      const rooms = await api('GET', '/rooms');
      roomList.replaceChildren();
      for (const r of rooms) {
        if (!r.oneToOne && !r.url) continue;
        const li = el('li');
        li.dataset.roomId = r.id;
        if (r.favourite) li.dataset.favourite = 'true';
        if (r.oneToOne) li.dataset.oneToOne = 'true';
        const a = el('a', null, r.oneToOne ? (r.user && r.user.displayName) || r.name : r.name);
        a.href = r.oneToOne ? '/-/dm/' + encodeURIComponent(r.id) : r.url;
        li.append(a);
        if (r.id === page.roomId) {
          li.className = 'current';
          a.setAttribute('aria-current', 'page');
        } else {
          otherRooms.add(r.id);
          badge(li, 'mentions', r.mentions, '@');
          badge(li, 'unread', r.unreadItems);
        }
        roomList.append(li);
      }
      subscribeOthers();
    } catch (e) {
      // The server-rendered list stays.
    }
  }

  function bumpRoom(roomId, mention) {
    const li = roomList && $('li[data-room-id="' + CSS.escape(roomId) + '"]', roomList);
    if (!li) return;
    const unread = $('.unread', li);
    badge(li, 'unread', (unread ? parseInt(unread.textContent, 10) || 0 : 0) + 1);
    if (mention) {
      const m = $('.mentions', li);
      badge(li, 'mentions', (m ? parseInt(m.textContent.slice(1), 10) || 0 : 0) + 1, '@');
    }
  }

  // ---- Live feed -------------------------------------------------------------------------

  const seqs = new Map([[page.roomId, page.seq]]);
  let socket = null;
  let retries = 0;

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function subscribe(roomId) {
    const since = seqs.get(roomId);
    send(since === undefined ? { type: 'subscribe', roomId } : { type: 'subscribe', roomId, since });
  }

  function subscribeOthers() {
    for (const id of otherRooms) subscribe(id);
  }

  function connect() {
    document.body.dataset.live = 'connecting';
    socket = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/ws');
    socket.addEventListener('open', () => {
      retries = 0;
      subscribe(page.roomId);
      subscribeOthers();
    });
    socket.addEventListener('message', (e) => {
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      if (frame.type === 'subscribed') {
        if (!seqs.has(frame.roomId) || seqs.get(frame.roomId) < frame.seq) seqs.set(frame.roomId, frame.seq);
        if (frame.roomId === page.roomId) document.body.dataset.live = 'true';
      } else if (frame.type === 'event') {
        if (frame.seq) seqs.set(frame.roomId, Math.max(seqs.get(frame.roomId) || 0, frame.seq));
        if (frame.roomId === page.roomId) onEvent(frame);
        else onOtherRoom(frame);
      }
    });
    socket.addEventListener('close', () => {
      document.body.dataset.live = 'false';
      const delay = Math.min(30000, 500 * 2 ** retries++);
      setTimeout(connect, delay);
    });
  }

  function onOtherRoom(frame) {
    if (frame.resource !== 'chatMessages' || frame.operation !== 'create') return;
    const m = frame.model;
    if (m.parentId || (m.fromUser && me && m.fromUser.id === me.id)) return;
    const mention = (m.mentions || []).some((x) => x.userId === (me && me.id) || x.group);
    bumpRoom(frame.roomId, mention);
  }

  function insertMessage(m) {
    if (m.parentId) {
      if (threadPanel && !threadPanel.hidden && threadPanel.dataset.parent === m.parentId && !messageNodes(m.id).length) {
        threadList.append(renderMessage(m, true));
        threadList.scrollTop = threadList.scrollHeight;
      }
      return;
    }
    if (messageNodes(m.id).length) {
      replaceMessage(m);
      return;
    }
    if (!atEnd) return; // fetched when the reader scrolls down to it
    const follow = nearBottom();
    list.append(renderMessage(m, false));
    const empty = $('#empty');
    if (empty) empty.remove();
    if (follow) scrollToBottom();
    markRead();
  }

  function replaceMessage(m) {
    for (const node of messageNodes(m.id)) {
      const inThread = node.parentElement !== list;
      const fresh = renderMessage(m, inThread);
      if (inThread && node.parentElement && node.parentElement.id === 'thread-parent') fresh.classList.add('parent');
      node.replaceWith(fresh);
    }
  }

  const typers = new Map();
  function renderTyping() {
    const box = $('#typing');
    if (!box) return;
    const names = Array.from(typers.values()).map((t) => t.name);
    box.textContent = names.length === 0 ? '' : names.join(', ') + (names.length === 1 ? ' is typing…' : ' are typing…');
  }

  function onEvent(frame) {
    const m = frame.model;
    switch (frame.resource) {
      case 'chatMessages':
        if (frame.operation === 'create') insertMessage(m);
        else if (frame.operation === 'update') replaceMessage(m);
        else if (frame.operation === 'remove') messageNodes(m.id).forEach((n) => n.remove());
        else if (frame.operation === 'patch') {
          for (const node of messageNodes(m.id)) {
            const body = $('.body', node);
            if (m.reactions) renderReactions($('.reactions', node), m.id, m.reactions);
            if (m.threadMessageCount !== undefined && node.parentElement === list) setThreadCount(body, m.threadMessageCount);
          }
        }
        break;
      case 'typing': {
        if (me && m.userId === me.id) break;
        const previous = typers.get(m.userId);
        if (previous) clearTimeout(previous.timer);
        const timer = setTimeout(() => { typers.delete(m.userId); renderTyping(); }, 4000);
        typers.set(m.userId, { name: m.displayName || m.username, timer });
        renderTyping();
        break;
      }
      case 'users': {
        const count = $('#member-count');
        if (count) count.textContent = String(Math.max(0, (parseInt(count.textContent, 10) || 0) + (frame.operation === 'create' ? 1 : -1)));
        if (membersPanel && !membersPanel.hidden) reloadMembers();
        break;
      }
      case 'room':
        if (frame.operation === 'update') {
          const count = $('#member-count');
          if (count && typeof m.userCount === 'number') count.textContent = String(m.userCount);
          const topic = $('#room-topic');
          if (topic && typeof m.topic === 'string') topic.textContent = m.topic;
          if ('avatarUrl' in m) showRoomAvatar(m.avatarUrl);
        }
        break;
      default:
        break;
    }
  }

  connect();
  refreshRooms();

  // ---- Actions on messages ---------------------------------------------------------------

  function closePicker() {
    const picker = $('.picker');
    if (picker) picker.remove();
  }

  function openPicker(li, anchor) {
    closePicker();
    const picker = el('div', 'picker');
    picker.setAttribute('role', 'menu');
    for (const emoji of REACTIONS) {
      const b = button('pick', emoji, 'React with ' + emoji);
      b.dataset.emoji = emoji;
      b.setAttribute('role', 'menuitem');
      picker.append(b);
    }
    picker.addEventListener('click', (e) => {
      const b = e.target.closest('.pick');
      if (!b) return;
      closePicker();
      react(li.dataset.id, b.dataset.emoji, true);
    });
    picker.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        closePicker();
        anchor.focus();
      }
    });
    anchor.after(picker);
    $('.pick', picker).focus();
  }

  async function react(messageId, emoji, add) {
    const mine = myReactions.get(messageId) || new Set();
    try {
      const counts = add
        ? await api('POST', roomPath + '/chatMessages/' + messageId + '/reactions', { emoji })
        : await api('DELETE', roomPath + '/chatMessages/' + messageId + '/reactions/' + encodeURIComponent(emoji));
      if (add) mine.add(emoji);
      else mine.delete(emoji);
      myReactions.set(messageId, mine);
      for (const node of messageNodes(messageId)) renderReactions($('.reactions', node), messageId, counts);
    } catch (e) {
      showError('Could not react: ' + e.message);
    }
  }

  async function removeMessage(messageId) {
    if (!window.confirm('Delete this message?')) return;
    try {
      await api('DELETE', roomPath + '/chatMessages/' + messageId);
    } catch (e) {
      showError('Could not delete: ' + e.message);
    }
  }

  function onMessageClick(e) {
    const target = e.target.closest('button');
    if (!target) return;
    const li = target.closest('.msg');
    if (!li) return;
    if (target.classList.contains('reaction')) {
      if (!me || !page.member) return;
      react(li.dataset.id, target.dataset.emoji, target.getAttribute('aria-pressed') !== 'true');
    } else if (target.classList.contains('thread-link')) {
      openThread(li.dataset.id);
    } else if (target.dataset.act === 'react') {
      openPicker(li, target);
    } else if (target.dataset.act === 'thread') {
      openThread(li.dataset.id);
    } else if (target.dataset.act === 'edit') {
      startEdit(li.dataset.id);
    } else if (target.dataset.act === 'delete') {
      removeMessage(li.dataset.id);
    }
  }
  list.addEventListener('click', onMessageClick);
  if (threadPanel) threadPanel.addEventListener('click', onMessageClick);
  document.addEventListener('click', (e) => {
    if (!e.target.closest('.picker') && !e.target.closest('[data-act="react"]')) closePicker();
  });
  $$('.msg', list).forEach((li) => decorate(li, false));

  // ---- Threads ---------------------------------------------------------------------------

  async function openThread(parentId) {
    if (!threadPanel) return;
    closeMembers(false);
    threadPanel.hidden = false;
    threadPanel.dataset.parent = parentId;
    document.body.classList.add('thread-open');
    const parentBox = $('#thread-parent');
    parentBox.replaceChildren();
    threadList.replaceChildren();
    try {
      const [parent, replies] = await Promise.all([
        api('GET', roomPath + '/chatMessages/' + parentId),
        api('GET', roomPath + '/chatMessages/' + parentId + '/thread'),
      ]);
      if (threadPanel.dataset.parent !== parentId) return;
      const head = renderMessage(parent, true);
      head.classList.add('parent');
      parentBox.append(head);
      for (const m of replies) threadList.append(renderMessage(m, true));
      threadList.scrollTop = threadList.scrollHeight;
      const input = $('#thread-compose');
      if (input) input.focus();
    } catch (e) {
      showError('Could not open the thread: ' + e.message);
    }
  }

  function closeThread() {
    if (!threadPanel) return;
    const parentId = threadPanel.dataset.parent;
    threadPanel.hidden = true;
    delete threadPanel.dataset.parent;
    document.body.classList.remove('thread-open');
    const origin = parentId && $('#m-' + CSS.escape(parentId));
    const focusable = origin && $('[data-act="thread"], .thread-link', origin);
    if (focusable) focusable.focus();
  }
  const closeButton = $('#thread-close');
  if (closeButton) closeButton.addEventListener('click', closeThread);
  if (threadPanel) {
    threadPanel.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !$('.picker', threadPanel)) closeThread();
    });
  }

  // ---- Typeahead: :emoji: and @mentions ---------------------------------------------------

  // Common shortcodes (GitHub's names); picking one inserts the emoji itself.
  const EMOJI = [
    ['+1', '👍'], ['-1', '👎'], ['smile', '😄'], ['smiley', '😃'], ['grin', '😁'], ['laughing', '😆'],
    ['joy', '😂'], ['rofl', '🤣'], ['wink', '😉'], ['blush', '😊'], ['innocent', '😇'], ['heart_eyes', '😍'],
    ['kissing_heart', '😘'], ['yum', '😋'], ['stuck_out_tongue', '😛'], ['thinking', '🤔'], ['neutral_face', '😐'],
    ['expressionless', '😑'], ['unamused', '😒'], ['roll_eyes', '🙄'], ['grimacing', '😬'], ['relieved', '😌'],
    ['pensive', '😔'], ['sleepy', '😪'], ['sleeping', '😴'], ['mask', '😷'], ['nerd_face', '🤓'],
    ['sunglasses', '😎'], ['confused', '😕'], ['worried', '😟'], ['slightly_frowning_face', '🙁'],
    ['open_mouth', '😮'], ['astonished', '😲'], ['flushed', '😳'], ['pleading_face', '🥺'], ['cry', '😢'],
    ['sob', '😭'], ['scream', '😱'], ['sweat_smile', '😅'], ['sweat', '😓'], ['rage', '😡'], ['angry', '😠'],
    ['skull', '💀'], ['poop', '💩'], ['clown_face', '🤡'], ['ghost', '👻'], ['robot', '🤖'], ['wave', '👋'],
    ['ok_hand', '👌'], ['v', '✌️'], ['crossed_fingers', '🤞'], ['point_up', '☝️'], ['point_right', '👉'],
    ['clap', '👏'], ['raised_hands', '🙌'], ['pray', '🙏'], ['muscle', '💪'], ['handshake', '🤝'],
    ['eyes', '👀'], ['brain', '🧠'], ['heart', '❤️'], ['broken_heart', '💔'], ['sparkling_heart', '💖'],
    ['100', '💯'], ['boom', '💥'], ['fire', '🔥'], ['sparkles', '✨'], ['star', '⭐'], ['zap', '⚡'],
    ['tada', '🎉'], ['confetti_ball', '🎊'], ['gift', '🎁'], ['trophy', '🏆'], ['rocket', '🚀'],
    ['bug', '🐛'], ['beetle', '🪲'], ['crab', '🦀'], ['snake', '🐍'], ['whale', '🐳'], ['cat', '🐱'],
    ['dog', '🐶'], ['coffee', '☕'], ['beer', '🍺'], ['pizza', '🍕'], ['cake', '🍰'], ['hourglass', '⌛'],
    ['warning', '⚠️'], ['x', '❌'], ['white_check_mark', '✅'], ['heavy_check_mark', '✔️'],
    ['question', '❓'], ['exclamation', '❗'], ['bulb', '💡'], ['memo', '📝'], ['books', '📚'],
    ['link', '🔗'], ['lock', '🔒'], ['key', '🔑'], ['hammer', '🔨'], ['wrench', '🔧'], ['gear', '⚙️'],
    ['package', '📦'], ['computer', '💻'], ['keyboard', '⌨️'], ['chart_with_upwards_trend', '📈'],
    ['calendar', '📅'], ['construction', '🚧'], ['rotating_light', '🚨'], ['sos', '🆘'], ['see_no_evil', '🙈'],
    ['shrug', '🤷'], ['facepalm', '🤦'], ['party', '🥳'], ['hugs', '🤗'], ['sun', '☀️'], ['rainbow', '🌈'],
  ];

  let typeaheadSeq = 0;

  function attachTypeahead(area) {
    const box = el('ul', 'typeahead');
    box.id = area.id + '-typeahead';
    box.setAttribute('role', 'listbox');
    box.hidden = true;
    area.parentElement.append(box);
    area.setAttribute('aria-autocomplete', 'list');
    area.setAttribute('aria-controls', box.id);
    let items = [];
    let active = 0;
    let token = null; // { start, end } of the text being completed

    function close() {
      box.hidden = true;
      box.replaceChildren();
      items = [];
      token = null;
      area.removeAttribute('aria-activedescendant');
      area.setAttribute('aria-expanded', 'false');
    }

    function highlight(i) {
      active = (i + items.length) % items.length;
      $$('li', box).forEach((li, n) => li.setAttribute('aria-selected', String(n === active)));
      const current = box.children[active];
      area.setAttribute('aria-activedescendant', current.id);
      current.scrollIntoView({ block: 'nearest' });
    }

    function show(list, at) {
      if (!list.length) {
        close();
        return;
      }
      token = at;
      items = list;
      box.replaceChildren();
      list.forEach((item, n) => {
        const li = el('li', 'option');
        li.id = box.id + '-' + n;
        li.setAttribute('role', 'option');
        li.dataset.insert = item.insert;
        li.append(el('span', 'label', item.label));
        if (item.detail) li.append(' ', el('span', 'detail', item.detail));
        li.addEventListener('mousedown', (e) => {
          e.preventDefault();
          accept(n);
        });
        box.append(li);
      });
      box.hidden = false;
      area.setAttribute('aria-expanded', 'true');
      highlight(0);
    }

    function accept(n) {
      const item = items[n];
      if (!item || !token) return;
      const before = area.value.slice(0, token.start);
      const after = area.value.slice(token.end);
      const text = item.insert + (after.startsWith(' ') ? '' : ' ');
      area.value = before + text + after;
      const caret = before.length + text.length;
      area.setSelectionRange(caret, caret);
      close();
      area.focus();
    }

    async function update() {
      const caret = area.selectionStart;
      if (caret !== area.selectionEnd) return close();
      const head = area.value.slice(0, caret);
      const match = /(^|\s)([:@])([\w+\-.]*)$/u.exec(head);
      if (!match) return close();
      const [, , sigil, word] = match;
      const at = { start: caret - word.length - 1, end: caret };
      if (sigil === ':') {
        if (word.length < 2) return close();
        const q = word.toLowerCase();
        const starts = EMOJI.filter(([name]) => name.startsWith(q));
        const contains = EMOJI.filter(([name]) => !name.startsWith(q) && name.includes(q));
        show(starts.concat(contains).slice(0, 8).map(([name, emoji]) => ({
          label: emoji, detail: ':' + name + ':', insert: emoji,
        })), at);
        return;
      }
      const seq = ++typeaheadSeq;
      try {
        const users = await api('GET', roomPath + '/users?limit=8&q=' + encodeURIComponent(word));
        if (seq !== typeaheadSeq) return; // a newer query is under way
        const members = users.filter((u) => !me || u.id !== me.id).map((u) => ({
          label: u.displayName || u.username, detail: '@' + u.username, insert: '@' + u.username,
        }));
        // People from Matrix who spoke in the room are mentioned by their Matrix ID
        // (@alice:matrix.org), which the bridge turns into a pill.
        const q = word.toLowerCase();
        const fromMatrix = [...peopleFromMatrix().values()]
          .filter((p) => p.username.startsWith('@') && p.username.includes(':'))
          .filter((p) => p.name.toLowerCase().includes(q) || p.username.toLowerCase().includes(q))
          .map((p) => ({ label: p.name, detail: p.username + ' · ' + p.badge, insert: p.username }));
        show(members.concat(fromMatrix).slice(0, 10), at);
      } catch (e) {
        close();
      }
    }

    area.addEventListener('input', update);
    // Late, so that a click on an option lands first; and only if the focus did not come
    // back meanwhile (sending a message disables the composer for a moment, which blurs it).
    area.addEventListener('blur', () => setTimeout(() => {
      if (document.activeElement !== area) close();
    }, 100));
    // Registered before the composer's own keys, so Enter picks rather than sends.
    area.addEventListener('keydown', (e) => {
      if (box.hidden || !items.length || e.isComposing) return;
      let handled = true;
      if (e.key === 'ArrowDown') highlight(active + 1);
      else if (e.key === 'ArrowUp') highlight(active - 1);
      else if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') accept(active);
      else if (e.key === 'Escape') close();
      else handled = false;
      if (handled) {
        e.preventDefault();
        e.stopImmediatePropagation();
      }
    });
  }

  // ---- Composing -------------------------------------------------------------------------

  let editing = null;
  let lastTyping = 0;

  function grow(area) {
    area.style.height = 'auto';
    area.style.height = Math.min(area.scrollHeight, 200) + 'px';
  }

  function setEditing(id, text) {
    editing = id;
    composer.classList.toggle('editing', Boolean(id));
    compose.value = text || '';
    compose.placeholder = id ? 'Edit your message — Enter saves, Esc cancels' : 'Write a message…';
    grow(compose);
    compose.focus();
  }

  async function startEdit(id) {
    if (!composer) return;
    try {
      const m = await api('GET', roomPath + '/chatMessages/' + id);
      setEditing(id, m.text);
    } catch (e) {
      showError('Could not edit: ' + e.message);
    }
  }

  async function submit(area, parentId) {
    const text = area.value;
    if (!text.trim()) return;
    const editId = area === compose ? editing : null;
    area.disabled = true;
    try {
      if (editId) {
        const m = await api('PUT', roomPath + '/chatMessages/' + editId, { text });
        replaceMessage(m);
        setEditing(null, '');
      } else {
        const body = parentId ? { text, parentId } : { text };
        const m = await api('POST', roomPath + '/chatMessages', body);
        area.value = '';
        grow(area);
        insertMessage(m);
        if (!parentId) scrollToBottom();
      }
    } catch (e) {
      showError('Could not send: ' + e.message);
    } finally {
      area.disabled = false;
      area.focus();
    }
  }

  function composerKeys(area, parentId) {
    area.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        submit(area, parentId());
      } else if (area === compose && e.key === 'ArrowUp' && !area.value && !editing) {
        const mine = $$('.msg:not(.deleted)', list).filter((li) => li.dataset.author === me.id);
        const last = mine[mine.length - 1];
        if (last) {
          e.preventDefault();
          startEdit(last.dataset.id);
        }
      } else if (area === compose && e.key === 'Escape' && editing) {
        e.preventDefault();
        setEditing(null, '');
      }
    });
    area.addEventListener('input', () => {
      grow(area);
      const now = Date.now();
      if (now - lastTyping > 3000) {
        lastTyping = now;
        send({ type: 'typing', roomId: page.roomId });
      }
    });
  }

  async function upload(file, parentId) {
    const form = new FormData();
    form.append('file', file, file.name || 'pasted-file');
    if (parentId) form.append('parentId', parentId);
    try {
      const m = await api('POST', roomPath + '/files', form);
      insertMessage(m);
      if (!parentId) scrollToBottom();
    } catch (e) {
      showError('Could not upload ' + (file.name || 'the file') + ': ' + e.message);
    }
  }

  if (composer && compose) {
    composer.addEventListener('submit', (e) => {
      e.preventDefault();
      submit(compose, null);
    });
    attachTypeahead(compose);
    composerKeys(compose, () => null);
    compose.addEventListener('paste', (e) => {
      const files = Array.from((e.clipboardData && e.clipboardData.files) || []);
      if (!files.length) return;
      e.preventDefault();
      files.forEach((f) => upload(f, null));
    });
    const input = $('#file-input');
    input.addEventListener('change', () => {
      Array.from(input.files).forEach((f) => upload(f, null));
      input.value = '';
    });
    const room = $('main.room');
    room.addEventListener('dragover', (e) => {
      if (!e.dataTransfer || !Array.from(e.dataTransfer.types).includes('Files')) return;
      e.preventDefault();
      room.classList.add('dropping');
    });
    room.addEventListener('dragleave', (e) => {
      if (!room.contains(e.relatedTarget)) room.classList.remove('dropping');
    });
    room.addEventListener('drop', (e) => {
      room.classList.remove('dropping');
      const files = Array.from((e.dataTransfer && e.dataTransfer.files) || []);
      if (!files.length) return;
      e.preventDefault();
      files.forEach((f) => upload(f, null));
    });
  }

  const threadComposer = $('#thread-composer');
  const threadCompose = $('#thread-compose');
  if (threadComposer && threadCompose) {
    const parent = () => threadPanel.dataset.parent || null;
    threadComposer.addEventListener('submit', (e) => {
      e.preventDefault();
      submit(threadCompose, parent());
    });
    attachTypeahead(threadCompose);
    composerKeys(threadCompose, parent);
  }

  // ---- Members ---------------------------------------------------------------------------

  const membersPanel = $('#members');
  const membersToggle = $('#members-toggle');
  const memberList = $('#member-list');
  const membersMore = $('#members-more');
  const MEMBER_PAGE = 30;
  let memberSkip = 0;

  function roleLabel(role) {
    if (role === 'admin') return 'Admin';
    if (role === 'moderator') return 'Moderator';
    return '';
  }

  // One person in a member list: avatar, name, @username and a badge (role or network).
  function personItem(name, username, badgeText, virtual, avatarUrl) {
    const li = el('li', 'person');
    li.dataset.username = username;
    const avatar = avatarImg(avatarUrl, username, 28);
    const who = el('span', 'who');
    who.append(el('span', 'author', name), ' ', el('span', 'username', (virtual ? '' : '@') + username));
    if (badgeText) who.append(' ', el('span', 'badge', badgeText));
    li.append(avatar, who);
    return li;
  }

  // Someone joined or left while the list is open: list it again from the top.
  function reloadMembers() {
    memberSkip = 0;
    memberList.replaceChildren();
    loadMembers();
  }

  async function loadMembers() {
    if (!memberList) return;
    membersMore.disabled = true;
    try {
      const search = $('#member-search');
      const q = search ? search.value.trim() : '';
      const users = await api('GET', roomPath + '/users?limit=' + MEMBER_PAGE + '&skip=' + memberSkip + '&q=' + encodeURIComponent(q));
      if (search && search.value.trim() !== q) return; // a newer search is under way
      for (const u of users) {
        if ($('li[data-user-id="' + CSS.escape(u.id) + '"]', memberList)) continue;
        if (u.virtual) {
          // Someone in the Matrix room (a room whose membership is synced), with the
          // network's badge; moderators may ban them as they would from a message.
          const li = personItem(u.displayName || u.username, u.username, badgeLabel(u.badge), true, u.avatarUrl);
          li.dataset.userId = u.id;
          li.dataset.virtualId = u.id;
          if (page.moderator) {
            const ban = button('ban link', 'Ban', 'Ban ' + u.username + ' from this room');
            ban.dataset.username = u.username;
            li.append(ban);
          }
          memberList.append(li);
          continue;
        }
        const li = personItem(u.displayName || u.username, u.username, roleLabel(u.role), false, u.avatarUrl);
        li.dataset.userId = u.id;
        if (me && u.id !== me.id) {
          // Signed-in people open a one-to-one chat by clicking someone.
          const open = button('person-open', '', 'Chat one to one with ' + (u.displayName || u.username));
          open.append(...Array.from(li.childNodes));
          open.dataset.username = u.username;
          li.append(open);
        }
        li.dataset.role = u.role || 'member';
        memberList.append(li);
      }
      memberSkip += users.length;
      membersMore.hidden = users.length < MEMBER_PAGE;
      renderMatrixPeople();
    } catch (e) {
      showError('Could not list the members: ' + e.message);
    } finally {
      membersMore.disabled = false;
    }
  }

  // People from Matrix have no membership here: they are the virtual users whose messages
  // are in the room, shown with their network's badge.
  function peopleFromMatrix() {
    const seen = new Map();
    if (!list) return seen;
    for (const li of $$('.msg', list)) {
      const b = $('.meta .badge', li);
      if (!b || !li.dataset.author || seen.has(li.dataset.author)) continue;
      const img = $('img.avatar', li);
      seen.set(li.dataset.author, {
        name: $('.author', li).textContent,
        username: $('.username', li).textContent,
        badge: b.textContent,
        avatar: img ? img.getAttribute('src') : '',
      });
    }
    return seen;
  }

  function renderMatrixPeople() {
    const box = $('#matrix-people');
    const people = $('#matrix-list');
    if (!box || !people) return;
    const seen = peopleFromMatrix();
    // Those the member list holds already (a room whose Matrix members are listed) once.
    for (const id of Array.from(seen.keys())) {
      if (memberList && $('li[data-virtual-id="' + CSS.escape(id) + '"]', memberList)) seen.delete(id);
    }
    people.replaceChildren();
    for (const [id, p] of seen) {
      const li = personItem(p.name, p.username, p.badge, true, p.avatar);
      li.dataset.virtualId = id;
      if (page.moderator) {
        const ban = button('ban link', 'Ban', 'Ban ' + p.username + ' from this room');
        ban.dataset.username = p.username;
        li.append(ban);
      }
      people.append(li);
    }
    box.hidden = seen.size === 0;
  }

  // ---- Bans (moderators): weft users and Matrix users alike ------------------------------

  const banList = $('#ban-list');
  async function loadBans() {
    if (!banList) return;
    try {
      const bans = await api('GET', roomPath + '/bans');
      banList.replaceChildren();
      for (const b of bans) {
        const u = b.user || {};
        const li = personItem(u.displayName || u.username, u.username, u.virtual ? badgeLabel(u.badge) : '', !!u.virtual, u.avatarUrl);
        if (b.reason) li.title = 'Banned: ' + b.reason;
        const unban = button('unban link', 'Unban', 'Lift the ban on ' + u.username);
        unban.dataset.username = u.username;
        li.append(unban);
        banList.append(li);
      }
    } catch (e) {
      showError('Could not list the bans: ' + e.message);
    }
  }

  async function banPerson(username, reason) {
    const body = { username };
    if (reason) body.reason = reason;
    await api('POST', roomPath + '/bans', body);
    await loadBans();
  }

  if (banList) {
    banList.addEventListener('click', async (e) => {
      const unban = e.target.closest('.unban');
      if (!unban) return;
      unban.disabled = true;
      try {
        await api('DELETE', roomPath + '/bans/' + encodeURIComponent(unban.dataset.username));
        await loadBans();
      } catch (err) {
        unban.disabled = false;
        showError('Could not lift the ban: ' + err.message);
      }
    });
    $('#ban-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const name = $('#ban-name').value.trim().replace(/^@(?=[^:]*$)/, '');
      if (!name) return;
      try {
        await banPerson(name, $('#ban-reason').value.trim());
        $('#ban-name').value = '';
        $('#ban-reason').value = '';
      } catch (err) {
        showError('Could not ban ' + name + ': ' + err.message);
      }
    });
    const matrixList = $('#matrix-list');
    if (matrixList) {
      matrixList.addEventListener('click', async (e) => {
        const ban = e.target.closest('.ban');
        if (!ban || !window.confirm('Ban ' + ban.dataset.username + ' from this room?')) return;
        ban.disabled = true;
        try {
          await banPerson(ban.dataset.username, '');
        } catch (err) {
          ban.disabled = false;
          showError('Could not ban ' + ban.dataset.username + ': ' + err.message);
        }
      });
    }
  }

  function openMembers() {
    if (!membersPanel) return;
    if (threadPanel && !threadPanel.hidden) closeThread();
    membersPanel.hidden = false;
    document.body.classList.add('members-open');
    membersToggle.setAttribute('aria-expanded', 'true');
    reloadMembers();
    renderMatrixPeople();
    loadBans();
    $('#members-close').focus();
  }

  function closeMembers(focusToggle) {
    if (!membersPanel || membersPanel.hidden) return;
    membersPanel.hidden = true;
    document.body.classList.remove('members-open');
    membersToggle.setAttribute('aria-expanded', 'false');
    if (focusToggle) membersToggle.focus();
  }

  if (membersPanel && membersToggle) {
    membersToggle.addEventListener('click', () => {
      if (membersPanel.hidden) openMembers();
      else closeMembers(true);
    });
    $('#members-close').addEventListener('click', () => closeMembers(true));
    membersMore.addEventListener('click', loadMembers);
    let searchTimer = 0;
    $('#member-search').addEventListener('input', () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(reloadMembers, 200);
    });
    memberList.addEventListener('click', async (e) => {
      const ban = e.target.closest('.ban');
      if (ban) {
        if (!window.confirm('Ban ' + ban.dataset.username + ' from this room?')) return;
        ban.disabled = true;
        try {
          await banPerson(ban.dataset.username, '');
          reloadMembers();
        } catch (err) {
          ban.disabled = false;
          showError('Could not ban ' + ban.dataset.username + ': ' + err.message);
        }
        return;
      }
      const open = e.target.closest('.person-open');
      if (!open) return;
      open.disabled = true;
      try {
        const room = await api('POST', '/rooms', { uri: open.dataset.username });
        location.assign('/-/dm/' + encodeURIComponent(room.id));
      } catch (err) {
        open.disabled = false;
        showError('Could not open the chat: ' + err.message);
      }
    });
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape' || membersPanel.hidden || e.defaultPrevented) return;
      if ($('dialog[open]') || $('.picker')) return;
      if (!membersPanel.contains(e.target) && e.target.closest('input, textarea')) return;
      closeMembers(true);
    });
    new MutationObserver(() => {
      if (!membersPanel.hidden) renderMatrixPeople();
    }).observe(list, { childList: true });
  }

  // ---- Favourite -------------------------------------------------------------------------

  const star = $('#favourite');
  function setStar(on) {
    star.setAttribute('aria-pressed', String(on));
    star.textContent = on ? '★' : '☆';
    star.title = on ? 'Remove from favourites' : 'Add to favourites';
  }
  if (star && me) {
    setStar(star.getAttribute('aria-pressed') === 'true');
    star.addEventListener('click', async () => {
      const on = star.getAttribute('aria-pressed') !== 'true';
      star.disabled = true;
      try {
        await api('PUT', '/user/' + me.id + '/rooms/' + page.roomId, { favourite: on });
        setStar(on);
        await refreshRooms();
      } catch (e) {
        showError('Could not change the favourite: ' + e.message);
      } finally {
        star.disabled = false;
      }
    });
  }

  // ---- Room settings (admins) ------------------------------------------------------------

  // The room's own picture beside its name, when it has one.
  function showRoomAvatar(url) {
    const img = $('#room-avatar');
    if (!img) return;
    if (url) img.src = url;
    img.hidden = !url;
  }

  const settingsButton = $('#room-settings');
  const settingsDialog = $('#settings-dialog');
  if (settingsButton && settingsDialog) {
    const form = $('#settings-form');
    settingsButton.addEventListener('click', () => {
      settingsDialog.showModal();
      $('#settings-name').focus();
    });
    $('#settings-cancel').addEventListener('click', () => settingsDialog.close());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const save = $('#settings-save');
      const body = {
        name: $('#settings-name').value.trim(),
        topic: $('#settings-topic').value,
        noindex: $('#settings-noindex').checked,
        avatarUrl: $('#settings-avatar').value.trim() || null,
      };
      const security = $('input[name="security"]:checked', form);
      if (security && !security.disabled) body.security = security.value;
      save.disabled = true;
      try {
        const room = await api('PUT', roomPath, body);
        if (body.name) $('#room-name').textContent = body.name;
        $('#room-topic').textContent = typeof room.topic === 'string' ? room.topic : body.topic;
        showRoomAvatar(room.avatarUrl);
        settingsDialog.close();
        settingsButton.focus();
      } catch (err) {
        showError('Could not save the settings: ' + err.message);
      } finally {
        save.disabled = false;
      }
    });
  }

  // ---- Joining and leaving ---------------------------------------------------------------

  const join = $('#join');
  if (join) {
    join.addEventListener('click', async () => {
      join.disabled = true;
      try {
        await api('POST', '/rooms', { uri: page.uri });
        location.reload();
      } catch (e) {
        join.disabled = false;
        showError('Could not join: ' + e.message);
      }
    });
  }
  const leave = $('#leave');
  if (leave) {
    leave.addEventListener('click', async () => {
      if (!window.confirm('Leave this room?')) return;
      try {
        await api('DELETE', roomPath + '/users/' + me.id);
        location.reload();
      } catch (e) {
        showError('Could not leave: ' + e.message);
      }
    });
  }
})();
