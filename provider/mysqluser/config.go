package mysqluser

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/ajar-dev/ajar"
	"github.com/ajar-dev/ajar/internal/awsx"
	"github.com/ajar-dev/ajar/internal/dbx"
)

// Config is the config of one mysql-user target, for example
//
//	{"admin_dsn_env": "AJAR_MYSQL_ADMIN_DSN", "database": "app", "grant_roles": ["SELECT", "reporting"]}
type Config struct {
	// AdminDSNEnv names the environment variable holding ajar's own admin
	// connection (go-sql-driver form: USER:PASS@tcp(HOST:PORT)/). The DSN itself
	// is never in the policy file, in a handle or in a log.
	AdminDSNEnv string
	// Database is what the person connects to; privileges are granted on
	// DATABASE.*.
	Database string
	// GrantRoles are privileges (SELECT, INSERT, ...: granted ON database.*) or
	// role names (granted as roles; the first one is the login's default role).
	GrantRoles []string
	// MarkerDatabase holds ajar's table of the logins it created (default
	// "ajar"); ajar never drops a user that is not in it.
	MarkerDatabase string
	// Host and Port are what the person connects to; by default the admin DSN's.
	Host string
	Port int
	// LoginTemplate names the logins ajar creates (default "ajar_{request}"):
	// see dbx.CheckTemplate.
	LoginTemplate string
	// ExpiryEvent sets a target-side lock: an event (the server's event
	// scheduler must be ON) that locks the account at the grant's end even if
	// ajar is down then.
	ExpiryEvent bool

	privileges, roles []string
}

var configFields = []string{"admin_dsn_env", "database", "grant_roles", "marker_database", "host", "port", "login_template", "expiry_event"}

// Privileges are the database-level privileges grant_roles may name.
var Privileges = []string{
	"ALTER", "ALTER ROUTINE", "CREATE", "CREATE ROUTINE", "CREATE TEMPORARY TABLES", "CREATE VIEW", "DELETE",
	"DELETE HISTORY", "DROP", "EVENT", "EXECUTE", "INDEX", "INSERT", "LOCK TABLES", "REFERENCES", "SELECT",
	"SHOW VIEW", "TRIGGER", "UPDATE",
}

// CheckConfig returns every problem with a mysql-user target config, with field
// paths relative to the config. It does not read the environment: New does.
func CheckConfig(raw json.RawMessage) ajar.Problems {
	_, probs := decodeConfig(raw)
	return probs
}

func decodeConfig(raw json.RawMessage) (Config, ajar.Problems) {
	f := awsx.DecodeFields(raw, configFields...)
	cfg := Config{
		AdminDSNEnv:    f.String("admin_dsn_env", true),
		Database:       f.String("database", true),
		GrantRoles:     f.Strings("grant_roles"),
		MarkerDatabase: f.String("marker_database", false),
		Host:           f.String("host", false),
	}
	cfg.Port, _ = f.Int("port")
	cfg.LoginTemplate = f.String("login_template", false)
	if cfg.LoginTemplate == "" {
		cfg.LoginTemplate = dbx.DefaultTemplate
	} else if msg := dbx.CheckTemplate(cfg.LoginTemplate); msg != "" {
		f.Add("login_template", "%q %s", cfg.LoginTemplate, msg)
	}
	cfg.ExpiryEvent = f.Bool("expiry_event")
	if cfg.MarkerDatabase == "" {
		cfg.MarkerDatabase = "ajar"
	}
	if cfg.AdminDSNEnv != "" && !dbx.ValidEnvName(cfg.AdminDSNEnv) {
		f.Add("admin_dsn_env", "%q is not an environment variable name", cfg.AdminDSNEnv)
	}
	for _, k := range []string{"database", "marker_database"} {
		v := map[string]string{"database": cfg.Database, "marker_database": cfg.MarkerDatabase}[k]
		if v != "" && !dbx.ValidIdent(v) {
			f.Add(k, "%q is not a database name ajar accepts (letters, digits, _, $ and -, starting with a letter or _)", v)
		}
	}
	if cfg.Database != "" && cfg.Database == cfg.MarkerDatabase {
		f.Add("marker_database", "must not be the database the logins are for")
	}
	if !f.Has("grant_roles") {
		f.Add("grant_roles", "required: the privileges or roles the login gets")
	} else if len(cfg.GrantRoles) == 0 {
		f.Add("grant_roles", "must name at least one privilege or role")
	}
	seen := map[string]bool{}
	for i, r := range cfg.GrantRoles {
		field := fmt.Sprintf("grant_roles[%d]", i)
		up := strings.ToUpper(strings.Join(strings.Fields(r), " "))
		switch {
		case seen[up]:
			f.Add(field, "%q is listed twice", r)
		case slices.Contains(Privileges, up):
			cfg.privileges = append(cfg.privileges, up)
		case up == "ALL" || up == "ALL PRIVILEGES" || up == "GRANT OPTION" || up == "PROXY":
			f.Add(field, "%q is not granted by ajar: name the privileges (%s)", r, strings.Join(Privileges, ", "))
		case !dbx.ValidIdent(r) || strings.HasPrefix(strings.ToLower(r), dbx.Prefix):
			f.Add(field, "%q is neither a privilege (%s) nor a role name ajar accepts", r, strings.Join(Privileges, ", "))
		default:
			cfg.roles = append(cfg.roles, r)
		}
		seen[up] = true
	}
	if f.Has("port") && (cfg.Port < 1 || cfg.Port > 65535) {
		f.Add("port", "must be from 1 to 65535, not %d", cfg.Port)
	}
	return cfg, f.Problems()
}
