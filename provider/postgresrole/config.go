package postgresrole

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/internal/dbx"
)

// Config is the config of one postgres-role target, for example
//
//	{"admin_dsn_env": "AJAR_PG_ADMIN_DSN", "database": "app", "grant_roles": ["readonly"]}
type Config struct {
	// AdminDSNEnv names the environment variable holding ajar's own admin
	// connection (a libpq URL or key=value string). The DSN itself is never in
	// the policy file, in a handle or in a log.
	AdminDSNEnv string
	// Database is what the person connects to; ajar's admin connection uses it
	// too (REASSIGN OWNED and DROP OWNED act on one database).
	Database string
	// GrantRoles are the existing roles the login becomes a member of.
	GrantRoles []string
	// ReassignTo, if set, receives what the login owns when it is dropped
	// (REASSIGN OWNED BY ... TO); otherwise it is dropped (DROP OWNED BY).
	ReassignTo string
	// Host and Port are what the person connects to; by default the admin
	// DSN's.
	Host string
	Port int
	// LoginTemplate names the logins ajar creates (default "ajar_{request}"):
	// see dbx.CheckTemplate.
	LoginTemplate string
	// Existing, when set, switches to the membership mode: no login is
	// created; grant_roles are granted to the requester's own existing role,
	// named by existing_role_template ({user}, {local}, {domain}) or
	// existing_roles (by ajar user id), and revoked at the end.
	Existing *awsx.UserMap
}

var configFields = []string{"admin_dsn_env", "database", "grant_roles", "reassign_to", "host", "port", "login_template",
	"existing_role_template", "existing_roles"}

// CheckConfig returns every problem with a postgres-role target config, with
// field paths relative to the config ("grant_roles[1]"). It does not read the
// environment: New does.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decodeConfig(raw)
	return probs
}

func decodeConfig(raw json.RawMessage) (Config, ajar.Problems) {
	f := awsx.DecodeFields(raw, configFields...)
	cfg := Config{
		AdminDSNEnv: f.String("admin_dsn_env", true),
		Database:    f.String("database", true),
		GrantRoles:  f.Strings("grant_roles"),
		ReassignTo:  f.String("reassign_to", false),
		Host:        f.String("host", false),
	}
	cfg.Port, _ = f.Int("port")
	cfg.LoginTemplate = f.String("login_template", false)
	if cfg.LoginTemplate == "" {
		cfg.LoginTemplate = dbx.DefaultTemplate
	} else if msg := dbx.CheckTemplate(cfg.LoginTemplate); msg != "" {
		f.Add("login_template", "%q %s", cfg.LoginTemplate, msg)
	}
	if f.Has("existing_role_template") || f.Has("existing_roles") {
		m := f.UserMap("existing_role_template", "existing_roles", "{local}")
		if !f.Has("existing_role_template") {
			m.Template = "" // only the users listed
		}
		cfg.Existing = &m
		if cfg.ReassignTo != "" {
			f.Add("reassign_to", "is for the logins ajar creates; with existing_role_template or existing_roles ajar drops nothing")
		}
	}
	if cfg.AdminDSNEnv != "" && !dbx.ValidEnvName(cfg.AdminDSNEnv) {
		f.Add("admin_dsn_env", "%q is not an environment variable name", cfg.AdminDSNEnv)
	}
	if cfg.Database != "" && !dbx.ValidIdent(cfg.Database) {
		f.Add("database", "%q is not a database name ajar accepts (letters, digits, _, $ and -, starting with a letter or _)", cfg.Database)
	}
	if !f.Has("grant_roles") {
		f.Add("grant_roles", "required: the roles the login becomes a member of")
	} else if len(cfg.GrantRoles) == 0 {
		f.Add("grant_roles", "must name at least one role")
	}
	for i, r := range cfg.GrantRoles {
		switch {
		case !dbx.ValidIdent(r):
			f.Add(fmt.Sprintf("grant_roles[%d]", i), "%q is not a role name ajar accepts", r)
		case isReserved(r):
			f.Add(fmt.Sprintf("grant_roles[%d]", i), "%q is reserved: ajar grants neither its own logins nor predefined pg_ roles", r)
		case slices.Index(cfg.GrantRoles, r) < i:
			f.Add(fmt.Sprintf("grant_roles[%d]", i), "%q is listed twice", r)
		}
	}
	if cfg.ReassignTo != "" && (!dbx.ValidIdent(cfg.ReassignTo) || isReserved(cfg.ReassignTo)) {
		f.Add("reassign_to", "%q is not a role name ajar accepts", cfg.ReassignTo)
	}
	if f.Has("port") && (cfg.Port < 1 || cfg.Port > 65535) {
		f.Add("port", "must be from 1 to 65535, not %d", cfg.Port)
	}
	return cfg, f.Problems()
}

// isReserved reports names ajar never grants: its own logins, PostgreSQL's
// predefined roles (pg_read_server_files and the like) and PUBLIC.
func isReserved(role string) bool {
	l := strings.ToLower(role)
	return strings.HasPrefix(l, dbx.Prefix) || strings.HasPrefix(l, "pg_") || l == "public"
}
