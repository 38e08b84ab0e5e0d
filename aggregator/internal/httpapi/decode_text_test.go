package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTextErrors(t *testing.T) {
	for _, c := range []struct {
		body string
		want string // "path reason; path reason"
	}{
		{`{"name":"alice","n":1.5e3,"ok":true,"x":null,"list":["a","b"]}`, ""},
		{`{"name":"a\u0000b"}`, "name nul"},
		{"{\"name\":\"a\x00b\"}", "name nul"},
		{"{\"name\":\"\xff\"}", "name invalid_utf8"},
		{`{"name":"\ud800"}`, "name lone_surrogate"},
		{`{"name":"\udc00x"}`, "name lone_surrogate"},
		{`{"name":"\ud800\u0041"}`, "name lone_surrogate"},
		{`{"name":"\ud83d\ude00 ok"}`, ""}, // a surrogate pair is a character
		{`{"name":"\\u0000"}`, ""},         // an escaped backslash, then text
		{`{"name":"\u0041\u00e9\u65e5"}`, ""},
		{`{"a":{"b":[1,{"c":"\u0000"}]}}`, "a.b[1].c nul"},
		{`{"roles":["ok","\u0000","\ud800"]}`, "roles[1] nul; roles[2] lone_surrogate"},
		{`{"k\u0000":"v"}`, `k\x00 nul`},
		{`"\u0000"`, "$ nul"},
		{`["\u0000"]`, "[0] nul"},
		// Not JSON: left to the decoder, which refuses it with a 400.
		{`{"name":"\u0000"`, ""},
		{"{\"name\":\"a\tb\\u0000\"}", ""},
		{`{"name":"\x"}`, ""},
		{`{"name":"\u12"}`, ""},
		{strings.Repeat("[", 20000) + `"\u0000"` + strings.Repeat("]", 20000), ""},
	} {
		var got []string
		for _, f := range textErrors([]byte(c.body)) {
			if f.Code != FieldInvalidText {
				t.Errorf("%.60q: code %s", c.body, f.Code)
			}
			got = append(got, fmt.Sprintf("%s %v", f.Field, f.Params["reason"]))
		}
		if g := strings.Join(got, "; "); g != c.want {
			t.Errorf("textErrors(%.60q) = %q; want %q", c.body, g, c.want)
		}
	}
	many := `{"a":[` + strings.Repeat(`"\u0000",`, 100) + `"x"]}`
	if n := len(textErrors([]byte(many))); n != maxTextErrors {
		t.Errorf("errors of a body with 100 bad strings = %d; want %d", n, maxTextErrors)
	}
}

func TestJSONStringMember(t *testing.T) {
	for _, c := range []struct {
		body, want string
		found      bool
	}{
		{`{"username":"alice","password":"x"}`, "alice", true},
		{`{"username":"ad\u0000min"}`, "ad\x00min", true},
		{"{\"username\":\"\xff\xfe\"}", "\xff\xfe", true},
		{`{"username":"a\ud800b"}`, `a\ud800b`, true},
		{`{"nested":{"username":"x"},"password":"p"}`, "", false},
		{`{"username":42}`, "", false},
		{`not json`, "", false},
	} {
		got, found := jsonStringMember([]byte(c.body), "username")
		if got != c.want || found != c.found {
			t.Errorf("jsonStringMember(%q) = %q, %v; want %q, %v", c.body, got, found, c.want, c.found)
		}
	}
}

// FuzzJSONText checks the scanner behind decodeJSON's text check against
// encoding/json: it accepts every document encoding/json accepts, and when
// it finds nothing to refuse, what encoding/json decodes carries no NUL and
// no replacement character the body did not spell out.
func FuzzJSONText(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `{"a":"\u0000"}`, "{\"a\":\"\xff\"}", `["\ud800\udc00","\udfff"]`, `{"a":[1,-2.5e+3,true,null,{}]}`,
		`"\\u0000"`, `{"\ufffd":"\uFFFD"}`, "\"\xef\xbf\xbd\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s := &jsonTextScanner{data: body}
		ok := s.value("")
		s.ws()
		if json.Valid(body) && (!ok || s.pos != len(body)) {
			t.Fatalf("valid JSON %q not accepted (ok %v, stopped at %d of %d)", body, ok, s.pos, len(body))
		}
		if !json.Valid(body) || len(s.errs) > 0 {
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("%q: invalid UTF-8 not reported", body)
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber() // 1E1000 is JSON, not a float64
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		spelled := strings.Count(string(body), "\ufffd") + strings.Count(strings.ToLower(string(body)), `\ufffd`)
		var walk func(any)
		found := 0
		check := func(s string) {
			if strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("%q: NUL not reported", body)
			}
			found += strings.Count(s, "\ufffd")
		}
		walk = func(v any) {
			switch x := v.(type) {
			case string:
				check(x)
			case []any:
				for _, e := range x {
					walk(e)
				}
			case map[string]any:
				for k, e := range x {
					check(k)
					walk(e)
				}
			}
		}
		walk(v)
		if found > spelled {
			t.Fatalf("%q: encoding/json replaced text the scanner let through", body)
		}
	})
}
