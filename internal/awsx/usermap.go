package awsx

import (
	"slices"
	"strings"
)

// UserMap maps an ajar user id (email-like) to a name in AWS: an IAM user name, or
// an Identity Center user name or email. Names lists exceptions by ajar user id;
// everyone else gets Template with {user} (the whole id), {local} (the part
// before "@") and {domain} (the part after) filled in.
type UserMap struct {
	Template string            `json:"template"`
	Names    map[string]string `json:"names,omitempty"`
}

// placeholders are the names a template may use.
var placeholders = []string{"{user}", "{local}", "{domain}"}

// UserMap reads a template field and a names field (either may be absent; the
// template then defaults to def) and checks the template's placeholders.
func (f *Fields) UserMap(templateField, namesField, def string) UserMap {
	m := UserMap{Template: f.String(templateField, false), Names: f.StringMap(namesField)}
	if !f.Has(templateField) {
		m.Template = def
	}
	if f.Has(templateField) {
		switch {
		case strings.TrimSpace(m.Template) == "":
			f.Add(templateField, "must not be empty (the default is %q)", def)
		default:
			for _, p := range placeholder.FindAllString(m.Template, -1) {
				if !slices.Contains(placeholders, p) {
					f.Add(templateField, "unknown placeholder %s (known: %s)", p, strings.Join(placeholders, ", "))
				}
			}
		}
	}
	for k, v := range m.Names {
		if strings.TrimSpace(v) == "" {
			f.Add(namesField+"."+k, "must not be empty")
		}
	}
	return m
}

// Resolve returns the AWS-side name of an ajar user.
func (m UserMap) Resolve(user string) string {
	if n, ok := m.Names[user]; ok {
		return n
	}
	local, domain, _ := strings.Cut(user, "@")
	return strings.NewReplacer("{user}", user, "{local}", local, "{domain}", domain).Replace(m.Template)
}
