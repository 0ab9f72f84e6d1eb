// Switchboard console: plain JavaScript, no framework, no build step (docs/console.md).
// Text from users, models and the server only ever enters the page through textContent.
'use strict';

(() => {
  const TOKEN_KEY = 'sb.token';
  const CONVERSATION_KEY = 'sb.conversation';
  const WORKFLOW_SESSION_KEY = 'sb.workflowSession';
  // Close codes after which reconnecting cannot help (docs/protocol.md).
  const FINAL_CLOSE_CODES = new Set([4500, 4501, 4502, 4503, 4504, 4505]);
  const STABLE_AFTER_MS = 10000;

  const $ = (id) => document.getElementById(id);

  // An element with text children only: the one way this file builds DOM.
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === undefined || value === null) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('data-')) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  const randomId = (prefix) => prefix + '-' + Math.random().toString(36).slice(2, 10);

  function toast(message, type = 'info') {
    const item = el('div', { class: 'toast', 'data-type': type, text: message });
    $('toasts').append(item);
    setTimeout(() => item.remove(), 5000);
  }

  let bannerTimer = null;
  // kind: reconnecting | recovered | gap | fatal; recovered and gap fade after a while.
  function banner(kind, message) {
    const node = $('banner');
    clearTimeout(bannerTimer);
    node.dataset.kind = kind;
    node.textContent = message;
    node.hidden = false;
    if (kind === 'recovered' || kind === 'gap') bannerTimer = setTimeout(() => { node.hidden = true; }, 8000);
  }

  // ---------------------------------------------------------------------------------------------
  // Token and REST

  let token = null;

  // ?token=… (the link `make run` prints) is kept in localStorage and taken out of the address bar,
  // so it is neither bookmarked nor shown over the shoulder.
  function takeTokenFromAddress() {
    const url = new URL(location.href);
    const fromURL = url.searchParams.get('token');
    if (!fromURL) return;
    localStorage.setItem(TOKEN_KEY, fromURL.trim());
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }

  function claimsOf(jwt) {
    try {
      const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, '=')));
    } catch {
      return null;
    }
  }

  function tokenExpired() {
    const claims = token && claimsOf(token);
    return !claims || (claims.exp !== undefined && claims.exp * 1000 < Date.now());
  }

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + token };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.status === 401) {
      signOut('The gateway refused the token (expired, or signed with another secret).');
      throw new Error('unauthorized');
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = data && data.error ? (data.error.message || data.error) : response.status + ' ' + response.statusText;
      throw new Error(String(message));
    }
    return data;
  }

  // ---------------------------------------------------------------------------------------------
  // A WebSocket that comes back as seed 000 says: the bound grows ×1.5 from 1 s to at most 60 s, and
  // each wait is a random time below it (full jitter, so a gateway's clients do not return at once).
  // After 5 failed attempts in a row it stops and offers a manual retry (5 more, the bound still
  // growing); a connection that lasted a while resets the bound.
  const RECONNECT = { initialMs: 1000, multiplier: 1.5, maxMs: 60000, maxAttempts: 5 };

  function backoffBound(attempt) {
    return Math.min(RECONNECT.maxMs, RECONNECT.initialMs * RECONNECT.multiplier ** attempt);
  }

  function backoffDelay(attempt) {
    return Math.random() * backoffBound(attempt);
  }

  class Link {
    constructor(name, url, handlers) {
      this.name = name;
      this.url = url;
      this.handlers = handlers;
      this.socket = null;
      this.attempt = 0;
      this.failures = 0;
      this.everOpened = false;
      this.stopped = true;
      this.timer = null;
    }

    start() {
      this.stopped = false;
      this.connect();
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.socket) this.socket.close(1000, 'signed out');
      this.socket = null;
    }

    get open() {
      return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
    }

    send(object) {
      if (!this.open) return false;
      this.socket.send(JSON.stringify(object));
      return true;
    }

    connect() {
      const socket = new WebSocket(this.url());
      let openedAt = 0;
      this.socket = socket;
      socket.onopen = () => {
        openedAt = Date.now();
        this.failures = 0;
        const reconnect = this.everOpened;
        this.everOpened = true;
        this.handlers.open(reconnect);
      };
      socket.onmessage = (event) => {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        this.handlers.frame(frame);
      };
      socket.onclose = (event) => {
        if (this.socket !== socket || this.stopped) return;
        this.socket = null;
        if (FINAL_CLOSE_CODES.has(event.code)) {
          this.handlers.final(event);
          return;
        }
        // The gateway refuses an expired token before the upgrade, which a browser only sees as 1006.
        if (tokenExpired()) {
          signOut('The token has expired; mint a new one.');
          return;
        }
        if (openedAt && Date.now() - openedAt > STABLE_AFTER_MS) this.attempt = 0;
        if (this.failures >= RECONNECT.maxAttempts) {
          this.handlers.exhausted(event, () => {
            this.failures = 0;
            this.connect();
          });
          return;
        }
        const delay = backoffDelay(this.attempt);
        this.attempt += 1;
        this.failures += 1;
        this.handlers.reconnecting(event, delay, this.attempt);
        this.timer = setTimeout(() => this.connect(), delay);
      };
    }
  }

  const socketBase = () => (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;

  function describeClose(event) {
    const reasons = { 1006: 'connection lost', 4000: 'gateway shutting down', 4002: 'fell behind', 4003: 'gap in the stream' };
    return reasons[event.code] || event.reason || 'closed ' + event.code;
  }

  function reconnectingBanner(name) {
    return (event, delay, attempt) => {
      setLinkState('reconnecting');
      banner('reconnecting', `${name}: ${describeClose(event)}; reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt})…`);
    };
  }

  function exhaustedBanner(name) {
    return (event, retry) => {
      setLinkState('offline');
      banner('fatal', `${name}: ${describeClose(event)}; ${RECONNECT.maxAttempts} attempts failed. `);
      $('banner').append(el('button', { type: 'button', text: 'Retry now', onclick: () => { retry(); } }));
    };
  }

  function finalBanner(name) {
    return (event) => {
      setLinkState('offline');
      banner('fatal', `${name}: ${event.reason || 'closed ' + event.code}. Not reconnecting; reload the page or sign in again.`);
    };
  }

  function setLinkState(state, detail) {
    const pill = $('link-state');
    pill.dataset.state = state;
    pill.textContent = detail ? state + ' · ' + detail : state;
  }

  // ---------------------------------------------------------------------------------------------
  // Conversations

  const chat = {
    link: null,
    current: null,
    positions: {}, // channel → {offset, epoch} of the last event seen
    pending: new Map(), // command id → what it was
    replies: new Map(), // reply message id → {node, position}
    agentText: new Map(), // intermediate message id → text so far
    running: false,
    pingTimer: null,
    titles: new Map(), // conversation id → title, from the list
    // Messages are sent once the conversation's subscription is ready (its ROLE_STATUS_SNAPSHOT came,
    // after the ACK and the history): typed earlier, right after New or while reconnecting, they wait
    // here, shown as queued, instead of racing the subscription.
    ready: false,
    queue: [], // {content, pattern, node}
    creating: false, // a conversation is being created (New, or Enter with none open)
  };

  function command(type, data, meta = {}) {
    const id = randomId(type.toLowerCase().slice(0, 4));
    chat.pending.set(id, { type, data, ...meta });
    if (!chat.link.send({ id, type, timestamp: Date.now(), data })) {
      chat.pending.delete(id);
      return null;
    }
    return id;
  }

  function subscribe(conversationId, resume) {
    const data = { conversationId };
    const position = chat.positions['conversation:' + conversationId];
    const resuming = resume && position !== undefined;
    if (resuming) {
      data.offset = position.offset;
      data.epoch = position.epoch;
    } else {
      data.includeHistory = true;
      data.historyLimit = 50;
    }
    command('SUBSCRIBE_CONVERSATION', data, { resuming });
  }

  async function loadConversations() {
    try {
      const page = await api('GET', '/api/v1/conversations?limit=100');
      renderConversations(page.conversations);
    } catch (error) {
      if (error.message !== 'unauthorized') toast('Conversations: ' + error.message, 'error');
    }
  }

  let listRefresh = null;
  const refreshConversationsSoon = () => {
    clearTimeout(listRefresh);
    listRefresh = setTimeout(loadConversations, 500);
  };

  function renderConversations(conversations) {
    const list = $('conversation-list');
    list.replaceChildren();
    if (conversations.length === 0) list.append(el('li', { class: 'muted', text: 'none yet: press New' }));
    for (const conversation of conversations) {
      const title = el('span', { class: 'title', text: conversation.title || conversation.id, title: conversation.id });
      const rename = el('button', { type: 'button', class: 'link', text: '✎', title: 'rename' });
      const remove = el('button', { type: 'button', class: 'link', text: '✕', title: 'delete' });
      const item = el('li', { 'data-id': conversation.id }, title, el('span', { class: 'muted', text: String(conversation.messageCount) }), rename, remove);
      chat.titles.set(conversation.id, conversation.title);
      if (conversation.id === chat.current) {
        item.classList.add('selected');
        if (conversation.title) $('conversation-title').textContent = conversation.title;
      }
      item.onclick = () => go(conversationPath(conversation.id));
      rename.onclick = (event) => {
        event.stopPropagation();
        startRename(item, title, conversation);
      };
      remove.onclick = async (event) => {
        event.stopPropagation();
        if (!confirm(`Delete “${conversation.title || conversation.id}” and its messages?`)) return;
        try {
          await api('DELETE', '/api/v1/conversations/' + encodeURIComponent(conversation.id));
          if (chat.current === conversation.id) clearConversation();
          loadConversations();
        } catch (error) {
          toast('Delete: ' + error.message, 'error');
        }
      };
      list.append(item);
    }
  }

  function startRename(item, title, conversation) {
    const input = el('input', { value: conversation.title || '', placeholder: 'title' });
    title.replaceWith(input);
    input.focus();
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const value = input.value.trim();
      if (save && value && value !== conversation.title) {
        try {
          await api('PATCH', '/api/v1/conversations/' + encodeURIComponent(conversation.id), { title: value });
          if (chat.current === conversation.id) $('conversation-title').textContent = value;
        } catch (error) {
          toast('Rename: ' + error.message, 'error');
        }
      }
      loadConversations();
    };
    input.onclick = (event) => event.stopPropagation();
    input.onkeydown = (event) => {
      if (event.key === 'Enter') finish(true);
      if (event.key === 'Escape') finish(false);
    };
    input.onblur = () => finish(true);
  }

  // What is typed meanwhile is queued for the new conversation and sent once it is ready.
  async function newConversation() {
    if (chat.creating) return;
    chat.creating = true;
    leaveConversation(true);
    $('conversation-title').textContent = 'New conversation…';
    $('message-input').focus();
    try {
      const conversation = await api('POST', '/api/v1/conversations', {});
      // Unless the user opened another one meanwhile.
      if (chat.current === null) {
        selectConversation(conversation.id, conversation.title, true);
        go(conversationPath(conversation.id));
      }
      loadConversations();
    } catch (error) {
      if (chat.current === null) clearConversation();
      toast('New conversation: ' + error.message, 'error');
    } finally {
      chat.creating = false;
    }
  }

  // Unsubscribes from the open conversation and empties the page; messages still queued stay (with
  // their bubbles) only for a conversation being created.
  function leaveConversation(keepQueue) {
    if (chat.current && chat.link) command('UNSUBSCRIBE_CONVERSATION', { conversationId: chat.current });
    chat.current = null;
    chat.ready = false;
    if (!keepQueue) chat.queue = [];
    $('messages').replaceChildren(...chat.queue.map((message) => message.node));
    $('role-board').replaceChildren();
    chat.replies.clear();
    resetRun();
    for (const item of $('conversation-list').children) item.classList.remove('selected');
  }

  function clearConversation() {
    leaveConversation(false);
    localStorage.removeItem(CONVERSATION_KEY);
    $('conversation-title').textContent = 'No conversation';
    if (parseRoute(location.hash).tab === 'chat') showInAddress(conversationPath(null));
  }

  function selectConversation(id, title, keepQueue = false) {
    if (chat.current === id) return;
    leaveConversation(keepQueue);
    chat.current = id;
    localStorage.setItem(CONVERSATION_KEY, id);
    for (const item of $('conversation-list').children) item.classList.toggle('selected', item.dataset.id === id);
    $('conversation-title').textContent = title || chat.titles.get(id) || id;
    if (chat.link.open) subscribe(id, false);
  }

  // A link to a conversation the user may not see: the gateway refused the subscription, so nothing
  // of it was shown; say so instead of an empty conversation (the link stays in the address).
  function showUnavailable(id, error) {
    leaveConversation(false);
    localStorage.removeItem(CONVERSATION_KEY);
    $('conversation-title').textContent = 'Conversation unavailable';
    notice(`Conversation “${id}” cannot be opened: ${error.message || error.code || 'refused'}.`);
  }

  function resetRun() {
    chat.running = false;
    $('stop').disabled = true;
    $('pattern').textContent = '–';
    $('stage').textContent = '–';
    $('run-result').textContent = '';
    setProgress(0);
  }

  function setProgress(value) {
    $('progress-bar').style.width = value + '%';
    $('progress-text').textContent = Math.round(value) + '%';
  }

  function setRunning(running) {
    chat.running = running;
    $('stop').disabled = !running;
  }

  function scrollMessages(force) {
    const box = $('messages');
    if (force || box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
  }

  function addMessage(kind, author, content, status, id) {
    const text = el('div', { class: 'text', text: content });
    const node = el('div', { class: 'msg ' + kind, 'data-status': status || 'completed', 'data-id': id }, el('div', { class: 'meta', text: author }), text);
    $('messages').append(node);
    scrollMessages(kind === 'user');
    return node;
  }

  function notice(message) {
    $('messages').append(el('div', { class: 'msg notice', text: message }));
    scrollMessages(false);
  }

  function showHistory(messages) {
    $('messages').replaceChildren();
    chat.replies.clear();
    for (const message of messages) {
      addMessage(message.role === 'user' ? 'user' : 'assistant', message.author, message.content, message.status || 'completed', message.id);
    }
    // Typed before the history came: still waiting, after it.
    $('messages').append(...chat.queue.map((message) => message.node));
    scrollMessages(true);
  }

  async function reloadHistory(conversationId) {
    try {
      const page = await api('GET', `/api/v1/conversations/${encodeURIComponent(conversationId)}/messages?limit=50`);
      if (chat.current === conversationId) showHistory(page.messages.slice().reverse());
    } catch (error) {
      // A conversation nobody wrote to yet has no stored history.
      if (chat.current === conversationId) showHistory([]);
    }
  }

  // The role board: one card per role of the team, in team order. A snapshot after a reconnect
  // updates the cards in place, so what the roles did in this run stays on them.
  function renderRoles(roles) {
    const board = $('role-board');
    const names = new Set(roles.map((role) => role.role));
    for (const card of [...board.children]) if (!names.has(card.dataset.role)) card.remove();
    for (const role of roles) board.append(roleCard(role.role, role.responsibility, role.status));
  }

  function roleCard(name, responsibility, status) {
    const board = $('role-board');
    let card = [...board.children].find((node) => node.dataset.role === name);
    if (!card) {
      card = $('role-template').content.firstElementChild.cloneNode(true);
      card.dataset.role = name;
      card.querySelector('.role-name').textContent = name;
      board.append(card);
    }
    if (responsibility) card.querySelector('.role-duty').textContent = responsibility;
    if (status) {
      card.dataset.status = status;
      card.querySelector('.role-status').textContent = status;
    }
    return card;
  }

  function roleStatus(name, status, reason) {
    const card = roleCard(name);
    const previous = card.dataset.status;
    card.dataset.status = status;
    card.querySelector('.role-status').textContent = status;
    card.title = reason || '';
    // The trail of this run's states: what the role went through, still visible once it is idle again.
    const trail = card.querySelector('.role-trail');
    const steps = trail.textContent ? trail.textContent.split(' → ') : [previous];
    steps.push(status);
    trail.textContent = steps.slice(-7).join(' → ');
  }

  function roleActivity(name, text) {
    if (!name) return;
    roleCard(name).querySelector('.role-activity').textContent = text;
  }

  const tail = (text, length = 160) => (text.length > length ? '…' + text.slice(-length) : text);

  function onChatFrame(frame) {
    // Positions: remember the last of each channel; anything at or before it was seen already.
    if (frame.channel && typeof frame.offset === 'number' && frame.epoch) {
      const seen = chat.positions[frame.channel];
      if (seen && seen.epoch === frame.epoch && frame.offset <= seen.offset) return;
      chat.positions[frame.channel] = { offset: frame.offset, epoch: frame.epoch };
    }
    const data = frame.data || {};
    switch (frame.type) {
      case 'ACK': return onAck(frame, data);
      case 'ERROR': return onCommandError(frame);
      case 'PONG':
        chat.pending.delete(frame.correlationId);
        return setLinkState('online', Math.round(Date.now() - data.timestamp) + ' ms');
      case 'SYSTEM_STATUS': return renderSystemStatus(data);
      case 'USER_NOTIFICATION': return addNotification(data);
      default: break;
    }
    if (data.conversationId && data.conversationId !== chat.current) return;
    const payload = data.payload || {};
    const role = data.role || data.agent_source;
    switch (frame.type) {
      case 'CONVERSATION_HISTORY':
        showHistory(data.messages || []);
        break;
      case 'ROLE_STATUS_SNAPSHOT':
        renderRoles(data.roles || []);
        // The last frame of the subscription's answer: what was typed meanwhile can go.
        chat.ready = true;
        flushQueue();
        break;
      case 'COLLABORATION_START':
        for (const trail of document.querySelectorAll('.role-trail')) trail.textContent = '';
        for (const activity of document.querySelectorAll('.role-activity')) activity.textContent = '';
        chat.agentText.clear();
        $('pattern').textContent = data.pattern + (data.lead ? ' · led by ' + data.lead : '');
        $('run-result').textContent = '';
        setRunning(true);
        break;
      case 'COLLABORATION_PROGRESS':
        setProgress(data.progress || 0);
        $('stage').textContent = data.currentStage + (data.activeRole ? ' · ' + data.activeRole : '');
        setRunning((data.progress || 0) < 100);
        break;
      case 'COLLABORATION_COMPLETE': {
        const result = data.result || {};
        setProgress(100);
        $('stage').textContent = 'complete';
        $('run-result').textContent = result.status + (data.duration ? ` in ${(data.duration / 1000).toFixed(1)} s` : '');
        setRunning(false);
        break;
      }
      case 'ROLE_ASSIGNED':
        roleActivity(data.role, 'assigned: ' + ((data.task && data.task.description) || 'a task'));
        break;
      case 'ROLE_STATUS_CHANGE':
        roleStatus(data.role, data.status, data.reason);
        break;
      case 'ROLE_THINKING_START':
        roleActivity(data.role, `thinking (about ${((data.estimatedTime || 0) / 1000).toFixed(1)} s)…`);
        break;
      case 'AGENT_START':
        roleActivity(role, payload.task_description || 'working…');
        break;
      case 'AGENT_CHUNK': {
        const text = (chat.agentText.get(data.messageId) || '') + (data.chunk || '');
        chat.agentText.set(data.messageId, text);
        roleActivity(role, tail(text));
        break;
      }
      case 'AGENT_COMPLETE':
        roleActivity(role, `done · ${payload.chunks ?? 0} chunks in ${((payload.durationMs || 0) / 1000).toFixed(1)} s`);
        break;
      case 'AGENT_ERROR':
        roleActivity(role, 'error: ' + (payload.error || 'failed'));
        break;
      case 'MESSAGE_STREAM_START':
        streamStart(data);
        break;
      case 'MESSAGE_STREAM_CHUNK':
        streamChunk(data);
        break;
      case 'MESSAGE_STREAM_END':
        streamEnd(data);
        break;
      case 'MESSAGE_REJECTED':
        notice('A message was not answered: the conversation was busy.');
        break;
      default:
        break;
    }
  }

  function reply(data) {
    let entry = chat.replies.get(data.messageId);
    if (!entry) {
      const existing = document.querySelector(`#messages .msg[data-id="${CSS.escape(data.messageId)}"]`);
      const node = existing || addMessage('assistant', data.role || 'assistant', '', 'streaming', data.messageId);
      entry = { node, position: -1 };
      chat.replies.set(data.messageId, entry);
    }
    return entry;
  }

  function streamStart(data) {
    const entry = reply(data);
    entry.node.dataset.status = 'streaming';
    entry.node.querySelector('.meta').textContent = data.role;
  }

  function streamChunk(data) {
    const entry = reply(data);
    if (data.position <= entry.position) return;
    entry.position = data.position;
    entry.node.querySelector('.text').textContent += data.chunk;
    roleActivity(data.role, 'writing the reply: ' + tail(entry.node.querySelector('.text').textContent, 120));
    scrollMessages(false);
  }

  function streamEnd(data) {
    const entry = reply(data);
    const final = data.finalMessage || {};
    if (typeof final.content === 'string') entry.node.querySelector('.text').textContent = final.content;
    entry.node.dataset.status = (data.metadata && data.metadata.status) || 'completed';
    refreshConversationsSoon();
  }

  function onAck(frame, data) {
    const sent = chat.pending.get(frame.correlationId);
    chat.pending.delete(frame.correlationId);
    if (!sent) return;
    if (sent.type === 'SUBSCRIBE_CONVERSATION') {
      const channel = 'conversation:' + data.conversationId;
      if (typeof data.offset === 'number' && data.epoch) {
        const seen = chat.positions[channel];
        if (!sent.resuming || !data.recovered || !seen) chat.positions[channel] = { offset: data.offset, epoch: data.epoch };
      }
      if (!sent.resuming) return;
      if (data.recovered) {
        banner('recovered', 'Reconnected: recovered, no messages missed.');
      } else {
        banner('gap', 'Reconnected: history gap, reloaded the conversation from history.');
        reloadHistory(data.conversationId);
      }
    } else if (sent.type === 'SEND_MESSAGE') {
      const node = document.querySelector(`#messages .msg[data-id="${CSS.escape(frame.correlationId)}"]`);
      if (node) node.dataset.status = 'completed';
      refreshConversationsSoon();
    } else if (sent.type === 'INTERRUPT') {
      $('stage').textContent = 'stopping…';
    }
  }

  function onCommandError(frame) {
    const error = frame.error || {};
    const sent = chat.pending.get(frame.correlationId);
    chat.pending.delete(frame.correlationId);
    if (sent && sent.type === 'SUBSCRIBE_CONVERSATION' && sent.data.conversationId === chat.current) {
      return showUnavailable(chat.current, error);
    }
    if (sent && sent.type === 'SEND_MESSAGE') {
      const node = document.querySelector(`#messages .msg[data-id="${CSS.escape(frame.correlationId)}"]`);
      if (node) node.dataset.status = 'failed';
      setRunning(false);
    }
    toast(`${sent ? sent.type : 'command'}: ${error.code || 'ERROR'} ${error.message || ''}`, 'error');
  }

  // With no conversation open, a message starts one, as chat apps do.
  function sendMessage(event) {
    event.preventDefault();
    const input = $('message-input');
    const content = input.value.trim();
    if (!content) return;
    input.value = '';
    if (chat.current === null && !chat.creating) newConversation();
    const node = addMessage('user', claimsOf(token).sub, content, 'queued');
    chat.queue.push({ content, pattern: $('pattern-choice').value, node });
    flushQueue();
  }

  function flushQueue() {
    while (chat.ready && chat.current !== null && chat.queue.length > 0) {
      const message = chat.queue[0];
      const data = { conversationId: chat.current, content: message.content };
      if (message.pattern) data.pattern = message.pattern;
      const id = command('SEND_MESSAGE', data);
      // The socket just went: sent once it is back and subscribed again.
      if (!id) return;
      chat.queue.shift();
      message.node.dataset.id = id;
      message.node.dataset.status = 'pending';
      setRunning(true);
    }
  }

  function startChat() {
    chat.link = new Link('chat', () => `${socketBase()}/ws?token=${encodeURIComponent(token)}`, {
      open(reconnect) {
        setLinkState('online');
        chat.ready = false;
        if (chat.current) subscribe(chat.current, reconnect);
        else if (reconnect) banner('recovered', 'Reconnected.');
      },
      frame: onChatFrame,
      reconnecting: reconnectingBanner('Conversation stream'),
      exhausted: exhaustedBanner('Conversation stream'),
      final: finalBanner('Conversation stream'),
    });
    chat.link.start();
    chat.pingTimer = setInterval(() => command('PING', { timestamp: Date.now() }), 20000);
  }

  // ---------------------------------------------------------------------------------------------
  // Workflows

  // run: the run's workflow id, which its frames carry; runId: its run id, which REST and links use.
  const flow = { link: null, run: null, runId: null, position: null, nodes: new Map(), status: 'idle' };
  const isLive = (status) => ['queued', 'running', 'paused'].includes(status);

  function workflowSession() {
    let session = localStorage.getItem(WORKFLOW_SESSION_KEY);
    if (!session) {
      session = randomId('console');
      localStorage.setItem(WORKFLOW_SESSION_KEY, session);
    }
    return session;
  }

  function setFlowStatus(status) {
    // A run that ended changes its line in the list.
    if (isLive(flow.status) && !isLive(status)) refreshRuns();
    flow.status = status;
    const pill = $('wf-status');
    pill.dataset.state = status;
    pill.textContent = status;
    const live = isLive(status);
    $('wf-run').disabled = live;
    $('wf-pause').disabled = status !== 'running';
    $('wf-resume').disabled = status !== 'paused';
    $('wf-stop').disabled = !live;
    if (!live) $('wf-input').hidden = true;
  }

  // Columns by the longest path from the start node: a node sits right of everything feeding it.
  function renderGraph(workflow) {
    const depth = new Map(workflow.nodes.map((node) => [node.id, 0]));
    for (let pass = 0; pass < workflow.nodes.length; pass += 1) {
      for (const link of workflow.connections) {
        depth.set(link.to_node, Math.max(depth.get(link.to_node) || 0, (depth.get(link.from_node) || 0) + 1));
      }
    }
    const layers = [];
    for (const node of workflow.nodes) (layers[depth.get(node.id)] ||= []).push(node);
    const graph = $('wf-graph');
    graph.replaceChildren();
    flow.nodes.clear();
    layers.forEach((layer, index) => {
      if (index > 0) graph.append(el('div', { class: 'arrow', text: '→' }));
      const column = el('div', { class: 'layer' });
      for (const node of layer) {
        const inputs = workflow.connections.filter((link) => link.to_node === node.id).map((link) => `${link.from_node}.${link.from_output}`);
        const box = el('div', { class: 'node', 'data-status': 'pending', 'data-node': node.id },
          el('b', { text: node.id }),
          el('div', { class: 'muted', text: node.type + (inputs.length ? ' ← ' + inputs.join(', ') : '') }),
          el('div', { class: 'state', text: 'pending' }),
          el('div', { class: 'out' }));
        flow.nodes.set(node.id, box);
        column.append(box);
      }
      graph.append(column);
    });
  }

  const preview = (value) => (typeof value === 'string' ? value : JSON.stringify(value));

  function setNode(id, status, detail) {
    const box = flow.nodes.get(id);
    if (!box) return;
    box.dataset.status = status;
    box.querySelector('.state').textContent = status;
    if (detail !== undefined) box.querySelector('.out').textContent = tail(detail, 140);
  }

  async function runSample() {
    if (!flow.link.open) {
      toast('The workflow stream is not connected yet; try again in a moment.', 'warning');
      return;
    }
    $('wf-run').disabled = true;
    try {
      const response = await fetch('/console/sample-workflow.json');
      const workflow = await response.json();
      renderGraph(workflow);
      $('wf-result').textContent = '–';
      flow.run = null;
      flow.runId = null;
      flow.position = null;
      setFlowStatus('queued');
      if (!flow.link.send({ type: 'execute_workflow', request_id: randomId('run'), workflow })) {
        setFlowStatus('idle');
        toast('Not connected; try again in a moment.', 'warning');
      }
    } catch (error) {
      $('wf-run').disabled = false;
      toast('Sample workflow: ' + error.message, 'error');
    }
  }

  function control(action) {
    if (flow.run) flow.link.send({ type: 'control_workflow', request_id: randomId(action), workflow_id: flow.run, action });
  }

  // A run by its link, from the list, or of this session from an earlier visit: its definition and
  // node states from REST, then, while it is live, its events from the first one on. Someone else's
  // run is "not found" like a missing one.
  async function openRun(runId) {
    if (flow.runId === runId) return;
    flow.runId = runId;
    flow.run = null;
    flow.position = null;
    setFlowStatus('loading');
    markSelectedRun();
    try {
      const run = await api('GET', '/api/v1/workflows/runs/' + encodeURIComponent(runId));
      if (flow.runId !== runId) return;
      // Frames name the run by the workflow's own id (seed 003); REST by its run id.
      flow.run = run.workflow_id;
      renderGraph(run.workflow);
      $('wf-result').textContent = '–';
      applyRunRecord(run);
      if (isLive(run.status) && flow.link && flow.link.open) followRun();
    } catch (error) {
      if (flow.runId !== runId) return;
      renderGraph({ nodes: [], connections: [] });
      setFlowStatus('unavailable');
      $('wf-result').textContent = `Workflow run “${runId}” cannot be opened: ${error.message}.`;
    }
  }

  // By run id: the session's workflow id may name a newer run of the same workflow.
  function followRun() {
    flow.link.send({ type: 'subscribe', workflow_id: flow.runId, offset: 0 });
  }

  async function refreshRuns() {
    try {
      const page = await api('GET', '/api/v1/workflows/runs?limit=10');
      $('wf-runs').replaceChildren(...page.runs.map((run) => {
        const item = el('li', { 'data-run': run.run_id },
          el('span', { class: 'pill', 'data-state': run.status, text: run.status }), ' ',
          el('span', { text: run.workflow_id }), ' ',
          el('span', { class: 'muted', text: new Date(run.created_at).toLocaleString() }));
        item.onclick = () => go(runPath(run.run_id));
        return item;
      }));
      markSelectedRun();
    } catch (error) {
      if (error.message !== 'unauthorized') toast('Workflow runs: ' + error.message, 'error');
    }
  }

  function markSelectedRun() {
    for (const item of $('wf-runs').children) item.classList.toggle('selected', item.dataset.run === flow.runId);
  }

  function applyRunRecord(run) {
    for (const [id, node] of Object.entries(run.nodes || {})) setNode(id, node.status, node.outputs ? preview(node.outputs) : node.error);
    setFlowStatus(run.status);
    if (run.results) $('wf-result').textContent = JSON.stringify(run.results, null, 2);
  }

  function onFlowFrame(frame) {
    if (frame.workflow_id && flow.run && frame.workflow_id !== flow.run) return;
    if (frame.workflow_id && typeof frame.offset === 'number' && frame.epoch) {
      const seen = flow.position;
      if (seen && seen.epoch === frame.epoch && frame.offset <= seen.offset) return;
      flow.position = { offset: frame.offset, epoch: frame.epoch };
    }
    switch (frame.type) {
      case 'connection_established': {
        if (flow.run && flow.position) {
          flow.link.send({ type: 'subscribe', workflow_id: flow.run, offset: flow.position.offset, epoch: flow.position.epoch });
        } else if (flow.runId && isLive(flow.status)) {
          followRun();
        } else if (!flow.runId) {
          const live = (frame.workflows || []).find((run) => isLive(run.status));
          if (live) {
            showInAddress(runPath(live.run_id));
            openRun(live.run_id);
          }
        }
        break;
      }
      case 'subscription_confirmed':
        if (frame.workflow_id && frame.recovered === true && flow.reconnected) banner('recovered', 'Workflow reconnected: recovered, no events missed.');
        if (frame.workflow_id && frame.recovered === false) {
          banner('gap', 'Workflow reconnected: history gap, reloaded the run.');
          api('GET', '/api/v1/workflows/runs/' + encodeURIComponent(frame.run_id)).then(applyRunRecord).catch(() => {});
        }
        flow.reconnected = false;
        break;
      case 'workflow_execution_started':
        flow.run = frame.workflow_id;
        flow.runId = frame.run_id;
        setFlowStatus('running');
        go(runPath(frame.run_id));
        refreshRuns();
        break;
      case 'workflow_validation_error':
        setFlowStatus('failed');
        $('wf-result').textContent = (frame.errors || []).map((error) => `${error.code}: ${error.message}`).join('\n');
        break;
      case 'node_status_update': {
        const detail = frame.error ? preview(frame.error) : frame.outputs ? preview(frame.outputs) : undefined;
        setNode(frame.node_id, frame.status, detail);
        if (frame.status === 'completed' && $('wf-input').dataset.node === frame.node_id) $('wf-input').hidden = true;
        if (frame.status === 'running' && flow.status === 'queued') setFlowStatus('running');
        break;
      }
      case 'node_progress':
        setNode(frame.node_id, 'running', frame.partial_outputs && frame.partial_outputs.text);
        break;
      case 'human_input_required':
        setNode(frame.node_id, 'waiting');
        $('wf-input').dataset.node = frame.node_id;
        $('wf-input-node').textContent = frame.node_id;
        $('wf-input-prompt').textContent = frame.prompt;
        $('wf-input').hidden = false;
        $('wf-answer').focus();
        break;
      case 'workflow_completed':
        setFlowStatus('completed');
        $('wf-result').textContent = JSON.stringify(frame.results, null, 2);
        break;
      case 'workflow_failed':
        setFlowStatus('failed');
        $('wf-result').textContent = `failed${frame.node_id ? ' at ' + frame.node_id : ''}: ${preview(frame.error)}`;
        break;
      case 'workflow_stopped':
        setFlowStatus('stopped');
        $('wf-result').textContent = 'stopped: ' + JSON.stringify(frame.summary);
        break;
      case 'workflow_execution_error':
        setFlowStatus('failed');
        $('wf-result').textContent = frame.error;
        break;
      case 'workflow_control_result':
        if (frame.success) setFlowStatus(frame.status);
        else toast('Control: ' + ((frame.error && frame.error.code) || 'refused'), 'warning');
        break;
      case 'human_input_response':
        if (!frame.success) toast('Answer: ' + ((frame.error && frame.error.code) || 'refused'), 'warning');
        break;
      case 'heartbeat':
        flow.link.send({ type: 'heartbeat_response' });
        break;
      case 'error':
        toast(`Workflow: ${frame.code} ${frame.message}`, 'error');
        break;
      default:
        break;
    }
  }

  function startWorkflows() {
    if (flow.link) return;
    flow.link = new Link('workflow', () => `${socketBase()}/ws/${encodeURIComponent(workflowSession())}?token=${encodeURIComponent(token)}`, {
      open(reconnect) {
        flow.reconnected = reconnect;
        setLinkState('online');
      },
      frame: onFlowFrame,
      reconnecting: reconnectingBanner('Workflow stream'),
      exhausted: exhaustedBanner('Workflow stream'),
      final: finalBanner('Workflow stream'),
    });
    flow.link.start();
  }

  // ---------------------------------------------------------------------------------------------
  // System

  function renderSystemStatus(status) {
    const pill = $('cluster-status');
    pill.dataset.state = status.status;
    pill.textContent = status.status;
    $('cluster-message').textContent = status.message || '';
    $('services').replaceChildren(...(status.services || []).map((service) =>
      el('tr', { 'data-ready': String(service.readyInstances > 0) },
        el('td', { text: service.name }), el('td', { text: String(service.readyInstances) }), el('td', { text: String(service.instances) }))));
  }

  function renderConnections(connections) {
    // Seed 003's answer: the workflow sockets (yours, or everyone's for an admin); gateways for admins.
    $('connections-total').textContent = `${connections.total_connections} open connection(s) on /ws/{session_id}, ${connections.active_workflows} active workflow(s).`;
    $('gateways').replaceChildren(...Object.entries(connections.gateways || {}).map(([gateway, count]) =>
      el('tr', {}, el('td', { text: gateway }), el('td', { text: String(count) }))));
  }

  async function refreshSystem() {
    try {
      renderSystemStatus(await api('GET', '/api/v1/system/status'));
      renderConnections(await api('GET', '/api/connections'));
    } catch (error) {
      if (error.message !== 'unauthorized') $('cluster-message').textContent = 'status unavailable: ' + error.message;
    }
  }

  function addNotification(notification) {
    const list = $('notifications');
    const placeholder = list.querySelector('.muted');
    if (placeholder) placeholder.remove();
    list.prepend(el('li', { 'data-type': notification.type },
      el('b', { text: notification.title || notification.type }), ' ',
      el('span', { text: notification.message || '' }), ' ',
      el('span', { class: 'muted', text: `${new Date().toLocaleTimeString()}${notification.from ? ' · from ' + notification.from : ''}` })));
    toast(`${notification.title}: ${notification.message}`, notification.type);
  }

  // ---------------------------------------------------------------------------------------------
  // Devices (docs/voice.md#activation): bind by the code a device shows, rename, unbind; and how
  // long each stage of an online device's last turn took (docs/voice.md#latency).

  const TURN_STAGES = [
    ['endOfUtteranceMs', 'end of speech'], ['asrMs', 'ASR'], ['llmFirstTokenMs', 'first token'],
    ['ttsFirstAudioMs', 'first audio'], ['totalMs', 'total'],
  ];

  const milliseconds = (value) => (value >= 1000 ? (value / 1000).toFixed(2) + ' s' : value + ' ms');

  function lastTurnCell(device) {
    const turn = device.lastTurn;
    if (!device.online || !turn) return el('td', { class: 'muted', text: device.online ? 'no turn yet' : '–' });
    const stages = TURN_STAGES.filter(([key]) => typeof turn[key] === 'number').map(([key, label]) =>
      el('span', { class: 'stage', 'data-stage': key, title: label }, el('span', { class: 'muted', text: label + ' ' }), milliseconds(turn[key])));
    return el('td', { class: 'last-turn', title: 'at ' + new Date(turn.at).toLocaleTimeString() }, ...stages);
  }

  function renderDevices(devices) {
    $('devices-empty').hidden = devices.length > 0;
    $('devices').replaceChildren(...devices.map((device) => {
      const rename = el('button', { type: 'button', text: 'Rename' });
      rename.onclick = async () => {
        const name = prompt('Name of ' + device.id, device.name);
        if (name === null || !name.trim()) return;
        try {
          await api('PATCH', '/api/v1/devices/' + encodeURIComponent(device.id), { name: name.trim() });
          refreshDevices();
        } catch (error) {
          toast('Rename failed: ' + error.message, 'error');
        }
      };
      const unbind = el('button', { type: 'button', class: 'danger', text: 'Unbind' });
      unbind.onclick = async () => {
        if (!confirm('Unbind ' + device.name + '? It is disconnected and needs a new code.')) return;
        try {
          await api('DELETE', '/api/v1/devices/' + encodeURIComponent(device.id));
          toast(device.name + ' unbound');
          refreshDevices();
        } catch (error) {
          toast('Unbind failed: ' + error.message, 'error');
        }
      };
      return el('tr', { 'data-device': device.id, 'data-online': String(device.online) },
        el('td', { class: 'device-name', text: device.name }), el('td', { text: device.id }),
        el('td', {}, el('span', { class: 'pill', 'data-state': device.online ? 'online' : 'offline', text: device.online ? 'online' : 'offline' })),
        lastTurnCell(device),
        el('td', {}, rename, ' ', unbind));
    }));
  }

  async function refreshDevices() {
    try {
      renderDevices((await api('GET', '/api/v1/devices')).devices || []);
    } catch (error) {
      if (error.message !== 'unauthorized') $('device-error').textContent = 'devices unavailable: ' + error.message;
    }
  }

  async function bindDevice(event) {
    event.preventDefault();
    const code = $('device-code').value.trim();
    $('device-error').textContent = '';
    try {
      const device = await api('POST', '/api/v1/devices/bind', { code });
      $('device-code').value = '';
      toast('Bound ' + device.id);
      refreshDevices();
    } catch (error) {
      if (error.message !== 'unauthorized') $('device-error').textContent = error.message;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Addresses: #/conversations/ID, #/workflows/RUN, #/devices, #/system. The page follows its
  // address (hashchange): choosing a conversation or a run sets it, so each has a link to bookmark or
  // share, and the back button returns to what was shown before.

  function parseRoute(hash) {
    const match = /^#\/(conversations|workflows|devices|system)(?:\/(.+))?$/.exec(hash);
    if (!match) return { tab: 'chat', id: null };
    let id = null;
    try {
      id = match[2] ? decodeURIComponent(match[2]) : null;
    } catch {
      id = null;
    }
    return { tab: match[1] === 'conversations' ? 'chat' : match[1], id };
  }

  const conversationPath = (id) => '/conversations' + (id ? '/' + encodeURIComponent(id) : '');
  const runPath = (id) => '/workflows' + (id ? '/' + encodeURIComponent(id) : '');

  // A new history entry; the hashchange it fires shows it.
  function go(path) {
    if (location.hash === '#' + path) followRoute();
    else location.hash = path;
  }

  // Says in the address what is shown, without a history entry of its own.
  function showInAddress(path) {
    history.replaceState(null, '', location.pathname + location.search + '#' + path);
  }

  function followRoute() {
    if (!token) return; // after sign-in
    const route = parseRoute(location.hash);
    showTab(route.tab);
    if (route.tab === 'chat') {
      if (route.id) selectConversation(route.id);
      else if (chat.current !== null) clearConversation();
    }
    if (route.tab === 'workflows' && route.id) openRun(route.id);
  }

  function tabPath(name) {
    if (name === 'chat') return conversationPath(chat.current);
    if (name === 'workflows') return runPath(flow.runId);
    return '/' + name;
  }

  // ---------------------------------------------------------------------------------------------
  // Tabs, sign in and out

  let systemTimer = null;

  function showTab(name) {
    for (const button of document.querySelectorAll('#tabs button')) button.classList.toggle('active', button.dataset.tab === name);
    for (const tab of ['chat', 'workflows', 'devices', 'system']) $('tab-' + tab).hidden = tab !== name;
    clearInterval(systemTimer);
    if (name === 'system') {
      refreshSystem();
      systemTimer = setInterval(refreshSystem, 5000);
    }
    if (name === 'devices') {
      refreshDevices();
      // Online state changes as devices come and go.
      systemTimer = setInterval(refreshDevices, 5000);
    }
    if (name === 'workflows') {
      startWorkflows();
      refreshRuns();
    }
  }

  function signOut(reason) {
    if (chat.link) chat.link.stop();
    if (flow.link) flow.link.stop();
    leaveConversation(false);
    flow.link = null;
    clearInterval(chat.pingTimer);
    clearInterval(systemTimer);
    localStorage.removeItem(TOKEN_KEY);
    token = null;
    showSignIn(reason);
  }

  function showSignIn(reason) {
    $('app').hidden = true;
    $('tabs').hidden = true;
    $('sign-out').hidden = true;
    $('user').textContent = '';
    setLinkState('offline');
    $('sign-in').hidden = false;
    $('sign-in-error').textContent = reason || '';
  }

  function start() {
    takeTokenFromAddress();
    token = localStorage.getItem(TOKEN_KEY);
    if (!token) return showSignIn();
    const claims = claimsOf(token);
    if (!claims || !claims.sub) return signOut('That is not a Switchboard token.');
    if (tokenExpired()) return signOut('The token has expired; mint a new one.');
    $('sign-in').hidden = true;
    $('app').hidden = false;
    $('tabs').hidden = false;
    $('sign-out').hidden = false;
    $('user').textContent = claims.sub;
    startChat();
    loadConversations();
    refreshSystem();
    // A link names what to show; without one, the conversation open last time.
    if (!/^#\/./.test(location.hash)) showInAddress(conversationPath(localStorage.getItem(CONVERSATION_KEY)));
    followRoute();
  }

  // For DevTools (and the browser test): drop the conversation socket as a network failure would,
  // to watch the console reconnect and resume.
  // breakLink also makes every reconnect fail until restoreLink, to watch the attempts run out.
  let workingURL = null;
  window.sbConsole = Object.freeze({
    dropConnection() {
      if (chat.link && chat.link.socket) chat.link.socket.close(4001, 'dropped from DevTools');
    },
    reconnectPolicy: Object.freeze({ ...RECONNECT, bound: backoffBound }),
    breakLink() {
      if (!chat.link || workingURL) return;
      workingURL = chat.link.url;
      chat.link.url = () => `${socketBase()}/ws-unreachable`;
      this.dropConnection();
    },
    restoreLink() {
      if (chat.link && workingURL) chat.link.url = workingURL;
      workingURL = null;
    },
  });

  document.addEventListener('DOMContentLoaded', () => {
    $('sign-in-form').onsubmit = (event) => {
      event.preventDefault();
      const value = $('token-input').value.trim();
      if (!claimsOf(value)) {
        $('sign-in-error').textContent = 'That is not a JWT (three dot-separated parts).';
        return;
      }
      localStorage.setItem(TOKEN_KEY, value);
      $('token-input').value = '';
      start();
    };
    $('sign-out').onclick = () => signOut();
    for (const button of document.querySelectorAll('#tabs button')) button.onclick = () => go(tabPath(button.dataset.tab));
    window.addEventListener('hashchange', followRoute);
    $('new-conversation').onclick = newConversation;
    $('composer').onsubmit = sendMessage;
    $('message-input').onkeydown = (event) => {
      if (event.key === 'Enter' && !event.shiftKey) sendMessage(event);
    };
    $('stop').onclick = () => {
      if (chat.current) command('INTERRUPT', { conversationId: chat.current });
    };
    $('wf-run').onclick = runSample;
    $('ota-url').textContent = location.origin + '/xiaozhi/ota/';
    $('device-bind').onsubmit = bindDevice;
    $('devices-refresh').onclick = refreshDevices;
    $('wf-pause').onclick = () => control('pause');
    $('wf-resume').onclick = () => control('resume');
    $('wf-stop').onclick = () => control('stop');
    $('wf-input').onsubmit = (event) => {
      event.preventDefault();
      const node = $('wf-input').dataset.node;
      flow.link.send({ type: 'provide_input', request_id: randomId('answer'), workflow_id: flow.run, node_id: node, answer: $('wf-answer').value });
      $('wf-answer').value = '';
      $('wf-input').hidden = true;
    };
    start();
  });
})();
