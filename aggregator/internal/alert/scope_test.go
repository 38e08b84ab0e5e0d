package alert

import "testing"

// TestRedactedReason: the reasons the engine writes lose the parent's or
// the window's name, and keep the kind of cause.
func TestRedactedReason(t *testing.T) {
	for in, want := range map[string]string{
		"host esx-01 is notResponding":               "its host is notResponding",
		"host esx is 01 is disconnected":             "its host is disconnected",
		"host esx-01 is in maintenance mode":         "its host is in maintenance mode",
		"datastore ds 1 is inaccessible":             "a datastore it uses is inaccessible",
		"vCenter 4c4c4544-0042 is unreachable":       "its vCenter is unreachable",
		"maintenance window patch tuesday (dc-west)": "a maintenance window",
		"something new":                              "a parent's state",
		"":                                           "",
	} {
		if got := redactedReason(in); got != want {
			t.Errorf("redactedReason(%q) = %q, want %q", in, got, want)
		}
	}
}
