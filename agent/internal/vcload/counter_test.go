package vcload

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMethodOf(t *testing.T) {
	for _, c := range []struct {
		verb, path, query, body, want string
	}{
		{"POST", "/sdk", "", `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><QueryPerf xmlns="urn:vim25"><_this type="PerformanceManager">PerfMgr</_this></QueryPerf></soapenv:Body></soapenv:Envelope>`, "QueryPerf"},
		{"POST", "/sdk", "", `<Envelope><Header><Body>x</Body></Header><Body>
  <vim:WaitForUpdatesEx xmlns:vim="urn:vim25"/></Body></Envelope>`, "WaitForUpdatesEx"},
		{"POST", "/sdk", "", `<s:Envelope><s:Body/></s:Envelope>`, "REST POST /sdk"},
		{"GET", "/rest/com/vmware/cis/tagging/tag/id:urn:vmomi:InventoryServiceTag:1", "", "", "REST GET /rest/com/vmware/cis/tagging/tag/{id}"},
		{"POST", "/rest/com/vmware/cis/tagging/tag-association", "~action=list-attached-tags-on-objects", `{"object_ids":[]}`, "REST POST /rest/com/vmware/cis/tagging/tag-association?action=list-attached-tags-on-objects"},
		{"GET", "/api/cis/tagging/category", "", "", "REST GET /api/cis/tagging/category"},
	} {
		if got := MethodOf(c.verb, c.path, c.query, []byte(c.body)); got != c.want {
			t.Errorf("MethodOf(%s %s?%s, %.40q) = %q, want %q", c.verb, c.path, c.query, c.body, got, c.want)
		}
	}
}

// FuzzMethodOf: any request body names some method without panicking.
func FuzzMethodOf(f *testing.F) {
	for _, s := range []string{
		`<soapenv:Envelope><soapenv:Body><QueryPerf/></soapenv:Body></soapenv:Envelope>`,
		`<Body>`, `<Body >`, `:Body><`, `<Body></Body>`, `Body`, `<a:Body x="1"><b:c`, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if m := MethodOf("POST", "/sdk", "", []byte(body)); m == "" {
			t.Fatalf("empty method for %q", body)
		}
	})
}

// The transport counts calls and both directions' bytes per method and
// hands the request body on unchanged.
func TestCounterTransport(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
		_, _ = io.WriteString(w, strings.Repeat("x", 1000))
	}))
	defer srv.Close()
	var c Counter
	client := &http.Client{Transport: c.Wrap(nil)}
	body := `<Envelope><Body><RetrievePropertiesEx/></Body></Envelope>`
	for range 3 {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/sdk", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	if got != body {
		t.Fatalf("server received %q, want %q", got, body)
	}
	st := c.Snapshot()
	want := Stat{Calls: 3, ReqBytes: 3 * int64(len(body)), RespBytes: 3000}
	if st["RetrievePropertiesEx"] != want || len(st) != 1 {
		t.Fatalf("counted %+v, want RetrievePropertiesEx %+v", st, want)
	}
	if d := st.Sub(Stats{"RetrievePropertiesEx": {Calls: 1, ReqBytes: 10, RespBytes: 1000}}); d["RetrievePropertiesEx"] != (Stat{Calls: 2, ReqBytes: want.ReqBytes - 10, RespBytes: 2000}) {
		t.Errorf("Sub = %+v", d)
	}
	if tot := st.Total(func(m string) bool { return m != "QueryPerf" }); tot != want {
		t.Errorf("Total = %+v", tot)
	}
}
