// Keyport console: dialogs, copy buttons, the typed delete phrase, key
// creation that shows the secret once, and "Test connection". Everything
// here is progressive: the server renders every page and checks every rule.
'use strict';

(function () {
  // Script runs: what needs it (the header's menu, the rows' Actions) shows.
  document.documentElement.classList.add('js');
  const openers = new WeakMap();

  function openDialog(dialog, opener) {
    if (!dialog) return;
    openers.set(dialog, opener || document.activeElement);
    if (dialog.open) dialog.close();
    dialog.showModal();
  }

  function closeDialog(dialog) {
    if (dialog && dialog.open) dialog.close();
  }

  document.addEventListener('close', function (event) {
    const dialog = event.target;
    if (!(dialog instanceof HTMLDialogElement)) return;
    if (dialog.hasAttribute('data-discard-on-close')) {
      discardSecret();
      return;
    }
    const opener = openers.get(dialog);
    if (opener && typeof opener.focus === 'function') opener.focus();
  }, true);

  document.addEventListener('click', function (event) {
    const target = event.target.closest('button, a');
    if (!target) return;
    // An item of a row's Actions menu that opens a dialog closes the menu
    // first; the dialog gives focus back to the menu's button.
    const menu = target.closest('[popover]');
    const opener = menu && (target.dataset.open || target.dataset.testKey || target.dataset.confirm)
      ? closeMenu(menu) : target;
    if (target.dataset.open) {
      openDialog(document.getElementById(target.dataset.open), opener);
    } else if (target.dataset.confirm) {
      confirmFor(target.closest('tr[data-key-id]'), target.dataset.confirm, opener);
    } else if (target.hasAttribute('data-close')) {
      closeDialog(target.closest('dialog'));
    } else if (target.dataset.copy) {
      copyText(document.getElementById(target.dataset.copy).textContent, target);
    } else if (target.dataset.testKey) {
      const dialog = document.getElementById('test-dialog');
      const sigv4 = target.hasAttribute('data-test-sigv4');
      dialog.dataset.mode = sigv4 ? 'sigv4' : 'token';
      document.getElementById('test-how-token').hidden = sigv4;
      document.getElementById('test-how-sigv4').hidden = !sigv4;
      document.getElementById('test-client-id').value = target.dataset.testKey;
      document.getElementById('test-secret').value = '';
      document.getElementById('test-result').replaceChildren();
      openDialog(dialog, opener);
      document.getElementById('test-secret').focus();
    } else if (target.hasAttribute('data-test-created')) {
      const signs = !document.getElementById('created-sigv4').hidden;
      (signs ? testSigv4 : testConnection)(
        document.getElementById('created-client-id').textContent,
        document.getElementById('created-secret').textContent,
        document.getElementById('created-test-result'));
    } else if (target.hasAttribute('data-env-download')) {
      downloadEnv();
    } else if (target.hasAttribute('data-copy-token')) {
      const pre = target.closest('.result').querySelector('[data-field="token"]');
      copyText(pre.textContent, target);
    }
  });

  // A row's Actions menu (a popover the browser opens and closes, with
  // Escape and a click outside): focus goes to its first item when it
  // opens, the arrow keys move between items, and where the browser cannot
  // place it beside its button by itself, this script does.
  function closeMenu(menu) {
    const button = document.querySelector('[popovertarget="' + menu.id + '"]');
    if (menu.matches(':popover-open')) menu.hidePopover();
    return button || document.getElementById('main');
  }

  function menuItems(menu) {
    return Array.from(menu.querySelectorAll('button:not(:disabled), a[href]'));
  }

  const anchored = window.CSS && CSS.supports && CSS.supports('position-area', 'bottom span-left');

  document.addEventListener('toggle', function (event) {
    const menu = event.target;
    if (!(menu instanceof HTMLElement) || !menu.classList.contains('row-menu')) return;
    if (event.newState !== 'open') return;
    const button = document.querySelector('[popovertarget="' + menu.id + '"]');
    if (!anchored && button) {
      const at = button.getBoundingClientRect();
      const width = menu.offsetWidth;
      const left = Math.max(8, Math.min(at.right - width, window.innerWidth - width - 8));
      const below = at.bottom + 4;
      const top = below + menu.offsetHeight > window.innerHeight ? Math.max(8, at.top - menu.offsetHeight - 4) : below;
      menu.style.position = 'fixed';
      menu.style.margin = '0';
      menu.style.left = left + 'px';
      menu.style.top = top + 'px';
    }
    const first = menuItems(menu)[0];
    if (first) first.focus();
  }, true);

  // The button's aria-expanded follows the menu as it opens and closes.
  document.addEventListener('beforetoggle', function (event) {
    const menu = event.target;
    if (!(menu instanceof HTMLElement) || !menu.classList.contains('row-menu')) return;
    const button = document.querySelector('[popovertarget="' + menu.id + '"]');
    if (button) button.setAttribute('aria-expanded', event.newState === 'open' ? 'true' : 'false');
  }, true);

  document.addEventListener('keydown', function (event) {
    const menu = event.target.closest && event.target.closest('.row-menu');
    if (!menu) return;
    const items = menuItems(menu);
    const at = items.indexOf(event.target);
    let next = null;
    if (event.key === 'ArrowDown') next = items[(at + 1) % items.length];
    else if (event.key === 'ArrowUp') next = items[(at - 1 + items.length) % items.length];
    else if (event.key === 'Home') next = items[0];
    else if (event.key === 'End') next = items[items.length - 1];
    if (next) { event.preventDefault(); next.focus(); }
  });

  function copyText(text, button) {
    const done = function () {
      const label = button.textContent;
      button.textContent = 'Copied';
      setTimeout(function () { button.textContent = label; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text, done); });
    } else {
      fallbackCopy(text, done);
    }
  }

  function fallbackCopy(text, done) {
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    try { document.execCommand('copy'); done(); } finally { area.remove(); }
  }

  // The key list's confirmations are one dialog per action, shared by the
  // rows: fill in the row's key (its id in the form's address, its name and
  // client ID in the words) and open it.
  function confirmFor(row, action, opener) {
    const dialog = document.getElementById('confirm-' + action);
    if (!row || !dialog) return;
    const form = dialog.querySelector('form');
    form.action = '/console/keys/' + encodeURIComponent(row.dataset.keyId) + '/' + form.dataset.action;
    dialog.querySelectorAll('[data-fill="name"]').forEach(function (e) { e.textContent = row.dataset.keyName; });
    dialog.querySelectorAll('[data-fill="client_id"]').forEach(function (e) { e.textContent = row.dataset.clientId; });
    dialog.querySelectorAll('[data-fill="signs_webhooks"]').forEach(function (e) { e.hidden = !row.hasAttribute('data-signs-webhooks'); });
    if (form.hasAttribute('data-phrase')) {
      form.dataset.phrase = row.dataset.keyName;
      const input = form.querySelector('input[name="confirm"]');
      input.value = '';
      input.dispatchEvent(new Event('input'));
    }
    openDialog(dialog, opener);
  }

  // The delete button stays disabled until the key's name is typed (any
  // case), and the field says when what is typed does not match.
  function wirePhrase(form) {
    const input = form.querySelector('input[name="confirm"]');
    const submit = form.querySelector('[data-phrase-submit]');
    const says = form.querySelector('[data-mismatch]');
    const update = function () {
      const wanted = form.dataset.phrase.trim().toLowerCase();
      const typed = input.value.trim().toLowerCase();
      const matches = typed === wanted;
      submit.disabled = !matches;
      if (says) {
        says.textContent = typed === '' || matches ? '' :
          (wanted.startsWith(typed) ? 'Keep typing: the name is not complete yet.' : 'This does not match the key\'s name.');
      }
      input.setAttribute('aria-invalid', typed !== '' && !matches && !wanted.startsWith(typed) ? 'true' : 'false');
    };
    input.addEventListener('input', update);
    update();
  }

  // The key list's filters apply as they change; the search box hides the
  // rows that do not match as one types (Enter asks the server).
  function wireFilters(form) {
    form.querySelectorAll('select').forEach(function (select) {
      select.addEventListener('change', function () { form.submit(); });
    });
    const search = form.querySelector('input[type="search"]');
    if (!search) return;
    search.addEventListener('input', function () {
      const needle = search.value.trim().toLowerCase();
      document.querySelectorAll('tr[data-search]').forEach(function (row) {
        row.hidden = needle !== '' && !row.dataset.search.includes(needle);
      });
    });
  }

  // "Never" shows its warning; a day of one's own needs the date field.
  function wireExpiry(form) {
    const warning = document.getElementById('no-expiry-warning');
    const date = document.getElementById('expires_on');
    const update = function () {
      const chosen = form.querySelector('input[name="expiry"]:checked');
      const value = chosen ? chosen.value : '';
      if (warning) warning.hidden = value !== 'never';
      if (date) {
        date.disabled = value !== 'custom';
        date.required = value === 'custom';
      }
    };
    form.querySelectorAll('input[name="expiry"]').forEach(function (radio) {
      radio.addEventListener('change', update);
    });
    update();
  }

  // The one-time dialog's Done waits for "I have stored the secret".
  function wireStored(dialog) {
    const box = dialog.querySelector('[data-stored]');
    const done = document.getElementById('created-done');
    const why = document.getElementById('created-done-why');
    if (!box || !done) return;
    const update = function () {
      done.disabled = !box.checked;
      if (why) why.hidden = box.checked;
    };
    box.addEventListener('change', update);
    update();
  }

  // A .env file made in this page (never sent anywhere): the client ID,
  // the secret and the token URL.
  function downloadEnv() {
    const text = function (id) { return (document.getElementById(id) || {}).textContent || ''; };
    const lines = [
      'KEYPORT_CLIENT_ID=' + text('created-client-id').trim(),
      'KEYPORT_CLIENT_SECRET=' + text('created-secret').trim(),
      'KEYPORT_TOKEN_URL=' + text('created-token-url').trim(),
    ];
    const webhook = text('created-webhook-key').trim();
    if (webhook) lines.push('KEYPORT_WEBHOOK_SIGNING_KEY=' + webhook);
    const blob = new Blob([lines.join('\n') + '\n'], { type: 'text/plain' });
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = 'keyport-' + text('created-client-id').trim() + '.env';
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  }

  // Creating a key: the secret comes back in this response only, goes into
  // the dialog, and is dropped when the dialog closes.
  function wireCreate(form) {
    form.addEventListener('submit', async function (event) {
      event.preventDefault();
      const error = document.getElementById('create-error');
      error.hidden = true;
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      try {
        const response = await fetch(form.action, {
          method: 'POST',
          headers: { 'Accept': 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams(new FormData(form)),
          credentials: 'same-origin',
          cache: 'no-store',
        });
        const body = await response.json();
        if (!response.ok) {
          showError(error, body);
          if (body.field) {
            const field = form.querySelector('[name="' + body.field + '"]');
            if (field) { field.setAttribute('aria-invalid', 'true'); field.focus(); }
          }
          return;
        }
        document.getElementById('created-client-id').textContent = body.client_id;
        document.getElementById('created-secret').textContent = body.client_secret;
        document.getElementById('created-webhook-key').textContent = body.signs_webhooks ? body.webhook_signing_key : '';
        document.getElementById('created-webhook').hidden = !body.signs_webhooks;
        document.getElementById('created-token-url').textContent = body.token_url || '';
        const stored = document.getElementById('created-stored');
        if (stored) { stored.checked = false; stored.dispatchEvent(new Event('change')); }
        closeDialog(document.getElementById('create-dialog'));
        document.getElementById('created-curl').textContent = body.curl;
        document.getElementById('created-sigv4-curl').textContent = body.sigv4_curl || '';
        document.getElementById('created-sigv4').hidden = !body.sigv4_curl;
        document.getElementById('created-postman').href = body.postman;
        document.getElementById('created-test-result').replaceChildren();
        const dialog = document.getElementById('created-dialog');
        dialog.setAttribute('data-discard-on-close', '');
        openDialog(dialog, button);
      } catch (failure) {
        showError(error, { error: 'network_error', message: 'The server could not be reached.' });
      } finally {
        button.disabled = false;
      }
    });
  }

  function showError(element, body) {
    element.replaceChildren(document.createTextNode((body.message || 'The request failed.') + ' '));
    const code = document.createElement('code');
    code.textContent = body.error || 'error';
    element.appendChild(code);
    element.hidden = false;
  }

  // After the one showing, the secret is wiped and the page reloaded (GET):
  // nothing can bring it back.
  function discardSecret() {
    for (const id of ['created-secret', 'created-webhook-key', 'created-curl', 'created-sigv4-curl', 'created-client-id', 'created-token-url']) {
      const element = document.getElementById(id);
      if (element) element.textContent = '';
    }
    // A page answering a POST (a roll, a create without script) lives at
    // the action's URL: go back to the list instead of asking for it again.
    const path = window.location.pathname;
    const list = path.startsWith('/console/keys') ? '/console/keys' : path;
    window.location.replace(list + (path === list ? window.location.search : ''));
  }

  let countdown = null;

  async function testConnection(clientId, secret, output) {
    output.replaceChildren(document.createTextNode('Testing…'));
    if (countdown) { clearInterval(countdown); countdown = null; }
    let token;
    try {
      const response = await fetch('/oauth/token', {
        method: 'POST',
        headers: {
          'Authorization': 'Basic ' + btoa(encodeURIComponent(clientId) + ':' + encodeURIComponent(secret)),
          'Content-Type': 'application/x-www-form-urlencoded',
          'Accept': 'application/json',
        },
        body: 'grant_type=client_credentials',
        credentials: 'omit',
        cache: 'no-store',
      });
      const body = await response.json();
      if (!response.ok) {
        return failed(output, body.error, body.error_description);
      }
      token = body;
    } catch (failure) {
      return failed(output, 'network_error', 'the token endpoint could not be reached');
    }
    let who;
    try {
      const response = await fetch('/api/v1/whoami', {
        headers: { 'Authorization': 'Bearer ' + token.access_token, 'Accept': 'application/json' },
        credentials: 'omit',
        cache: 'no-store',
      });
      who = await response.json();
      if (!response.ok) return failed(output, who.error, who.message);
    } catch (failure) {
      return failed(output, 'network_error', 'whoami could not be reached');
    }
    const result = document.getElementById('token-result').content.cloneNode(true);
    result.querySelector('[data-field="sub"]').textContent = who.sub + ' (' + who.role + ')';
    result.querySelector('[data-field="tenant"]').textContent = who.tenant_id;
    result.querySelector('[data-field="scope"]').textContent = who.scope;
    result.querySelector('[data-field="token"]').textContent = token.access_token;
    const clock = result.querySelector('[data-field="countdown"]');
    const expires = Date.now() + token.expires_in * 1000;
    const tick = function () {
      const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
      clock.textContent = left > 0 ? 'expires in ' + left + ' s' : 'expired';
      if (left === 0 && countdown) { clearInterval(countdown); countdown = null; }
    };
    tick();
    countdown = setInterval(tick, 1000);
    output.replaceChildren(result);
  }

  // Test connection for a key that allows SigV4: GET /api/v1/whoami signed
  // here with AWS Signature Version 4 (WebCrypto), as curl --aws-sigv4
  // would sign it. The secret stays in this page: only the signature goes
  // to the server, and nothing is stored anywhere.
  const encoder = new TextEncoder();

  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), function (b) {
      return b.toString(16).padStart(2, '0');
    }).join('');
  }

  async function sha256Hex(text) {
    return hex(await crypto.subtle.digest('SHA-256', encoder.encode(text)));
  }

  async function hmac(key, text) {
    const imported = await crypto.subtle.importKey(
      'raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return crypto.subtle.sign('HMAC', imported, encoder.encode(text));
  }

  async function sigv4Headers(clientId, secret, method, path) {
    const dialog = document.getElementById('test-dialog');
    const region = dialog.dataset.sigv4Region;
    const service = dialog.dataset.sigv4Service;
    const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const day = amzDate.slice(0, 8);
    const canonical = [method, path, '', 'host:' + window.location.host,
      'x-amz-date:' + amzDate, '', 'host;x-amz-date', await sha256Hex('')].join('\n');
    const scope = day + '/' + region + '/' + service + '/aws4_request';
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, await sha256Hex(canonical)].join('\n');
    let key = encoder.encode('AWS4' + secret);
    for (const part of [day, region, service, 'aws4_request']) key = await hmac(key, part);
    return {
      'Authorization': 'AWS4-HMAC-SHA256 Credential=' + clientId + '/' + scope +
        ', SignedHeaders=host;x-amz-date, Signature=' + hex(await hmac(key, toSign)),
      'X-Amz-Date': amzDate,
      'Accept': 'application/json',
    };
  }

  async function testSigv4(clientId, secret, output) {
    output.replaceChildren(document.createTextNode('Testing…'));
    if (countdown) { clearInterval(countdown); countdown = null; }
    if (!window.crypto || !crypto.subtle) {
      return failed(output, 'insecure_context',
        'signing in the browser needs HTTPS (or localhost); use the curl command instead');
    }
    let who;
    try {
      const response = await fetch('/api/v1/whoami', {
        headers: await sigv4Headers(clientId.trim(), secret.trim(), 'GET', '/api/v1/whoami'),
        credentials: 'omit',
        cache: 'no-store',
      });
      who = await response.json();
      if (!response.ok) return failed(output, who.error, who.message);
    } catch (failure) {
      return failed(output, 'network_error', 'whoami could not be reached');
    }
    const result = document.getElementById('sigv4-result').content.cloneNode(true);
    result.querySelector('[data-field="sub"]').textContent = who.sub + ' (' + who.role + ')';
    result.querySelector('[data-field="tenant"]').textContent = who.tenant_id;
    result.querySelector('[data-field="scope"]').textContent = who.scope;
    output.replaceChildren(result);
  }

  // What a refusal means and what to do, in plain words, before the
  // server's own description and code.
  const WHY = {
    invalid_client: 'The secret does not match this key: check you pasted this key\'s own secret, whole.',
    signature_mismatch: 'The signature did not match: the secret is not this key\'s.',
    invalid_scope: 'The key asked for a permission it does not hold.',
    unauthorized_client: 'This key may not get tokens this way.',
    slow_down: 'Too many failed attempts from here: wait a few minutes, then try again.',
    rate_limited: 'The key went over its rate: wait a moment, then try again.',
    network_error: 'The server could not be reached: check your connection.',
    insecure_context: 'This browser only signs requests on a secure page.',
  };

  // The right secret of a key that may not be used says why: the server's
  // description names the key's state.
  const STATE = [
    [/revoked/, 'This key is revoked: it never works again. Create a new key for this client.'],
    [/owner is disabled/, 'The key\'s owner is disabled: an admin can enable them on the Users page.'],
    [/disabled/, 'This key is disabled: enable it (its Actions menu, or its page) to use it again.'],
    [/expired/, 'This key has expired: create a new key for this client.'],
    [/address/, 'This key may not be used from this address: change its allowed addresses on its page.'],
  ];

  function whyRefused(code, description) {
    if (code === 'invalid_client' && description) {
      const state = STATE.find(function (entry) { return entry[0].test(description); });
      if (state) return state[1];
    }
    return WHY[code];
  }

  function failed(output, code, description) {
    const box = document.createElement('div');
    box.className = 'result bad';
    box.setAttribute('role', 'alert');
    const reason = whyRefused(code, description);
    if (reason) {
      const why = document.createElement('p');
      why.textContent = reason;
      box.appendChild(why);
    }
    box.appendChild(document.createTextNode('The key was refused: ' + (description || 'no reason given') + ' '));
    const element = document.createElement('code');
    element.textContent = code || 'error';
    box.appendChild(element);
    output.replaceChildren(box);
  }

  // The set-password page opened from an invitation link: the code is in
  // the fragment (#code=…), which the browser never sends to a server. It
  // goes into the form's field, and out of the address bar and history.
  function codeFromFragment(field) {
    if (window.location.hash.length < 2) return;
    const code = new URLSearchParams(window.location.hash.slice(1)).get('code');
    history.replaceState(null, '', window.location.pathname + window.location.search);
    if (!code) return;
    field.value = code;
    const said = document.getElementById('code-from-link');
    if (said) said.hidden = false;
    const next = document.getElementById('new_password');
    if (next) next.focus();
  }

  document.addEventListener('DOMContentLoaded', function () {
    const invited = document.querySelector('[data-code-from-fragment]');
    if (invited) codeFromFragment(invited);
    document.querySelectorAll('form[data-phrase]').forEach(wirePhrase);
    const create = document.getElementById('create-key');
    if (create) { wireCreate(create); wireExpiry(create); }
    const filters = document.getElementById('key-filters');
    if (filters) wireFilters(filters);
    const created = document.getElementById('created-dialog');
    if (created) wireStored(created);
    // Times in the viewer's own zone on hover, beside the relative ones.
    document.querySelectorAll('time[datetime]').forEach(function (time) {
      const at = new Date(time.getAttribute('datetime'));
      if (!isNaN(at)) time.title = at.toLocaleString() + ' (your time) · ' + (time.title || at.toISOString());
    });
    // The header's menu at narrow widths.
    const toggle = document.querySelector('.menu-toggle');
    const nav = document.getElementById('console-nav');
    if (toggle && nav) {
      toggle.addEventListener('click', function () {
        const open = nav.classList.toggle('open');
        toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
      });
    }
    const test = document.getElementById('test-form');
    if (test) {
      test.addEventListener('submit', function (event) {
        event.preventDefault();
        const signs = document.getElementById('test-dialog').dataset.mode === 'sigv4';
        (signs ? testSigv4 : testConnection)(document.getElementById('test-client-id').value,
          document.getElementById('test-secret').value,
          document.getElementById('test-result'));
      });
    }
    // A dialog the server rendered open becomes a real modal.
    document.querySelectorAll('dialog[data-open-on-load]').forEach(function (dialog) {
      dialog.removeAttribute('open');
      if (dialog.id === 'created-dialog') dialog.setAttribute('data-discard-on-close', '');
      openDialog(dialog, document.getElementById('main'));
    });
  });
})();
