package vsphere

// A cheaper WaitForUpdatesEx. The inventory's initial retrieval (every
// watched property of every VM, host, ... after each (re)connect) went
// through govmomi's reflection-driven XML decoder, which at 5,000 VMs was
// a third of the agent's CPU. waitForUpdatesEx sends the same request over
// the session's soap.Client and reads the response with
// parseUpdatesResponse, which reuses the QueryPerf scanner for the
// UpdateSet shape:
//
//	Envelope/Body/WaitForUpdatesExResponse/returnval?
//	    version, truncated?
//	    filterSet*(filter, objectSet*(kind, obj, changeSet*(name, op, val?), missingSet*), missingSet*)
//
// Property values (val) of the kinds that make up nearly all of an
// inventory — xsd strings, ints, longs, shorts, booleans, enums, managed
// object references and arrays of them — are decoded directly. Any other
// value (GuestNicInfo arrays, snapshot trees, summaries, ...) and every
// missingSet are cut out of the document with the namespace declarations
// in scope and decoded by govmomi, so their Go values are exactly
// govmomi's. A response the scanner does not accept as a whole (a fault,
// malformed XML, a construct it does not handle, a repeated singular
// element) is decoded from the same bytes by govmomi: the request is never
// re-issued after the server answered 200, because the answer moved the
// property collector's version on.

import (
	"bytes"
	"context"
	"encoding"
	"errors"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// fastWaitForUpdates selects the raw request and specialised decoder;
// false makes waitForUpdatesEx use methods.WaitForUpdatesEx only.
var fastWaitForUpdates = true

// updatesFallbacks counts responses the fast path handed to govmomi.
var updatesFallbacks atomic.Int64

// errStatusFallback tells waitForUpdatesEx to send the request through
// govmomi after an HTTP status other than 200 or 500, so that the error
// is the one govmomi reports.
var errStatusFallback = errors.New("vsphere: unexpected HTTP status")

const soapEnvNamespace = "http://schemas.xmlsoap.org/soap/envelope/"

// waitForUpdatesEx runs req and returns its Returnval (nil when the wait
// timed out without changes).
func waitForUpdatesEx(ctx context.Context, vc *vim25.Client, req *types.WaitForUpdatesEx) (*types.UpdateSet, error) {
	if fastWaitForUpdates {
		var set *types.UpdateSet
		err := postSOAP(ctx, vc, func(h soap.Header) ([]byte, error) {
			// The request is small: marshal it as soap.Client does.
			env := soap.Envelope{Body: &methods.WaitForUpdatesExBody{Req: req}}
			if h.Cookie != nil || h.ID != "" {
				env.Header = &h
			}
			b, err := xml.Marshal(env)
			if err != nil {
				return nil, err
			}
			return append([]byte(xml.Header), b...), nil
		}, func(res *http.Response) error {
			switch res.StatusCode {
			case http.StatusOK, http.StatusInternalServerError:
			default:
				return errStatusFallback
			}
			return withBody(res, -1, nil, func(body []byte) error {
				var err error
				set, err = decodeUpdatesResponse(body, vc.Client.Types)
				return err
			})
		})
		if !errors.Is(err, errStatusFallback) {
			return set, err
		}
	}
	res, err := methods.WaitForUpdatesEx(ctx, vc, req)
	if err != nil || res == nil {
		return nil, err
	}
	return res.Returnval, nil
}

// decodeUpdatesResponse decodes a WaitForUpdatesEx response body: with
// parseUpdatesResponse when it can, else as soap.Client would.
func decodeUpdatesResponse(body []byte, typeFunc types.Func) (*types.UpdateSet, error) {
	if set, err := parseUpdatesResponse(body, typeFunc); err == nil {
		return set, nil
	}
	updatesFallbacks.Add(1)
	return govmomiUpdatesResponse(body, typeFunc)
}

// govmomiUpdatesResponse decodes body exactly as soap.Client does.
func govmomiUpdatesResponse(body []byte, typeFunc types.Func) (*types.UpdateSet, error) {
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.TypeFunc = typeFunc
	resBody := &methods.WaitForUpdatesExBody{}
	if err := dec.Decode(&soap.Envelope{Body: resBody}); err != nil {
		return nil, err
	}
	if f := resBody.Fault(); f != nil {
		return nil, soap.WrapSoapFault(f)
	}
	if resBody.Res == nil {
		return nil, nil
	}
	return resBody.Res.Returnval, nil
}

// parseUpdatesResponse is the fast decoder; errPQ means "use govmomi".
func parseUpdatesResponse(body []byte, typeFunc types.Func) (set *types.UpdateSet, err error) {
	p := upParser{pqParser: pqParser{s: pqScanner{b: body}, inst: map[string]string{}}, typeFunc: typeFunc}
	err = p.envelope(func(t pqToken) error {
		set, err = p.response(t)
		return err
	})
	if err != nil {
		return nil, errPQ
	}
	return set, nil
}

type upParser struct {
	pqParser
	typeFunc types.Func
}

// envelope reads Envelope/Body (both in the SOAP namespace) and hands
// the Body's single child to body. Header elements are skipped.
func (p *upParser) envelope(body func(pqToken) error) error {
	t, ok, err := p.start()
	if err != nil || !ok || t.empty || !p.soapElement(t, "Envelope") {
		return errPQ
	}
	seen := false
	for {
		t, ok, err := p.start()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if !p.soapElement(t, "Body") {
			if string(localName(t.name)) == "Body" {
				return errPQ // govmomi decodes a Body in any namespace into the same struct
			}
			if err := p.skip(t); err != nil {
				return err
			}
			continue
		}
		if seen || t.empty {
			return errPQ
		}
		seen = true
		c, ok, err := p.start()
		if err != nil || !ok {
			return errPQ
		}
		if err := body(c); err != nil {
			return err
		}
		if _, ok, err := p.start(); err != nil || ok {
			return errPQ // a second element in Body
		}
	}
	if !seen {
		return errPQ
	}
	for {
		t, err := p.s.next()
		if err != nil {
			return err
		}
		switch t.kind {
		case pqEOF:
			return nil
		case pqText:
			if len(bytes.Trim(t.text, " \t\r\n")) != 0 {
				return errPQ
			}
		default:
			return errPQ
		}
	}
}

// soapElement reports whether t is local in the SOAP envelope namespace.
func (p *upParser) soapElement(t pqToken, local string) bool {
	var prefix []byte
	if i := bytes.IndexByte(t.name, ':'); i >= 0 {
		prefix = t.name[:i]
	}
	if string(localName(t.name)) != local {
		return false
	}
	ns, _ := p.lookupNS(t, prefix)
	return string(ns) == soapEnvNamespace
}

// once marks a singular child as seen; a repeat goes to govmomi, whose
// merge-into-the-same-field behaviour is not worth imitating.
func once(seen *bool) error {
	if *seen {
		return errPQ
	}
	*seen = true
	return nil
}

func (p *upParser) response(t pqToken) (*types.UpdateSet, error) {
	if string(localName(t.name)) != "WaitForUpdatesExResponse" {
		return nil, errPQ // a Fault or another response
	}
	var set *types.UpdateSet
	if t.empty {
		return nil, nil
	}
	for {
		c, ok, err := p.start()
		if err != nil {
			return nil, err
		}
		if !ok {
			return set, nil
		}
		if string(localName(c.name)) != "returnval" {
			if err := p.skip(c); err != nil {
				return nil, err
			}
			continue
		}
		if set != nil {
			return nil, errPQ
		}
		if set, err = p.updateSet(c); err != nil {
			return nil, err
		}
	}
}

func (p *upParser) updateSet(t pqToken) (*types.UpdateSet, error) {
	set := &types.UpdateSet{}
	if t.empty {
		return set, nil
	}
	var seenVersion, seenTruncated bool
	for {
		c, ok, err := p.start()
		if err != nil {
			return nil, err
		}
		if !ok {
			return set, nil
		}
		switch string(localName(c.name)) {
		case "version":
			if err := once(&seenVersion); err != nil {
				return nil, err
			}
			v, err := p.text(c)
			if err != nil {
				return nil, err
			}
			set.Version = string(v)
		case "truncated":
			if err := once(&seenTruncated); err != nil {
				return nil, err
			}
			v, err := p.text(c)
			if err != nil {
				return nil, err
			}
			b, err := parseXMLBool(v)
			if err != nil {
				return nil, err
			}
			set.Truncated = &b
		case "filterSet":
			fs, err := p.filterUpdate(c)
			if err != nil {
				return nil, err
			}
			set.FilterSet = append(set.FilterSet, fs)
		default:
			if err := p.skip(c); err != nil {
				return nil, err
			}
		}
	}
}

func (p *upParser) filterUpdate(t pqToken) (types.PropertyFilterUpdate, error) {
	var fu types.PropertyFilterUpdate
	if t.empty {
		return fu, nil
	}
	var seenFilter bool
	for {
		c, ok, err := p.start()
		if err != nil || !ok {
			return fu, err
		}
		switch string(localName(c.name)) {
		case "filter":
			if err := once(&seenFilter); err != nil {
				return fu, err
			}
			if err := p.entity(c, &fu.Filter); err != nil {
				return fu, err
			}
		case "objectSet":
			u, err := p.objectUpdate(c)
			if err != nil {
				return fu, err
			}
			fu.ObjectSet = append(fu.ObjectSet, u)
		case "missingSet":
			var m struct {
				V types.MissingObject `xml:"missingSet"`
			}
			if err := p.fragment(c, &m); err != nil {
				return fu, err
			}
			fu.MissingSet = append(fu.MissingSet, m.V)
		default:
			if err := p.skip(c); err != nil {
				return fu, err
			}
		}
	}
}

func (p *upParser) objectUpdate(t pqToken) (types.ObjectUpdate, error) {
	var u types.ObjectUpdate
	if t.empty {
		return u, nil
	}
	var seenKind, seenObj bool
	for {
		c, ok, err := p.start()
		if err != nil || !ok {
			return u, err
		}
		switch string(localName(c.name)) {
		case "kind":
			if err := once(&seenKind); err != nil {
				return u, err
			}
			v, err := p.text(c)
			if err != nil {
				return u, err
			}
			u.Kind = types.ObjectUpdateKind(p.intern(v))
		case "obj":
			if err := once(&seenObj); err != nil {
				return u, err
			}
			if err := p.entity(c, &u.Obj); err != nil {
				return u, err
			}
		case "changeSet":
			pc, err := p.change(c)
			if err != nil {
				return u, err
			}
			u.ChangeSet = append(u.ChangeSet, pc)
		case "missingSet":
			var m struct {
				V types.MissingProperty `xml:"missingSet"`
			}
			if err := p.fragment(c, &m); err != nil {
				return u, err
			}
			u.MissingSet = append(u.MissingSet, m.V)
		default:
			if err := p.skip(c); err != nil {
				return u, err
			}
		}
	}
}

func (p *upParser) change(t pqToken) (types.PropertyChange, error) {
	var pc types.PropertyChange
	if t.empty {
		return pc, nil
	}
	var seenName, seenOp, seenVal bool
	for {
		c, ok, err := p.start()
		if err != nil || !ok {
			return pc, err
		}
		switch string(localName(c.name)) {
		case "name":
			if err := once(&seenName); err != nil {
				return pc, err
			}
			v, err := p.text(c)
			if err != nil {
				return pc, err
			}
			pc.Name = p.intern(v)
		case "op":
			if err := once(&seenOp); err != nil {
				return pc, err
			}
			v, err := p.text(c)
			if err != nil {
				return pc, err
			}
			pc.Op = types.PropertyChangeOp(p.intern(v))
		case "val":
			if err := once(&seenVal); err != nil {
				return pc, err
			}
			if pc.Val, err = p.value(c); err != nil {
				return pc, err
			}
		default:
			if err := p.skip(c); err != nil {
				return pc, err
			}
		}
	}
}

var (
	morType      = reflect.TypeFor[types.ManagedObjectReference]()
	morArrayType = reflect.TypeFor[types.ArrayOfManagedObjectReference]()
	textUnmarsh  = reflect.TypeFor[encoding.TextUnmarshaler]()
	xmlUnmarsh   = reflect.TypeFor[xml.Unmarshaler]()
)

// value decodes a property value the way govmomi's decoder fills an
// AnyType field: the xsi:type picks the Go type (xsd names first, then
// the vim25 registry) and the field holds the value, not a pointer.
func (p *upParser) value(t pqToken) (any, error) {
	xsiType, err := p.xsiType(t)
	if err != nil {
		return nil, err
	}
	name := string(xsiType)
	if xsd, ok := strings.CutPrefix(name, "xsd:"); ok {
		name = xsd
	} else if xs, ok := strings.CutPrefix(name, "xs:"); ok {
		name = xs
	}
	switch name {
	case "string":
		v, err := p.text(t)
		return string(v), err
	case "boolean":
		v, err := p.text(t)
		if err != nil {
			return nil, err
		}
		return parseXMLBool(v)
	case "int", "long", "short":
		v, err := p.text(t)
		if err != nil {
			return nil, err
		}
		bits := map[string]uint{"int": 32, "long": 64, "short": 16}[name]
		n, ok := parseXMLInt(v, bits)
		if !ok {
			return nil, errPQ
		}
		switch bits {
		case 16:
			return int16(n), nil
		case 32:
			return int32(n), nil
		}
		return n, nil
	case "byte", "unsignedByte", "unsignedShort", "unsignedInt", "unsignedLong",
		"float", "double", "dateTime", "base64Binary", "":
		return p.fragmentValue(t)
	}
	typ, ok := p.typeFunc(string(xsiType))
	switch {
	case !ok:
		return p.fragmentValue(t)
	case typ == morType:
		var ref types.ManagedObjectReference
		err := p.entity(t, &ref)
		return ref, err
	case typ == morArrayType:
		return p.morArray(t)
	case t.empty && typ.Kind() == reflect.Struct && strings.HasPrefix(typ.Name(), "ArrayOf") && onlyDeclsAndType(t.attrs):
		// <val xsi:type="ArrayOfX"/>: an empty array is the zero value.
		return reflect.Zero(typ).Interface(), nil
	case typ.Kind() == reflect.Struct && strings.HasPrefix(typ.Name(), "ArrayOf") && onlyDeclsAndType(t.attrs) && p.emptyElement():
		return reflect.Zero(typ).Interface(), nil
	case typ.Kind() == reflect.String && typ.PkgPath() == morType.PkgPath() &&
		!reflect.PointerTo(typ).Implements(textUnmarsh) && !reflect.PointerTo(typ).Implements(xmlUnmarsh):
		// An enum (VirtualMachinePowerState, ...).
		v, err := p.text(t)
		if err != nil {
			return nil, err
		}
		e := reflect.New(typ).Elem()
		e.SetString(p.intern(v))
		return e.Interface(), nil
	}
	return p.fragmentValue(t)
}

// onlyDeclsAndType reports whether raw attributes are namespace
// declarations and type attributes only (nothing an ArrayOf struct could
// take).
func onlyDeclsAndType(raw []byte) bool {
	for {
		name, _, rest, err := nextAttr(raw)
		if err != nil {
			return false
		}
		if name == nil {
			return true
		}
		raw = rest
		if string(name) != "xmlns" && !bytes.HasPrefix(name, []byte("xmlns:")) && string(localName(name)) != "type" {
			return false
		}
	}
}

// emptyElement consumes the rest of the element just started if it has
// no child elements and only whitespace text, and reports whether it did;
// otherwise the scanner is left where it was.
func (p *upParser) emptyElement() bool {
	b := p.s.b[p.s.pos:]
	i := 0
	for i < len(b) && isXMLSpace(b[i]) {
		i++
	}
	if !bytes.HasPrefix(b[i:], []byte("</")) {
		return false
	}
	save := p.s.pos
	p.s.pos += i
	t, err := p.s.next()
	if err != nil || t.kind != pqEnd {
		p.s.pos = save
		return false
	}
	return true
}

// xsiType returns t's xsi:type attribute (nil if none); more than one
// goes to govmomi.
func (p *upParser) xsiType(t pqToken) ([]byte, error) {
	var typ []byte
	n := 0
	raw := t.attrs
	for {
		name, val, rest, err := nextAttr(raw)
		if err != nil {
			return nil, err
		}
		if name == nil {
			return typ, nil
		}
		raw = rest
		local := localName(name)
		if string(local) != "type" || len(local) == len(name) || !p.isXSI(t, name[:len(name)-len(local)-1]) {
			continue
		}
		if n++; n > 1 {
			return nil, errPQ
		}
		u, ok := unescape(val)
		if !ok {
			return nil, errPQ
		}
		typ = u
	}
}

// morArray decodes an ArrayOfManagedObjectReference.
func (p *upParser) morArray(t pqToken) (any, error) {
	var a types.ArrayOfManagedObjectReference
	if t.empty {
		return a, nil
	}
	for {
		c, ok, err := p.start()
		if err != nil {
			return nil, err
		}
		if !ok {
			return a, nil
		}
		if string(localName(c.name)) != "ManagedObjectReference" {
			if err := p.skip(c); err != nil {
				return nil, err
			}
			continue
		}
		var ref types.ManagedObjectReference
		if err := p.entity(c, &ref); err != nil {
			return nil, err
		}
		a.ManagedObjectReference = append(a.ManagedObjectReference, ref)
	}
}

// fragmentValue decodes the val element t with govmomi.
func (p *upParser) fragmentValue(t pqToken) (any, error) {
	var v struct {
		V types.AnyType `xml:"val,typeattr"`
	}
	if err := p.fragment(t, &v); err != nil {
		return nil, err
	}
	return v.V, nil
}

// fragment decodes the element t (just read) into dst, a struct with one
// field tagged with t's local name, using govmomi's decoder on t's bytes
// wrapped in an element that declares the namespaces in scope at t.
func (p *upParser) fragment(t pqToken, dst any) error {
	ancestors := p.s.attrStack
	if !t.empty {
		ancestors = ancestors[:len(ancestors)-1]
	}
	decls := map[string][]byte{}
	for _, raw := range ancestors {
		for {
			name, val, rest, err := nextAttr(raw)
			if err != nil || name == nil {
				break
			}
			raw = rest
			if string(name) == "xmlns" || bytes.HasPrefix(name, []byte("xmlns:")) {
				decls[string(name)] = val // inner declarations win
			}
		}
	}
	if err := p.skip(t); err != nil {
		return err
	}
	names := make([]string, 0, len(decls))
	for n := range decls {
		names = append(names, n)
	}
	sort.Strings(names)
	var w bytes.Buffer
	w.WriteString("<vmpulse-fragment")
	for _, n := range names {
		v := decls[n]
		q := byte('"')
		if bytes.IndexByte(v, '"') >= 0 {
			q = '\''
		}
		w.WriteByte(' ')
		w.WriteString(n)
		w.WriteByte('=')
		w.WriteByte(q)
		w.Write(v)
		w.WriteByte(q)
	}
	w.WriteByte('>')
	w.Write(p.s.b[t.start:p.s.pos])
	w.WriteString("</vmpulse-fragment>")
	dec := xml.NewDecoder(&w)
	dec.TypeFunc = p.typeFunc
	if err := dec.Decode(dst); err != nil {
		return errPQ
	}
	return nil
}

// parseXMLBool parses like govmomi's decoder (empty is false, otherwise
// strconv.ParseBool of the trimmed text); non-ASCII is left to govmomi.
func parseXMLBool(b []byte) (bool, error) {
	if len(b) == 0 {
		return false, nil
	}
	for _, c := range b {
		if c >= 0x80 {
			return false, errPQ
		}
	}
	v, err := strconv.ParseBool(string(bytes.Trim(b, " \t\n\v\f\r")))
	if err != nil {
		return false, errPQ
	}
	return v, nil
}
