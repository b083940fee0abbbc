// cardap clerk UI: biometric login (生体認証, WebAuthn) on the login form, and 生体情報登録 on an operator's page.
// The one script of the UI, served from the binary (Content-Security-Policy script-src 'self'); without it the
// password login works as before, and the registration form says that this browser cannot register.
//
// Login: the button asks cardap for a challenge for the chosen municipality and operator ID, lets the browser ask
// the authenticator (the operator touches the reader), and sends the answer back; cardap sets the session cookie
// and says where to go. Registration: the button (the operations manager's session, on the operator's terminal)
// asks cardap to begin with the name typed, lets the browser create the credential on the authenticator, and sends
// it to finish; cardap says where to go. Binary fields travel as base64url, as cardap's API writes and reads them.
(function () {
  'use strict';

  function toBuffer(text) {
    var base64 = text.replace(/-/g, '+').replace(/_/g, '/');
    while (base64.length % 4) { base64 += '='; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = '';
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  // The options cardap sent, their binary fields as the browser takes them (`list`: the credentials allowed for a
  // login, or excluded from a registration).
  function publicKeyOptions(options, list) {
    var publicKey = Object.assign({}, options.publicKey);
    publicKey.challenge = toBuffer(publicKey.challenge);
    if (publicKey.user) {
      publicKey.user = Object.assign({}, publicKey.user, { id: toBuffer(publicKey.user.id) });
    }
    if (publicKey[list]) {
      publicKey[list] = publicKey[list].map(function (c) {
        return Object.assign({}, c, { id: toBuffer(c.id) });
      });
    }
    return { publicKey: publicKey };
  }

  // The authenticator's answer as cardap reads it: the binary `fields` of its response as base64url (null when
  // the authenticator left one out).
  function answer(credential, fields) {
    var response = {};
    fields.forEach(function (name) {
      var value = credential.response[name];
      response[name] = value ? toText(value) : null;
    });
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: response,
      extensions: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {}
    };
  }

  function post(path, body) {
    return fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (json) { return { ok: response.ok, json: json }; }, function () {
        return { ok: false, json: { message: '応答を読み取れませんでした。画面を読み込み直してください。' } };
      });
    });
  }

  // One ceremony: cardap begins it, the browser asks the authenticator (the operator touches it), cardap finishes
  // it and says where to go. A refusal on the way is said in `status`, and the button can be pressed again.
  function ceremony(button, status, steps) {
    button.disabled = true;
    status.textContent = steps.touch;
    steps.begin()
      .then(function (begun) {
        if (!begun.ok) { throw new Error(begun.json.message); }
        return steps.ask(begun.json).then(function (credential) {
          return steps.finish(begun.json, credential);
        }, function () {
          throw new Error(steps.cancelled);
        });
      })
      .then(function (finished) {
        if (!finished.ok) { throw new Error(finished.json.message); }
        window.location.assign(finished.json.location);
      })
      .catch(function (error) {
        status.textContent = error.message || steps.failed;
        button.disabled = false;
      });
  }

  function register() {
    var form = document.getElementById('biometric-register');
    var button = document.getElementById('biometric-register-button');
    var status = document.getElementById('biometric-register-status');
    var unsupported = document.getElementById('biometric-register-unsupported');
    if (!form || !button || !status || !window.PublicKeyCredential || !navigator.credentials) { return; }
    button.hidden = false;
    if (unsupported) { unsupported.hidden = true; }
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var label = form.elements.label.value.trim();
      if (!label) {
        status.textContent = '認証器の名前を入力してから登録してください。';
        form.elements.label.focus();
        return;
      }
      var keys = { csrf: form.elements.csrf.value, municipality: form.elements.municipality.value };
      ceremony(button, status, {
        touch: '操作者本人が認証器に触れてください…',
        cancelled: '認証器での登録が完了しませんでした。もう一度お試しください。',
        failed: '生体情報を登録できませんでした。',
        begin: function () { return post(form.action + '/registrations', Object.assign({ label: label }, keys)); },
        ask: function (begun) {
          return navigator.credentials.create(publicKeyOptions(begun.options, 'excludeCredentials'));
        },
        finish: function (begun, credential) {
          var finish = form.action + '/registrations/' + encodeURIComponent(begun.registration_id) + '/finish';
          var created = answer(credential, ['attestationObject', 'clientDataJSON']);
          return post(finish, Object.assign({ credential: created }, keys));
        }
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    register();
    var button = document.getElementById('biometric-login');
    var status = document.getElementById('biometric-status');
    if (!button || !status || !window.PublicKeyCredential || !navigator.credentials) { return; }
    button.hidden = false;
    button.addEventListener('click', function () {
      var form = button.form;
      var operator = form.elements.operator_id.value.trim();
      if (!operator) {
        status.textContent = 'オペレータIDを入力してから、生体認証でログインしてください。';
        form.elements.operator_id.focus();
        return;
      }
      ceremony(button, status, {
        touch: '認証器に触れてください…',
        cancelled: '生体認証が完了しませんでした。もう一度お試しください。',
        failed: '生体認証でログインできませんでした。',
        begin: function () {
          return post('/ui/login/biometric/challenges', { municipality: form.elements.municipality.value, operator_id: operator });
        },
        ask: function (begun) {
          return navigator.credentials.get(publicKeyOptions(begun.options, 'allowCredentials'));
        },
        finish: function (begun, credential) {
          var signed = answer(credential, ['authenticatorData', 'clientDataJSON', 'signature', 'userHandle']);
          return post('/ui/login/biometric', { challenge_id: begun.challenge_id, credential: signed });
        }
      });
    });
  });
}());
