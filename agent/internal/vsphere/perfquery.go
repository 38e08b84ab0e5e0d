package vsphere

// A cheaper QueryPerf. govmomi decodes every SOAP response with a
// reflection-driven XML decoder, which for QueryPerf (thousands of small
// <value> elements per response) was over half of the agent's CPU. queryPerf
// sends the same request over the session's own soap.Client (same URL,
// cookies, SOAPAction, header and User-Agent) and reads the response with
// parseQueryPerfResponse, a byte scanner that knows only the QueryPerf
// response shape:
//
//	Envelope/Body/QueryPerfResponse/returnval[xsi:type=PerfEntityMetric]
//	    entity(@type, @serverGuid, text)
//	    sampleInfo*(timestamp, interval)
//	    value*[xsi:type=PerfMetricIntSeries](id(counterId, instance), value*)
//	Envelope/Body/QueryPerfResponse/returnval[xsi:type=PerfEntityMetricCSV]
//	    entity(@type, @serverGuid, text)
//	    sampleInfoCSV?
//	    value*(id(counterId, instance), value?)
//
// The collector asks for the CSV format (see perfcsv.go): queryPerf turns
// PerfEntityMetricCSV results into PerfEntityMetric ones, whichever
// decoder read them.
//
// Anything else — a non-200 status, a SOAP Fault, an unexpected type or
// construct (CDATA, DOCTYPE, unknown entities), malformed XML, a body over
// maxQueryPerfBody — makes queryPerf issue the query again through
// methods.QueryPerf, so errors (NotAuthenticated, InvalidArgument "too
// large", ...) and odd responses are exactly what govmomi makes of them.
// Transport errors are returned as they are; govmomi returns them unchanged
// too.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"

	"github.com/vmpulse/vmpulse/protocol"
)

// fastQueryPerf selects the raw request and specialised decoder; false
// makes queryPerf use methods.QueryPerf only (tests compare the two).
var fastQueryPerf = true

// maxQueryPerfBody bounds the response body the fast path reads; larger
// responses go through govmomi.
const maxQueryPerfBody = protocol.MaxDecodedPayload

// errQueryPerfFallback tells queryPerf to re-issue the query via govmomi.
var errQueryPerfFallback = errors.New("vsphere: QueryPerf response needs the generic decoder")

// queryPerfFallbacks counts queries the fast path handed to govmomi.
var queryPerfFallbacks atomic.Int64

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// withBody reads res's body into a pooled buffer and hands it to f; the
// bytes are valid only during f. A body over limit (limit < 0: none)
// returns tooLarge without calling f.
func withBody(res *http.Response, limit int64, tooLarge error, f func([]byte) error) error {
	buf := bodyPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 16<<20 {
			buf.Reset()
			bodyPool.Put(buf)
		}
	}()
	buf.Reset()
	r := io.Reader(res.Body)
	if limit >= 0 {
		r = io.LimitReader(res.Body, limit+1)
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	if limit >= 0 && int64(buf.Len()) > limit {
		return tooLarge
	}
	return f(buf.Bytes())
}

// queryPerf runs req and returns its Returnval.
func queryPerf(ctx context.Context, vc *vim25.Client, req *types.QueryPerf) ([]types.BasePerfEntityMetricBase, error) {
	if fastQueryPerf {
		var ret []types.BasePerfEntityMetricBase
		err := postQueryPerf(ctx, vc, req, func(res *http.Response) error {
			if res.StatusCode != http.StatusOK {
				return errQueryPerfFallback
			}
			return withBody(res, maxQueryPerfBody, errQueryPerfFallback, func(body []byte) error {
				var err error
				ret, err = parseQueryPerfResponse(body)
				return err
			})
		})
		if err == nil {
			return fromCSV(ret)
		}
		if !errors.Is(err, errQueryPerfFallback) {
			return nil, err
		}
		queryPerfFallbacks.Add(1)
	}
	res, err := methods.QueryPerf(ctx, vc, req)
	if err != nil || res == nil {
		return nil, err
	}
	return fromCSV(res.Returnval)
}

// postQueryPerf sends req the way soap.Client.RoundTrip does and hands
// the response to f. The request body is written by appendQueryPerf rather
// than govmomi's reflection-driven marshaller (a tenth of the agent's CPU
// at 5,000 VMs); tests hold it byte-identical to xml.Marshal's output.
func postQueryPerf(ctx context.Context, vc *vim25.Client, req *types.QueryPerf, f func(*http.Response) error) error {
	return postSOAP(ctx, vc, func(h soap.Header) ([]byte, error) {
		return soapRequest(h, func(b []byte) []byte { return appendQueryPerf(b, req) })
	}, f)
}

// postSOAP posts the request document doc returns for the session's
// header (cookie, operation ID) with the Content-Type and SOAPAction
// soap.Client.RoundTrip would send, and hands the response to f. It does
// not honour headers set with soap.WithHeader (a SOAPAction override or a
// WS-Security signer, used for token-signed sessions) nor JSON transport:
// the agent uses neither; a caller that does must use govmomi's methods.
func postSOAP(ctx context.Context, vc *vim25.Client, doc func(soap.Header) ([]byte, error), f func(*http.Response) error) error {
	sc := vc.Client
	var h soap.Header
	if id, ok := ctx.Value(types.ID{}).(string); ok {
		h.ID = id
	}
	if sc.Cookie != nil {
		h.Cookie = sc.Cookie()
	}
	body, err := doc(h)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequest(http.MethodPost, sc.URL().String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	hreq.Header.Set("SOAPAction", fmt.Sprintf("%s/%s", sc.Namespace, sc.Version))
	return sc.Do(ctx, hreq, f)
}

// soapRequest returns the request document: the XML header and an
// envelope with header h (when set) and the body appendBody writes.
func soapRequest(h soap.Header, appendBody func([]byte) []byte) ([]byte, error) {
	env := soap.Envelope{Body: bodyMarker{}}
	if h.Cookie != nil || h.ID != "" {
		env.Header = &h
	}
	// The envelope and header are small: marshal them with govmomi (so
	// they stay exactly what it sends) and splice the body in.
	b, err := xml.Marshal(env)
	if err != nil {
		return nil, err
	}
	i := bytes.Index(b, bodyMarkerXML)
	if i < 0 {
		return nil, fmt.Errorf("vsphere: SOAP envelope without its body marker: %s", b)
	}
	body := make([]byte, 0, len(xml.Header)+len(b)+4096)
	body = append(body, xml.Header...)
	body = append(body, b[:i]...)
	body = appendBody(body)
	return append(body, b[i+len(bodyMarkerXML):]...), nil
}

// bodyMarker stands in for the Body's content while the envelope is
// marshalled.
type bodyMarker struct {
	M struct{} `xml:"vmpulse-body-marker"`
}

var bodyMarkerXML = []byte("<vmpulse-body-marker></vmpulse-body-marker>")

// appendQueryPerf appends req as govmomi marshals methods.QueryPerfBody.
func appendQueryPerf(b []byte, req *types.QueryPerf) []byte {
	b = append(b, `<QueryPerf xmlns="urn:vim25">`...)
	b = appendMOR(b, "_this", req.This)
	for i := range req.QuerySpec {
		q := &req.QuerySpec[i]
		b = append(b, "<querySpec>"...)
		b = appendMOR(b, "entity", q.Entity)
		if q.StartTime != nil {
			b = append(b, "<startTime>"...)
			b = q.StartTime.AppendFormat(b, time.RFC3339Nano)
			b = append(b, "</startTime>"...)
		}
		if q.EndTime != nil {
			b = append(b, "<endTime>"...)
			b = q.EndTime.AppendFormat(b, time.RFC3339Nano)
			b = append(b, "</endTime>"...)
		}
		if q.MaxSample != 0 {
			b = append(b, "<maxSample>"...)
			b = strconv.AppendInt(b, int64(q.MaxSample), 10)
			b = append(b, "</maxSample>"...)
		}
		for _, m := range q.MetricId {
			b = append(b, "<metricId><counterId>"...)
			b = strconv.AppendInt(b, int64(m.CounterId), 10)
			b = append(b, "</counterId><instance>"...)
			b = appendEscaped(b, m.Instance)
			b = append(b, "</instance></metricId>"...)
		}
		if q.IntervalId != 0 {
			b = append(b, "<intervalId>"...)
			b = strconv.AppendInt(b, int64(q.IntervalId), 10)
			b = append(b, "</intervalId>"...)
		}
		if q.Format != "" {
			b = append(b, "<format>"...)
			b = appendEscaped(b, q.Format)
			b = append(b, "</format>"...)
		}
		b = append(b, "</querySpec>"...)
	}
	return append(b, "</QueryPerf>"...)
}

// appendMOR appends a managed object reference as element name.
func appendMOR(b []byte, name string, r types.ManagedObjectReference) []byte {
	b = append(append(append(b, '<'), name...), ` type="`...)
	b = appendEscaped(b, r.Type)
	b = append(b, '"')
	if r.ServerGUID != "" {
		b = append(b, ` serverGuid="`...)
		b = appendEscaped(b, r.ServerGUID)
		b = append(b, '"')
	}
	b = append(b, '>')
	b = appendEscaped(b, r.Value)
	return append(append(append(b, "</"...), name...), '>')
}

// appendEscaped appends s escaped as govmomi's xml.EscapeText does (which
// is also how it escapes attribute values).
func appendEscaped(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '&' || c == '<' || c == '>' || c == '"' || c == '\'' {
			plain = false
			break
		}
	}
	if plain {
		return append(b, s...)
	}
	var w bytes.Buffer
	_ = xml.EscapeText(&w, []byte(s))
	return append(b, w.Bytes()...)
}

// parseQueryPerfResponse decodes a QueryPerf SOAP response body into what
// govmomi would decode it to, or returns errQueryPerfFallback.
func parseQueryPerfResponse(b []byte) ([]types.BasePerfEntityMetricBase, error) {
	p := pqParser{s: pqScanner{b: b}, inst: map[string]string{}}
	ret, err := p.envelope()
	if err != nil {
		return nil, errQueryPerfFallback
	}
	return ret, nil
}

// pqScanner tokenizes the XML subset SOAP servers produce. Names are
// returned qualified (prefix:local) as slices of the input.
type pqScanner struct {
	b         []byte
	pos       int
	stack     [][]byte // open elements, to check end tags
	attrStack [][]byte // their raw attributes, for namespace prefixes
}

type pqKind int

const (
	pqEOF pqKind = iota
	pqStart
	pqEnd
	pqText
)

type pqToken struct {
	kind  pqKind
	name  []byte // qualified name (start, end)
	attrs []byte // raw attributes (start)
	empty bool   // <x/>: no end token follows
	text  []byte // raw text, entities not yet expanded
	start int    // offset of the start tag's '<' (start)
}

var errPQ = errors.New("unsupported or malformed")

func (s *pqScanner) next() (pqToken, error) {
	for {
		b := s.b
		if s.pos >= len(b) {
			if len(s.stack) != 0 {
				return pqToken{}, errPQ
			}
			return pqToken{kind: pqEOF}, nil
		}
		if b[s.pos] != '<' {
			i := bytes.IndexByte(b[s.pos:], '<')
			if i < 0 {
				i = len(b) - s.pos
			}
			t := pqToken{kind: pqText, text: b[s.pos : s.pos+i]}
			s.pos += i
			return t, nil
		}
		rest := b[s.pos:]
		switch {
		case bytes.HasPrefix(rest, []byte("<?")):
			i := bytes.Index(rest, []byte("?>"))
			if i < 0 || s.pos != 0 && len(s.stack) != 0 {
				return pqToken{}, errPQ
			}
			s.pos += i + 2
			continue
		case bytes.HasPrefix(rest, []byte("<!--")):
			i := bytes.Index(rest[4:], []byte("-->"))
			if i < 0 {
				return pqToken{}, errPQ
			}
			s.pos += 4 + i + 3
			continue
		case bytes.HasPrefix(rest, []byte("<!")):
			return pqToken{}, errPQ // CDATA, DOCTYPE
		case bytes.HasPrefix(rest, []byte("</")):
			i := bytes.IndexByte(rest, '>')
			if i < 0 || len(s.stack) == 0 {
				return pqToken{}, errPQ
			}
			name := bytes.TrimRight(rest[2:i], " \t\r\n")
			top := s.stack[len(s.stack)-1]
			if !bytes.Equal(name, top) {
				return pqToken{}, errPQ
			}
			s.stack = s.stack[:len(s.stack)-1]
			s.attrStack = s.attrStack[:len(s.attrStack)-1]
			s.pos += i + 1
			return pqToken{kind: pqEnd, name: name}, nil
		}
		// start tag
		n := 1
		for n < len(rest) && !isXMLSpace(rest[n]) && rest[n] != '>' && rest[n] != '/' {
			n++
		}
		name := rest[1:n]
		if len(name) == 0 {
			return pqToken{}, errPQ
		}
		// find the closing '>' outside quotes
		var q byte
		i := n
		for ; i < len(rest); i++ {
			c := rest[i]
			if q != 0 {
				if c == q {
					q = 0
				}
				continue
			}
			if c == '"' || c == '\'' {
				q = c
			} else if c == '>' || c == '<' {
				break
			}
		}
		if i >= len(rest) || rest[i] != '>' {
			return pqToken{}, errPQ
		}
		t := pqToken{kind: pqStart, name: name, attrs: rest[n:i], start: s.pos}
		if i > n && rest[i-1] == '/' {
			t.empty = true
			t.attrs = rest[n : i-1]
		} else {
			s.stack = append(s.stack, name)
			s.attrStack = append(s.attrStack, t.attrs)
		}
		s.pos += i + 1
		return t, nil
	}
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// localName strips a namespace prefix.
// A name with a colon first or last has no prefix (":x" is the local name
// ":x"), as in govmomi's decoder; names with two colons it refuses.
func localName(q []byte) []byte {
	if i := bytes.IndexByte(q, ':'); i > 0 && i < len(q)-1 {
		return q[i+1:]
	}
	return q
}

// nextAttr splits the first attribute off raw; name is nil at the end.
func nextAttr(raw []byte) (name, val, rest []byte, err error) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return nil, nil, nil, nil
	}
	eq := bytes.IndexByte(raw, '=')
	if eq <= 0 {
		return nil, nil, nil, errPQ
	}
	name = bytes.TrimRight(raw[:eq], " \t\r\n")
	raw = bytes.TrimLeft(raw[eq+1:], " \t\r\n")
	if len(raw) == 0 || raw[0] != '"' && raw[0] != '\'' {
		return nil, nil, nil, errPQ
	}
	end := bytes.IndexByte(raw[1:], raw[0])
	if end < 0 {
		return nil, nil, nil, errPQ
	}
	return name, raw[1 : 1+end], raw[2+end:], nil
}

const xsiNamespace = "http://www.w3.org/2001/XMLSchema-instance"

// attrs finds, in the attributes of the start tag t, the type attributes
// the way govmomi's decoder sees them: xsiType is a "type" attribute whose
// prefix is bound to the XMLSchema-instance namespace (or is an unbound
// "xsi"), morType any other "type" attribute, guid "serverGuid". The last
// of duplicates wins, values are unescaped.
func (p *pqParser) attrs(t pqToken) (xsiType, morType, guid []byte, err error) {
	raw := t.attrs
	for {
		name, val, rest, err := nextAttr(raw)
		if err != nil {
			return nil, nil, nil, err
		}
		if name == nil {
			return xsiType, morType, guid, nil
		}
		raw = rest
		local := localName(name)
		var dst *[]byte
		switch string(local) {
		case "type":
			dst = &morType
			if len(local) < len(name) && p.isXSI(t, name[:len(name)-len(local)-1]) {
				dst = &xsiType
			}
		case "serverGuid":
			dst = &guid
		default:
			continue
		}
		u, ok := unescape(val)
		if !ok {
			return nil, nil, nil, errPQ
		}
		*dst = u
	}
}

// isXSI reports whether prefix resolves to the XMLSchema-instance
// namespace in t's scope. An unbound prefix stands for itself, so "xsi"
// unbound counts, as it does for govmomi's decoder.
func (p *pqParser) isXSI(t pqToken, prefix []byte) bool {
	if string(prefix) == "xmlns" || string(prefix) == "xml" {
		return false // reserved: govmomi's decoder never looks them up
	}
	ns, _ := p.lookupNS(t, prefix)
	return string(ns) == xsiNamespace || string(ns) == "xsi"
}

// lookupNS resolves prefix (empty: the default namespace) in t's scope:
// t's own declarations first, then its ancestors'. An unbound prefix
// resolves to itself, with bound false.
func (p *pqParser) lookupNS(t pqToken, prefix []byte) (ns []byte, bound bool) {
	scopes := p.s.attrStack
	if !t.empty {
		scopes = scopes[:len(scopes)-1] // t's own attrs are checked first below
	}
	check := func(raw []byte) (ns []byte, found bool) {
		for {
			name, val, rest, err := nextAttr(raw)
			if err != nil || name == nil {
				return ns, found
			}
			raw = rest
			if len(prefix) == 0 && string(name) == "xmlns" ||
				len(prefix) > 0 && len(name) == 6+len(prefix) && bytes.HasPrefix(name, []byte("xmlns:")) && bytes.Equal(name[6:], prefix) {
				ns, found = val, true // last wins
			}
		}
	}
	if ns, ok := check(t.attrs); ok {
		return ns, true
	}
	for i := len(scopes) - 1; i >= 0; i-- {
		if ns, ok := check(scopes[i]); ok {
			return ns, true
		}
	}
	return prefix, false
}

// unescape expands the five predefined entities and character
// references. Input govmomi's decoder would refuse or rewrite — a CR
// (normalised), invalid UTF-8, characters outside XML's range, other
// entities — is left to the generic decoder (ok false).
func unescape(b []byte) ([]byte, bool) {
	if !validXMLText(b) {
		return nil, false
	}
	if bytes.IndexByte(b, '&') < 0 {
		return b, true
	}
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		i := bytes.IndexByte(b, '&')
		if i < 0 {
			out = append(out, b...)
			break
		}
		out = append(out, b[:i]...)
		b = b[i:]
		semi := bytes.IndexByte(b, ';')
		if semi < 0 {
			return nil, false
		}
		switch ent := b[1:semi]; string(ent) {
		case "lt":
			out = append(out, '<')
		case "gt":
			out = append(out, '>')
		case "amp":
			out = append(out, '&')
		case "apos":
			out = append(out, '\'')
		case "quot":
			out = append(out, '"')
		default:
			r, ok := charRef(ent)
			if !ok {
				return nil, false
			}
			out = utf8.AppendRune(out, r)
		}
		b = b[semi+1:]
	}
	return out, true
}

// charRef decodes the body of a character reference ("#65", "#x41").
func charRef(ent []byte) (rune, bool) {
	if len(ent) < 2 || ent[0] != '#' {
		return 0, false
	}
	digits, base := ent[1:], 10
	if digits[0] == 'x' {
		digits, base = digits[1:], 16
	}
	if len(digits) == 0 || len(digits) > 8 {
		return 0, false
	}
	var n uint32
	for _, c := range digits {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case base == 16 && c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n*uint32(base) + uint32(d)
	}
	r := rune(n)
	if n > unicode.MaxRune || !inXMLCharRange(r) {
		return 0, false
	}
	return r, true
}

// validXMLText reports whether raw text is valid UTF-8 made of XML
// characters, without CR (which XML normalises).
func validXMLText(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 || !inXMLCharRange(r) {
			return false
		}
		i += size
	}
	return true
}

// inXMLCharRange is XML 1.0's Char production.
func inXMLCharRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

type pqParser struct {
	s      pqScanner
	inst   map[string]string // interned strings (instances, entity types)
	lastTS []byte
	lastT  time.Time
}

func (p *pqParser) intern(b []byte) string {
	if s, ok := p.inst[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(p.inst) < 4096 {
		p.inst[s] = s
	}
	return s
}

// start returns the next start tag at this level, skipping whitespace
// and (as the generic decoder does) other text; ok is false at the
// parent's end tag.
func (p *pqParser) start() (t pqToken, ok bool, err error) {
	for {
		t, err := p.s.next()
		if err != nil {
			return t, false, err
		}
		switch t.kind {
		case pqStart:
			return t, true, nil
		case pqEnd:
			return t, false, nil
		case pqEOF:
			return t, false, errPQ
		}
	}
}

// skip skips the rest of the element t started.
func (p *pqParser) skip(t pqToken) error {
	if t.empty {
		return nil
	}
	depth := len(p.s.stack) - 1
	for len(p.s.stack) > depth {
		t, err := p.s.next()
		if err != nil {
			return err
		}
		if t.kind == pqEOF {
			return errPQ
		}
	}
	return nil
}

// text reads the character data of leaf element t, unescaped.
func (p *pqParser) text(t pqToken) ([]byte, error) {
	if t.empty {
		return nil, nil
	}
	var txt []byte
	n := 0
	for {
		t, err := p.s.next()
		if err != nil {
			return nil, err
		}
		switch t.kind {
		case pqText:
			if n++; n > 1 {
				return nil, errPQ // split by a comment
			}
			txt = t.text
		case pqEnd:
			u, ok := unescape(txt)
			if !ok {
				return nil, errPQ
			}
			return u, nil
		default:
			return nil, errPQ
		}
	}
}

func (p *pqParser) envelope() ([]types.BasePerfEntityMetricBase, error) {
	t, ok, err := p.start()
	if err != nil || !ok || string(localName(t.name)) != "Envelope" || t.empty {
		return nil, errPQ
	}
	var ret []types.BasePerfEntityMetricBase
	seen := false
	for {
		t, ok, err := p.start()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		switch string(localName(t.name)) {
		case "Body":
			if seen || t.empty {
				return nil, errPQ
			}
			seen = true
			if ret, err = p.body(); err != nil {
				return nil, err
			}
		default: // Header
			if err := p.skip(t); err != nil {
				return nil, err
			}
		}
	}
	if !seen {
		return nil, errPQ
	}
	for {
		t, err := p.s.next()
		if err != nil {
			return nil, err
		}
		switch t.kind {
		case pqEOF:
			return ret, nil
		case pqText:
			if len(bytes.Trim(t.text, " \t\r\n")) != 0 {
				return nil, errPQ
			}
		default:
			return nil, errPQ
		}
	}
}

// body expects exactly one QueryPerfResponse; a Fault or anything else
// goes to the generic decoder.
func (p *pqParser) body() ([]types.BasePerfEntityMetricBase, error) {
	t, ok, err := p.start()
	if err != nil || !ok || string(localName(t.name)) != "QueryPerfResponse" {
		return nil, errPQ
	}
	var ret []types.BasePerfEntityMetricBase
	if !t.empty {
		for {
			t, ok, err := p.start()
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			if string(localName(t.name)) != "returnval" {
				if err := p.skip(t); err != nil {
					return nil, err
				}
				continue
			}
			em, err := p.returnval(t)
			if err != nil {
				return nil, err
			}
			ret = append(ret, em)
		}
	}
	if _, ok, err := p.start(); err != nil || ok {
		return nil, errPQ
	}
	return ret, nil
}

func (p *pqParser) returnval(t pqToken) (types.BasePerfEntityMetricBase, error) {
	typ, _, _, err := p.attrs(t)
	if err != nil {
		return nil, errPQ
	}
	switch string(localName(typ)) {
	case "PerfEntityMetric":
	case "PerfEntityMetricCSV":
		return p.returnvalCSV(t)
	default:
		return nil, errPQ
	}
	em := &types.PerfEntityMetric{}
	if t.empty {
		return em, nil
	}
	for {
		c, ok, err := p.start()
		if err != nil {
			return nil, err
		}
		if !ok {
			return em, nil
		}
		switch string(localName(c.name)) {
		case "entity":
			if err := p.entity(c, &em.Entity); err != nil {
				return nil, err
			}
		case "sampleInfo":
			si, err := p.sampleInfo(c)
			if err != nil {
				return nil, err
			}
			em.SampleInfo = append(em.SampleInfo, si)
		case "value":
			s, err := p.intSeries(c)
			if err != nil {
				return nil, err
			}
			em.Value = append(em.Value, s)
		default:
			if err := p.skip(c); err != nil {
				return nil, err
			}
		}
	}
}

// returnvalCSV reads a PerfEntityMetricCSV. A repeated sampleInfoCSV
// (a singular element) goes to the generic decoder.
func (p *pqParser) returnvalCSV(t pqToken) (*types.PerfEntityMetricCSV, error) {
	em := &types.PerfEntityMetricCSV{}
	if t.empty {
		return em, nil
	}
	seenInfo := false
	for {
		c, ok, err := p.start()
		if err != nil {
			return nil, err
		}
		if !ok {
			return em, nil
		}
		switch string(localName(c.name)) {
		case "entity":
			if err := p.entity(c, &em.Entity); err != nil {
				return nil, err
			}
		case "sampleInfoCSV":
			if err := once(&seenInfo); err != nil {
				return nil, err
			}
			v, err := p.text(c)
			if err != nil {
				return nil, err
			}
			em.SampleInfoCSV = string(v)
		case "value":
			s, err := p.seriesCSV(c)
			if err != nil {
				return nil, err
			}
			em.Value = append(em.Value, s)
		default:
			if err := p.skip(c); err != nil {
				return nil, err
			}
		}
	}
}

// seriesCSV reads a PerfMetricSeriesCSV: without an xsi:type (the field
// is not polymorphic) or with its own.
func (p *pqParser) seriesCSV(t pqToken) (types.PerfMetricSeriesCSV, error) {
	var s types.PerfMetricSeriesCSV
	typ, _, _, err := p.attrs(t)
	if err != nil || typ != nil && string(localName(typ)) != "PerfMetricSeriesCSV" {
		return s, errPQ
	}
	if t.empty {
		return s, nil
	}
	seenValue := false
	for {
		c, ok, err := p.start()
		if err != nil {
			return s, err
		}
		if !ok {
			return s, nil
		}
		switch string(localName(c.name)) {
		case "id":
			if err := p.metricID(c, &s.Id); err != nil {
				return s, err
			}
		case "value":
			if err := once(&seenValue); err != nil {
				return s, err
			}
			v, err := p.text(c)
			if err != nil {
				return s, err
			}
			s.Value = string(v)
		default:
			if err := p.skip(c); err != nil {
				return s, err
			}
		}
	}
}

func (p *pqParser) entity(t pqToken, ref *types.ManagedObjectReference) error {
	_, typ, guid, err := p.attrs(t)
	if err != nil {
		return err
	}
	if typ != nil {
		ref.Type = p.intern(typ)
	}
	if guid != nil {
		ref.ServerGUID = p.intern(guid)
	}
	v, err := p.text(t)
	if err != nil {
		return err
	}
	ref.Value = string(v)
	return nil
}

func (p *pqParser) sampleInfo(t pqToken) (types.PerfSampleInfo, error) {
	var si types.PerfSampleInfo
	if t.empty {
		return si, nil
	}
	for {
		c, ok, err := p.start()
		if err != nil || !ok {
			return si, err
		}
		switch string(localName(c.name)) {
		case "timestamp":
			v, err := p.text(c)
			if err != nil {
				return si, err
			}
			if p.lastTS != nil && bytes.Equal(v, p.lastTS) {
				si.Timestamp = p.lastT
				continue
			}
			if err := si.Timestamp.UnmarshalText(v); err != nil {
				return si, errPQ
			}
			p.lastTS, p.lastT = v, si.Timestamp
		case "interval":
			v, err := p.text(c)
			if err != nil {
				return si, err
			}
			n, ok := parseXMLInt(v, 32)
			if !ok {
				return si, errPQ
			}
			si.Interval = int32(n)
		default:
			if err := p.skip(c); err != nil {
				return si, err
			}
		}
	}
}

func (p *pqParser) intSeries(t pqToken) (*types.PerfMetricIntSeries, error) {
	typ, _, _, err := p.attrs(t)
	if err != nil || string(localName(typ)) != "PerfMetricIntSeries" {
		return nil, errPQ
	}
	s := &types.PerfMetricIntSeries{}
	if t.empty {
		return s, nil
	}
	for {
		c, ok, err := p.start()
		if err != nil {
			return nil, err
		}
		if !ok {
			return s, nil
		}
		switch string(localName(c.name)) {
		case "id":
			if err := p.metricID(c, &s.Id); err != nil {
				return nil, err
			}
		case "value":
			v, err := p.text(c)
			if err != nil {
				return nil, err
			}
			n, ok := parseXMLInt(v, 64)
			if !ok {
				return nil, errPQ
			}
			s.Value = append(s.Value, n)
		default:
			if err := p.skip(c); err != nil {
				return nil, err
			}
		}
	}
}

func (p *pqParser) metricID(t pqToken, id *types.PerfMetricId) error {
	if t.empty {
		return nil
	}
	for {
		c, ok, err := p.start()
		if err != nil || !ok {
			return err
		}
		switch string(localName(c.name)) {
		case "counterId":
			v, err := p.text(c)
			if err != nil {
				return err
			}
			n, ok := parseXMLInt(v, 32)
			if !ok {
				return errPQ
			}
			id.CounterId = int32(n)
		case "instance":
			v, err := p.text(c)
			if err != nil {
				return err
			}
			id.Instance = p.intern(v)
		default:
			if err := p.skip(c); err != nil {
				return err
			}
		}
	}
}

// parseXMLInt parses like govmomi's decoder: empty is 0, otherwise
// strconv.ParseInt(strings.TrimSpace(s), 10, bits). Non-ASCII input is
// refused (TrimSpace would trim Unicode spaces; let govmomi decide).
func parseXMLInt(b []byte, bits uint) (int64, bool) {
	if len(b) == 0 {
		return 0, true
	}
	b = bytes.Trim(b, " \t\n\v\f\r")
	if len(b) == 0 {
		return 0, false
	}
	neg := false
	switch b[0] {
	case '-':
		neg = true
		b = b[1:]
	case '+':
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	lim := uint64(1) << (bits - 1)
	if neg {
		if u > lim {
			return 0, false
		}
		return -int64(u), true
	}
	if u >= lim {
		return 0, false
	}
	return int64(u), true
}
