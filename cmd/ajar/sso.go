package main

import (
	"github.com/ajar-dev/ajar/api"
	"github.com/ajar-dev/ajar/identity/login"
	"github.com/ajar-dev/ajar/identity/sso"
	"github.com/ajar-dev/ajar/web"
)

// webLogin, apiLogin and webMFA keep a nil pointer from becoming a non-nil
// interface (which would turn the pages on without single sign-on).
func webLogin(l *login.Service) web.Login {
	if l == nil {
		return nil
	}
	return l
}

func apiLogin(l *login.Service) api.Login {
	if l == nil {
		return nil
	}
	return l
}

func webMFA(m *sso.Keys) web.MFA {
	if m == nil {
		return nil
	}
	return m
}
