package main

import (
	"fmt"
	"log/slog"

	"github.com/ajar-dev/ajar/notify"
	"github.com/ajar-dev/ajar/policy"
)

// sinksFromPolicy builds the notification sinks the policy's notifications
// section names, reading URLs and secrets from the environment through getenv.
// It fails, naming the entry, when a variable is unset or holds an unusable
// URL: a sink that can never deliver must stop start-up, not drop alerts. It
// lives in the composition root so that notify does not import policy.
func sinksFromPolicy(p *policy.Policy, getenv func(string) string, log *slog.Logger) ([]notify.Sink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := notify.NewHTTPClient()
	var out []notify.Sink
	for i, n := range p.Notifications() {
		f := fmt.Sprintf("notifications[%d] (%s)", i, n.Name)
		url := n.URL
		if n.URLEnv != "" {
			url = getenv(n.URLEnv)
			if url == "" {
				return nil, fmt.Errorf("%s: environment variable %s (url_env) is not set", f, n.URLEnv)
			}
			if msg := policy.CheckSinkURL(url); msg != "" {
				return nil, fmt.Errorf("%s: the URL in %s %s", f, n.URLEnv, msg)
			}
		}
		switch n.Type {
		case policy.SinkWebhook:
			secret := getenv(n.SecretEnv)
			if secret == "" {
				return nil, fmt.Errorf("%s: environment variable %s (secret_env) is not set", f, n.SecretEnv)
			}
			out = append(out, notify.NewWebhook(n.Name, n.Events, url, []byte(secret), client))
		case policy.SinkSlack:
			out = append(out, notify.NewSlack(n.Name, n.Events, url, client))
		case policy.SinkLog:
			out = append(out, notify.NewLog(n.Name, n.Events, log))
		default:
			return nil, fmt.Errorf("%s: unknown type %q", f, n.Type) // policy validation prevents this
		}
	}
	return out, nil
}
