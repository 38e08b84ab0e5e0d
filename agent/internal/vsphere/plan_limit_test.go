package vsphere

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

func TestDefaultLimitForVersion(t *testing.T) {
	for v, want := range map[string]int{
		"5.5.0": 64, "6.0.0": 64, "6.5.0": 256, "6.7.0": 256, "7.0.3": 256, "8.0.2": 256, "": 64, "x.y": 64,
	} {
		if got := defaultLimitForVersion(v); got != want {
			t.Errorf("defaultLimitForVersion(%q) = %d, want %d", v, got, want)
		}
	}
}

func TestIsQueryTooLarge(t *testing.T) {
	tooLarge := soap.WrapVimFault(&types.InvalidArgument{InvalidProperty: "querySpec.size"})
	if !isQueryTooLarge(tooLarge) {
		t.Error("InvalidArgument on querySpec not recognised")
	}
	if !isQueryTooLarge(fmt.Errorf("perf: %w", tooLarge)) {
		t.Error("wrapped fault not recognised")
	}
	for _, err := range []error{
		soap.WrapVimFault(&types.InvalidArgument{InvalidProperty: "entity"}),
		soap.WrapVimFault(&types.NotAuthenticated{}),
		errors.New("querySpec"),
	} {
		if isQueryTooLarge(err) {
			t.Errorf("%v taken for a too-large query", err)
		}
	}
}

func TestLowerLimitNeverRaises(t *testing.T) {
	var st connState
	st.limit.Store(256)
	if !st.lowerLimit(128) || st.queryLimit() != 128 {
		t.Fatalf("limit = %d after lowering to 128", st.queryLimit())
	}
	if st.lowerLimit(200) || st.queryLimit() != 128 {
		t.Fatalf("limit raised to %d", st.queryLimit())
	}
}
