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

  function requestOptions(options) {
    var publicKey = Object.assign({}, options.publicKey);
    publicKey.challenge = toBuffer(publicKey.challenge);
    if (publicKey.allowCredentials) {
      publicKey.allowCredentials = publicKey.allowCredentials.map(function (c) {
        return Object.assign({}, c, { id: toBuffer(c.id) });
      });
    }
    return { publicKey: publicKey };
  }

  function creationOptions(options) {
    var publicKey = Object.assign({}, options.publicKey);
    publicKey.challenge = toBuffer(publicKey.challenge);
    publicKey.user = Object.assign({}, publicKey.user, { id: toBuffer(publicKey.user.id) });
    if (publicKey.excludeCredentials) {
      publicKey.excludeCredentials = publicKey.excludeCredentials.map(function (c) {
        return Object.assign({}, c, { id: toBuffer(c.id) });
      });
    }
    return { publicKey: publicKey };
  }

  function attestation(credential) {
    var r = credential.response;
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: {
        attestationObject: toText(r.attestationObject),
        clientDataJSON: toText(r.clientDataJSON)
      },
      extensions: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {}
    };
  }

  function assertion(credential) {
    var r = credential.response;
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: {
        authenticatorData: toText(r.authenticatorData),
        clientDataJSON: toText(r.clientDataJSON),
        signature: toText(r.signature),
        userHandle: r.userHandle ? toText(r.userHandle) : null
      },
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
      button.disabled = true;
      status.textContent = '操作者本人が認証器に触れてください…';
      post(form.action + '/registrations', Object.assign({ label: label }, keys))
        .then(function (begun) {
          if (!begun.ok) { throw new Error(begun.json.message); }
          var finish = form.action + '/registrations/' + encodeURIComponent(begun.json.registration_id) + '/finish';
          return navigator.credentials.create(creationOptions(begun.json.options)).then(function (credential) {
            return post(finish, Object.assign({ credential: attestation(credential) }, keys));
          }, function () {
            throw new Error('認証器での登録が完了しませんでした。もう一度お試しください。');
          });
        })
        .then(function (finished) {
          if (!finished.ok) { throw new Error(finished.json.message); }
          window.location.assign(finished.json.location);
        })
        .catch(function (error) {
          status.textContent = error.message || '生体情報を登録できませんでした。';
          button.disabled = false;
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
      button.disabled = true;
      status.textContent = '認証器に触れてください…';
      post('/ui/login/biometric/challenges', { municipality: form.elements.municipality.value, operator_id: operator })
        .then(function (begun) {
          if (!begun.ok) { throw new Error(begun.json.message); }
          return navigator.credentials.get(requestOptions(begun.json.options)).then(function (credential) {
            return post('/ui/login/biometric', { challenge_id: begun.json.challenge_id, credential: assertion(credential) });
          }, function () {
            throw new Error('生体認証が完了しませんでした。もう一度お試しください。');
          });
        })
        .then(function (finished) {
          if (!finished.ok) { throw new Error(finished.json.message); }
          window.location.assign(finished.json.location);
        })
        .catch(function (error) {
          status.textContent = error.message || '生体認証でログインできませんでした。';
          button.disabled = false;
        });
    });
  });
}());
