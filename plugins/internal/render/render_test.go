package render

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLookup(t *testing.T) {
	for tag, want := range map[string]string{
		"en": "en", "": "en", "fr-FR": "en", "zh-CN": "zh-CN", "zh-Hans": "zh-CN", "zh_TW": "zh-CN",
		"ja": "ja-JP", "ja-JP": "ja-JP",
	} {
		if got := Lookup(tag).Tag; got != want {
			t.Errorf("Lookup(%q) = %s, want %s", tag, got, want)
		}
	}
	// Every locale has every key English has.
	for tag, msgs := range catalogs {
		for k := range catalogs["en"] {
			if msgs[k] == "" {
				t.Errorf("%s lacks %q", tag, k)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	s := strings.Repeat("告警", 100) // 3 bytes a rune
	got := Truncate(s, 100)
	if len(got) > 100 || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("Truncate: %d bytes, valid %v: %q", len(got), utf8.ValidString(got), got)
	}
	if Truncate("short", 100) != "short" {
		t.Fatal("short text was cut")
	}
}
