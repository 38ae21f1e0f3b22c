package oidctest

import (
	"html/template"
	"net/http"

	"github.com/zitadel/oidc/v3/pkg/op"
)

var loginForm = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><title>Test OP sign-in</title></head><body>
<form method="post" action="/login">
<input type="hidden" name="authRequestID" value="{{.ID}}">
<label>Email <input name="email" id="email" autocomplete="username"></label>
<button type="submit" id="signin">Sign in</button>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
</form></body></html>`))

// login is the OP's login step. With LoginAs set it signs that user in at
// once; otherwise it shows a one-field form (an email or subject, no
// password) and signs in whoever is named there.
func (p *OP) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.FormValue("authRequestID")
	p.store.mu.Lock()
	who := p.store.loginAs
	if r.Method == http.MethodPost {
		who = r.PostFormValue("email")
	}
	var err error
	if who != "" {
		err = p.store.completeLogin(id, who)
	}
	p.store.mu.Unlock()
	if who == "" || err != nil {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		data := struct{ ID, Error string }{ID: id}
		if err != nil {
			data.Error = err.Error()
			w.WriteHeader(http.StatusForbidden)
		}
		_ = loginForm.Execute(w, data)
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(p.provider)(r.Context(), id), http.StatusFound)
}
