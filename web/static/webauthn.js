// ajar security keys (WebAuthn): register a key on the Security keys page, and
// verify with one before approving a step that requires MFA. Buttons carry
// data-webauthn="register" or "verify"; the JSON calls carry the page's CSRF
// token in a header. No inline script: the Content-Security-Policy allows this
// site's files only.
(function () {
  "use strict";

  function b64u(buf) {
    var s = "", bytes = new Uint8Array(buf);
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function unb64u(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function post(url, csrf, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error((j.error && j.error.message) || ("server answered " + r.status));
        return j;
      });
    });
  }

  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = unb64u(pk.challenge);
    pk.user.id = unb64u(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
    return o;
  }
  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = unb64u(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
    return o;
  }
  function attestation(c) {
    return {
      id: c.id, rawId: b64u(c.rawId), type: c.type,
      response: {
        clientDataJSON: b64u(c.response.clientDataJSON),
        attestationObject: b64u(c.response.attestationObject),
        transports: c.response.getTransports ? c.response.getTransports() : []
      }
    };
  }
  function assertion(c) {
    return {
      id: c.id, rawId: b64u(c.rawId), type: c.type,
      response: {
        clientDataJSON: b64u(c.response.clientDataJSON),
        authenticatorData: b64u(c.response.authenticatorData),
        signature: b64u(c.response.signature),
        userHandle: c.response.userHandle ? b64u(c.response.userHandle) : null
      }
    };
  }

  function status(btn, text, error) {
    var out = document.getElementById(btn.getAttribute("aria-describedby") || "");
    if (out) {
      out.textContent = text;
      out.className = error ? "error" : "hint";
    }
  }

  function run(btn) {
    var csrf = btn.getAttribute("data-csrf");
    var kind = btn.getAttribute("data-webauthn");
    if (!window.PublicKeyCredential) {
      status(btn, "This browser cannot use security keys.", true);
      return;
    }
    btn.disabled = true;
    status(btn, "Touch your security key…", false);
    var done;
    if (kind === "register") {
      var nameInput = document.getElementById("key-name");
      done = post("/keys/register/begin", csrf).then(function (o) {
        return navigator.credentials.create(creationOptions(o));
      }).then(function (c) {
        return post("/keys/register/finish", csrf, { name: nameInput ? nameInput.value : "", credential: attestation(c) });
      });
    } else {
      done = post("/mfa/begin", csrf).then(function (o) {
        return navigator.credentials.get(requestOptions(o));
      }).then(function (c) {
        return post("/mfa/finish", csrf, { credential: assertion(c) });
      });
    }
    done.then(function () {
      status(btn, kind === "register" ? "Key added." : "Verified.", false);
      window.location.reload();
    }).catch(function (e) {
      btn.disabled = false;
      status(btn, e && e.message ? e.message : "The security key did not answer.", true);
    });
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest ? ev.target.closest("[data-webauthn]") : null;
    if (btn) {
      ev.preventDefault();
      run(btn);
    }
  });
})();
