// cardap clerk UI: biometric login (生体認証, WebAuthn) on the login form. The one script of the UI, served from the
// binary (Content-Security-Policy script-src 'self'); without it the password login works as before.
//
// The button asks cardap for a challenge for the chosen municipality and operator ID, lets the browser ask the
// authenticator (the operator touches the reader), and sends the answer back; cardap sets the session cookie and
// says where to go. Binary fields travel as base64url, as cardap's API writes and reads them.
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
      return response.json().then(function (json) { return { ok: response.ok, json: json }; });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
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
