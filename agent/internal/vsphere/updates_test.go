package vsphere

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vmpulse/vmpulse/protocol"
)

// checkUpdatesParity decodes body with the fast path and with govmomi
// and fails unless they agree. fast reports whether the fast path
// accepted the body; when it did not, decodeUpdatesResponse must still
// give govmomi's result.
func checkUpdatesParity(t testing.TB, body []byte) (fast bool) {
	t.Helper()
	tf := types.TypeFunc()
	want, wantErr := govmomiUpdatesResponse(body, tf)
	got, err := parseUpdatesResponse(body, tf)
	if err == nil {
		if wantErr != nil {
			return true // lenient where govmomi is strict (namespaces, names): the server's body is what it is
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoders differ:\ngovmomi %s\nfast    %s", dumpSet(want), dumpSet(got))
		}
		return true
	}
	if !errors.Is(err, errPQ) {
		t.Fatalf("fast path error %v, want errPQ", err)
	}
	got, err = decodeUpdatesResponse(body, tf)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
		t.Fatalf("fallback differs from govmomi: %v %s / %v %s", err, dumpSet(got), wantErr, dumpSet(want))
	}
	return false
}

func dumpSet(s *types.UpdateSet) string {
	if s == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%#v", *s)
}

const upHead = `<?xml version="1.0" encoding="UTF-8"?>` +
	`<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>`

const upTail = `</soapenv:Body></soapenv:Envelope>`

func upBody(objectSets string) []byte {
	return []byte(upHead + `<WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>7</version><filterSet><filter type="PropertyFilter">session[1]2</filter>` +
		objectSets + `</filterSet></returnval></WaitForUpdatesExResponse>` + upTail)
}

func change(name, val string) string {
	return `<changeSet><name>` + name + `</name><op>assign</op>` + val + `</changeSet>`
}

func TestUpdatesResponseParity(t *testing.T) {
	vm := func(changes ...string) string {
		s := `<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj>`
		for _, c := range changes {
			s += c
		}
		return s + `</objectSet>`
	}
	fast := map[string][]byte{
		"real vCenter style": upBody(vm(
			change("name", `<val xsi:type="xsd:string">web &amp; db &#x2F; &#233;</val>`),
			change("runtime.powerState", `<val xsi:type="VirtualMachinePowerState">poweredOn</val>`),
			change("config.hardware.numCPU", `<val xsi:type="xsd:int"> 4 </val>`),
			change("summary.capacity", `<val xsi:type="xsd:long">-9223372036854775808</val>`),
			change("s", `<val xsi:type="xsd:short">12</val>`),
			change("config.template", `<val xsi:type="xsd:boolean">false</val>`),
			change("b1", `<val xsi:type="xsd:boolean">1</val>`),
			change("b2", `<val xsi:type="xsd:boolean"></val>`),
			change("i0", `<val xsi:type="xsd:int"/>`),
			change("e0", `<val xsi:type="VirtualMachineToolsRunningStatus"></val>`),
			change("parent", `<val xsi:type="ManagedObjectReference" type="Folder" serverGuid="g-1">group-v3</val>`),
			change("datastore", `<val xsi:type="ArrayOfManagedObjectReference"><ManagedObjectReference type="Datastore">ds-1</ManagedObjectReference><other>x</other><ManagedObjectReference type="Datastore">ds-2</ManagedObjectReference></val>`),
			change("network", `<val xsi:type="ArrayOfManagedObjectReference"/>`),
			change("guest.disk", `<val xsi:type="ArrayOfGuestDiskInfo">  </val>`),
			change("customValue", `<val xsi:type="ArrayOfCustomFieldValue"/>`),
			change("snapshot", ``),
			`<unknownElement a="1"><x/></unknownElement>`,
		) + `<objectSet><kind>leave</kind><obj type="HostSystem">host-9</obj></objectSet>`),
		"complex values through govmomi": upBody(vm(
			change("guest.net", `<val xsi:type="ArrayOfGuestNicInfo"><GuestNicInfo><network>VM Network</network><ipAddress>10.0.0.5</ipAddress><ipAddress>fe80::1</ipAddress><macAddress>00:50:56:aa:bb:cc</macAddress><connected>true</connected><deviceConfigId>4000</deviceConfigId><ipConfig><ipAddress><ipAddress>10.0.0.5</ipAddress><prefixLength>24</prefixLength><state>preferred</state></ipAddress></ipConfig></GuestNicInfo></val>`),
			change("customValue", `<val xsi:type="ArrayOfCustomFieldValue"><CustomFieldValue xsi:type="CustomFieldStringValue"><key>101</key><value>alice</value></CustomFieldValue></val>`),
			change("snapshot", `<val xsi:type="VirtualMachineSnapshotInfo"><currentSnapshot type="VirtualMachineSnapshot">snapshot-1</currentSnapshot><rootSnapshotList><snapshot type="VirtualMachineSnapshot">snapshot-1</snapshot><vm type="VirtualMachine">vm-1</vm><name>before upgrade</name><description></description><id>1</id><createTime>2026-11-01T10:00:00.5Z</createTime><state>poweredOn</state><quiesced>false</quiesced></rootSnapshotList></val>`),
			change("d", `<val xsi:type="xsd:dateTime">2026-11-22T10:00:00Z</val>`),
			change("f", `<val xsi:type="xsd:double">1.5</val>`),
			change("untyped", `<val>text</val>`),
			change("unknownType", `<val xsi:type="NoSuchVimType"><a>1</a></val>`),
			`<missingSet><path>guest.net</path><fault><fault xsi:type="NoPermission"><object type="VirtualMachine">vm-1</object><privilegeId>System.Read</privilegeId></fault><localizedMessage>denied</localizedMessage></fault></missingSet>`,
		) + `<missingSet><obj type="VirtualMachine">vm-2</obj><fault><fault xsi:type="ManagedObjectNotFound"><obj type="VirtualMachine">vm-2</obj></fault></fault></missingSet>`),
		"simulator style local xsi prefix": upBody(vm(
			change("name", `<val xmlns:_XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" _XMLSchema-instance:type="xsd:string">DC0_H0_VM0</val>`),
			change("parent", `<val type="Folder" xmlns:_XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" _XMLSchema-instance:type="ManagedObjectReference">group-2</val>`),
			change("guest.net", `<val xmlns:_XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" _XMLSchema-instance:type="ArrayOfGuestNicInfo"><GuestNicInfo><ipAddress>10.20.3.133</ipAddress><connected>true</connected></GuestNicInfo></val>`),
		)),
		"truncated page": []byte(upHead + `<WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>1_2</version><filterSet><filter type="PropertyFilter">f</filter></filterSet><truncated>true</truncated></returnval></WaitForUpdatesExResponse>` + upTail),
		"empty truncated (false, as govmomi reads it)": []byte(upHead + `<WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>1</version><truncated/></returnval></WaitForUpdatesExResponse>` + upTail),
		"timed out, no returnval":                      []byte(upHead + `<WaitForUpdatesExResponse xmlns="urn:vim25"></WaitForUpdatesExResponse>` + upTail),
		"timed out, empty element":                     []byte(upHead + `<WaitForUpdatesExResponse xmlns="urn:vim25"/>` + upTail),
		"header skipped":                               []byte(`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Header><x>1</x></soapenv:Header><soapenv:Body><WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>2</version></returnval></WaitForUpdatesExResponse></soapenv:Body></soapenv:Envelope>`),
		"colon-first names have no prefix":             []byte(upHead + `<WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><:version>9</:version><version>3</version><filterSet><objectSet><kind>enter</kind><obj :type="VirtualMachine" type="VirtualMachine">vm-1</obj></objectSet></filterSet></returnval></WaitForUpdatesExResponse>` + upTail),
		"xmlns and xml prefixes are never xsi": upBody(`<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj>` +
			change("a", `<val xmlns:xmlns="http://www.w3.org/2001/XMLSchema-instance" xmlns:type="xsd:int">5</val>`) +
			change("b", `<val xmlns:xml="http://www.w3.org/2001/XMLSchema-instance" xml:type="xsd:int">6</val>`) + `</objectSet>`),
		"'xsi' rebound to another name": []byte(`<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/" xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsi="urn:not-xsi"><E:Body><WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>2</version><filterSet><objectSet><kind>modify</kind><obj type="VirtualMachine">vm-1</obj>` + change("a", `<val i:type="xsd:int">5</val>`) + change("b", `<val xsi:type="xsd:int">6</val>`) + `</objectSet></filterSet></returnval></WaitForUpdatesExResponse></E:Body></E:Envelope>`),
	}
	for name, body := range fast {
		t.Run(name, func(t *testing.T) {
			if !checkUpdatesParity(t, body) {
				t.Fatal("the fast path refused the body")
			}
		})
	}
	fallback := map[string][]byte{
		"fault":                             []byte(upHead + `<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>The session is not authenticated.</faultstring><detail><NotAuthenticatedFault xmlns="urn:vim25" xsi:type="NotAuthenticated"><object type="PropertyCollector">session[1]</object><privilegeId>System.View</privilegeId></NotAuthenticatedFault></detail></soapenv:Fault>` + upTail),
		"two returnvals":                    []byte(upHead + `<WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>1</version></returnval><returnval><version>2</version></returnval></WaitForUpdatesExResponse>` + upTail),
		"two xsi:type attributes":           upBody(`<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj>` + change("a", `<val xsi:type="xsd:int" xmlns:i="http://www.w3.org/2001/XMLSchema-instance" i:type="xsd:string">5</val>`) + `</objectSet>`),
		"bad int":                           upBody(`<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj>` + change("a", `<val xsi:type="xsd:int">5x</val>`) + `</objectSet>`),
		"CDATA":                             upBody(`<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj>` + change("a", `<val xsi:type="xsd:string"><![CDATA[x]]></val>`) + `</objectSet>`),
		"CR in text":                        upBody(`<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj>` + change("a", "<val xsi:type=\"xsd:string\">a\r\nb</val>") + `</objectSet>`),
		"unknown entity":                    upBody(`<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj>` + change("a", `<val xsi:type="xsd:string">&nbsp;</val>`) + `</objectSet>`),
		"truncated document":                upBody(`<objectSet><kind>enter</kind>`)[:200],
		"Body in another namespace":         []byte(`<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/"><E:Body xmlns:E="urn:x"><WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>2</version></returnval></WaitForUpdatesExResponse></E:Body></E:Envelope>`),
		"a Body in another namespace first": []byte(`<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/"><x:Body xmlns:x="urn:x"><WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>3</version></returnval></WaitForUpdatesExResponse></x:Body><E:Body><WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>2</version></returnval></WaitForUpdatesExResponse></E:Body></E:Envelope>`),
		"other response":                    []byte(upHead + `<RetrievePropertiesExResponse xmlns="urn:vim25"/>` + upTail),
		"empty":                             nil,
	}
	fallback["repeated version"] = []byte(upHead + `<WaitForUpdatesExResponse xmlns="urn:vim25"><returnval><version>1</version><version>2</version></returnval></WaitForUpdatesExResponse>` + upTail)
	for name, body := range fallback {
		t.Run(name, func(t *testing.T) {
			if checkUpdatesParity(t, body) {
				t.Fatal("the fast path accepted the body; it should leave it to govmomi")
			}
		})
	}
}

// FuzzUpdatesResponse: the decoder reads the network, so it must never
// panic, and whenever both it and govmomi accept a body they must agree;
// when it refuses one, the fallback must give govmomi's answer. Seeds
// include real simulator responses (see TestUpdatesSimulatorBodies).
func FuzzUpdatesResponse(f *testing.F) {
	f.Add(upBody(`<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj>` +
		change("name", `<val xsi:type="xsd:string">a&amp;b</val>`) +
		change("runtime.powerState", `<val xsi:type="VirtualMachinePowerState">poweredOff</val>`) +
		change("datastore", `<val xsi:type="ArrayOfManagedObjectReference"><ManagedObjectReference type="Datastore">ds-1</ManagedObjectReference></val>`) +
		change("guest.net", `<val xsi:type="ArrayOfGuestNicInfo"><GuestNicInfo><ipAddress>10.0.0.5</ipAddress></GuestNicInfo></val>`) +
		`</objectSet>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkUpdatesParity(t, body)
	})
}

// captureTransport keeps the WaitForUpdatesEx response bodies that pass.
type captureTransport struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	bodies [][]byte
}

func (c *captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := c.rt.RoundTrip(r)
	if err != nil {
		return res, err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	if bytes.Contains(b, []byte("WaitForUpdatesExResponse")) {
		c.mu.Lock()
		c.bodies = append(c.bodies, b)
		c.mu.Unlock()
	}
	res.Body = io.NopCloser(bytes.NewReader(b))
	return res, nil
}

func (c *captureTransport) all() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.bodies...)
}

// TestUpdatesSimulatorBodies runs the inventory against a simulator with
// custom values, a snapshot, a powered-off and a destroyed VM, and checks
// that the fast decoder accepts every WaitForUpdatesEx response and agrees
// with govmomi on it. With -update-seeds it stores small ones as
// FuzzUpdatesResponse seeds.
func TestUpdatesSimulatorBodies(t *testing.T) {
	s := newSim(t)
	ctx := context.Background()
	admin := s.admin(t)
	finder := find.NewFinder(admin.Client)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	vm, err := finder.VirtualMachine(ctx, "DC0_C0_RP0_VM0")
	if err != nil {
		t.Fatal(err)
	}
	cfm := object.NewCustomFieldsManager(admin.Client)
	def, err := cfm.Add(ctx, "owner", "VirtualMachine", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfm.Set(ctx, vm.Reference(), def.Key, "alice & bob <ops>"); err != nil {
		t.Fatal(err)
	}
	mustTask(t, ctx)(vm.CreateSnapshot(ctx, "before upgrade", "", false, false))

	sess := newTestSession(t, s.ep)
	conn, err := sess.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	capture := &captureTransport{rt: conn.Vim().Client.Client.Transport}
	conn.Vim().Client.Client.Transport = capture
	sink := newMemSink()
	inv := NewInventory(sess, sink, InventoryConfig{Debounce: 200 * time.Millisecond, MaxWait: time.Second, MaxObjectUpdates: 10}, testLog(t))
	before := updatesFallbacks.Load()
	runBG(t, inv.Run)
	sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool { return i.Full })

	off, err := finder.VirtualMachine(ctx, "DC0_H0_VM1")
	if err != nil {
		t.Fatal(err)
	}
	mustTask(t, ctx)(off.PowerOff(ctx))
	gone, err := finder.VirtualMachine(ctx, "DC0_H0_VM0")
	if err != nil {
		t.Fatal(err)
	}
	mustTask(t, ctx)(gone.PowerOff(ctx))
	mustTask(t, ctx)(gone.Destroy(ctx))
	sink.waitInventory(t, 15*time.Second, func(i *protocol.Inventory) bool {
		o := findObj(i, gone.Reference().Value)
		return !i.Full && o != nil && o.Deleted
	})

	bodies := capture.all()
	var kinds = map[types.ObjectUpdateKind]int{}
	for i, b := range bodies {
		if !checkUpdatesParity(t, b) {
			t.Errorf("body %d: the fast path refused a simulator body:\n%.2000s", i, b)
		}
		if set, _ := parseUpdatesResponse(b, types.TypeFunc()); set != nil {
			for _, fs := range set.FilterSet {
				for _, u := range fs.ObjectSet {
					kinds[u.Kind]++
				}
			}
		}
	}
	for _, k := range []types.ObjectUpdateKind{types.ObjectUpdateKindEnter, types.ObjectUpdateKindModify, types.ObjectUpdateKindLeave} {
		if kinds[k] == 0 {
			t.Errorf("no %q update among %d bodies (%v): the test does not cover it", k, len(bodies), kinds)
		}
	}
	if n := updatesFallbacks.Load() - before; n != 0 {
		t.Errorf("the inventory fell back to govmomi %d times", n)
	}
	if *updateSeeds {
		kept := 0
		for _, b := range bodies {
			if len(b) > 32<<10 || kept == 3 {
				continue
			}
			name := filepath.Join("testdata", "fuzz", "FuzzUpdatesResponse", "sim-"+strconv.Itoa(kept))
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(b))+")\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			kept++
		}
	}
}

// BenchmarkUpdatesDecode compares the fast WaitForUpdatesEx decoder with
// govmomi's on a simulator inventory page.
func BenchmarkUpdatesDecode(b *testing.B) {
	body := seedBody(b, "FuzzUpdatesResponse", "sim-0")
	tf := types.TypeFunc()
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := parseUpdatesResponse(body, tf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("govmomi", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := govmomiUpdatesResponse(body, tf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
