package awssg

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		config string
		fields []string
	}{
		{`{"region":"us-east-1","group_id":"sg-0123456789abcdef0","port":22}`, nil},
		{`{"region":"eu-west-2","group_id":"sg-01234567","protocol":"udp","from_port":60000,"to_port":61000}`, nil},
		{`{}`, []string{"region", "group_id", "port"}},
		{`null`, []string{"region", "group_id", "port"}},
		{`[]`, []string{""}},
		{`{"region":"US East","group_id":"sg-xyz","protocol":"icmp","port":70000,"Port":22}`,
			[]string{"Port", "region", "group_id", "protocol", "port"}},
		{`{"region":"us-east-1","group_id":"sg-01234567","port":22,"from_port":1}`, []string{"port"}},
		{`{"region":"us-east-1","group_id":"sg-01234567","to_port":22}`, []string{"from_port"}},
		{`{"region":"us-east-1","group_id":"sg-01234567","from_port":30,"to_port":20}`, []string{"to_port"}},
		{`{"region":"us-east-1","group_id":"sg-01234567","port":"22"}`, []string{"port"}},
		{`{"region":1,"group_id":"sg-01234567","port":0}`, []string{"region", "port"}},
	} {
		var fields []string
		for _, p := range CheckConfig(json.RawMessage(tc.config)) {
			fields = append(fields, p.Field)
		}
		if !slices.Equal(fields, tc.fields) {
			t.Errorf("%s: fields %q, want %q (%v)", tc.config, fields, tc.fields, CheckConfig(json.RawMessage(tc.config)))
		}
	}
}
