package protocol

import "time"

// Version is the protocol version this package speaks. See the package
// documentation for its history.
const Version uint16 = 1

// ALPN is the TLS application protocol negotiated on every vmpulse QUIC
// connection.
const ALPN = "vmpulse/1"

// Limits every decoder enforces before allocating. A peer that exceeds one
// gets ErrCodeTooLarge and the stream is closed.
const (
	// MaxFrameSize bounds one frame's payload on the wire (compressed).
	MaxFrameSize = 16 << 20
	// MaxDecodedPayload bounds a batch payload after decompression.
	MaxDecodedPayload = 64 << 20
	// MaxSeriesPerBatch bounds the series dictionary of one samples batch.
	MaxSeriesPerBatch = 1 << 20
	// MaxPointsPerSeries bounds the timestamps of one series in one batch.
	MaxPointsPerSeries = 1 << 16
	// MaxCountersPerSeries bounds the value columns of one series.
	MaxCountersPerSeries = 512
	// MaxStringLen bounds every string on the wire.
	MaxStringLen = 4096
)

// BatchKind says what a batch's payload holds.
type BatchKind uint8

// Batch kinds.
const (
	KindSamples   BatchKind = 1 // payload: Samples
	KindInventory BatchKind = 2 // payload: Inventory
	KindEvents    BatchKind = 3 // payload: Events
	KindGap       BatchKind = 4 // payload: Gap (the agent lost data and says so)
)

// Codec says how a batch payload is compressed.
type Codec uint8

// Codecs.
const (
	CodecNone Codec = 0
	CodecZstd Codec = 1
)

// Batch is the unit of delivery, spooling and acknowledgement. (AgentEpoch,
// Seq) identifies it for good: the aggregator's ledger makes a redelivered
// batch a no-op that is acknowledged again.
type Batch struct {
	Kind  BatchKind
	Epoch uint64 // the agent spool's epoch; a new spool starts a new epoch
	Seq   uint64 // monotonically increasing within an epoch, from 1
	// First and Last bound the data timestamps in the payload (Unix ms).
	First, Last int64
	Codec       Codec
	Payload     []byte // encoded (and possibly compressed) payload
}

// Counter names one value column of a series, e.g. {"cpu.usage.average", "%"}.
type Counter struct {
	Name string
	Unit string
}

// SeriesKey identifies one row-series: one entity (or one instance of it,
// such as a vNIC) on one source, with a fixed list of counters whose values
// travel together.
type SeriesKey struct {
	Source     string // the vCenter/ESXi endpoint (its instance UUID or configured name)
	EntityKind string // "vm", "host", "cluster", "datastore", ...
	EntityID   string // managed object reference value, e.g. "vm-42"
	Instance   string // "" for the entity aggregate, else e.g. "vmnic0", "scsi0:1"
	Counters   []Counter
}

// SeriesData holds one series' points in columnar form: Values[c][i] is the
// value of Counters[c] at Timestamps[i]. A NaN value means "no sample".
type SeriesData struct {
	Key        SeriesKey
	Timestamps []int64 // Unix milliseconds, ascending
	Values     [][]float64
}

// Samples is the payload of a KindSamples batch.
type Samples struct {
	Series []SeriesData
}

// InventoryObject is one vSphere managed object as the agent last saw it.
type InventoryObject struct {
	Source   string         `json:"source"`
	Kind     string         `json:"kind"` // vm, host, cluster, datastore, resourcepool, datacenter, folder
	ID       string         `json:"id"`   // moref value
	Name     string         `json:"name"`
	ParentID string         `json:"parent_id,omitempty"`
	Path     string         `json:"path,omitempty"` // inventory folder path
	Deleted  bool           `json:"deleted,omitempty"`
	Props    map[string]any `json:"props,omitempty"` // power_state, tools_status, guest_ips, ...
}

// Inventory is the payload of a KindInventory batch. Full means the objects
// are the complete inventory of Source: any object of Source not listed is
// gone.
type Inventory struct {
	Source  string            `json:"source"`
	Full    bool              `json:"full"`
	At      int64             `json:"at"` // Unix ms the snapshot/changes were observed
	Objects []InventoryObject `json:"objects"`
}

// Event is one vCenter event.
type Event struct {
	Source     string         `json:"source"`
	Key        int64          `json:"key"` // vCenter event key, unique per source
	ChainID    int64          `json:"chain_id,omitempty"`
	Type       string         `json:"type"` // e.g. "VmPoweredOffEvent"
	Time       int64          `json:"time"` // Unix ms
	User       string         `json:"user,omitempty"`
	Message    string         `json:"message,omitempty"`
	Severity   string         `json:"severity,omitempty"` // info, warning, error, user
	EntityKind string         `json:"entity_kind,omitempty"`
	EntityID   string         `json:"entity_id,omitempty"`
	EntityName string         `json:"entity_name,omitempty"`
	Datacenter string         `json:"datacenter,omitempty"`
	Extra      map[string]any `json:"extra,omitempty"`
}

// Events is the payload of a KindEvents batch.
type Events struct {
	Events []Event `json:"events"`
}

// Gap is the payload of a KindGap batch: data the agent knows it lost, and
// says so. There are two sorts.
//
// A spool gap: the agent dropped batches it could not keep (spool quota,
// disk floor). FromSeq..ToSeq of Epoch name them, Batches and Bytes count
// them, [First, Last] spans their data; the source fields are empty.
//
// A collection gap: the agent could not read samples from their source,
// e.g. Reason "beyond vCenter retention" after an outage longer than
// vCenter keeps them. Source is set, and EntityKind, EntityIDs, Counters
// and Interval say which samples over [First, Last] are missing. It drops
// no batch: Epoch, FromSeq, ToSeq, Batches and Bytes are 0, and the
// aggregator identifies the record by the batch that carries it.
//
// The source fields were added without a new Version (see the package
// documentation): an aggregator that predates them stores a collection gap
// as a gap of the whole site over [First, Last], which is true, only less
// precise.
type Gap struct {
	Epoch    uint64 `json:"epoch"`
	FromSeq  uint64 `json:"from_seq"`
	ToSeq    uint64 `json:"to_seq"`
	Batches  uint64 `json:"batches"`
	Bytes    uint64 `json:"bytes"`
	First    int64  `json:"first"` // Unix ms, oldest data lost
	Last     int64  `json:"last"`  // Unix ms, newest data lost
	Reason   string `json:"reason"`
	Detected int64  `json:"detected"` // Unix ms

	// Source is the vCenter/ESXi endpoint whose samples are missing, as in
	// SeriesKey.Source; empty for a spool gap.
	Source string `json:"source,omitempty"`
	// EntityKind is the kind of the entities concerned ("vm", "host", ...);
	// empty means every entity of Source.
	EntityKind string `json:"entity_kind,omitempty"`
	// EntityIDs lists the entities concerned (managed object reference
	// values, at most MaxGapEntities); empty means every entity of
	// EntityKind on Source.
	EntityIDs []string `json:"entity_ids,omitempty"`
	// Counters names the counters whose samples are missing (at most
	// MaxCountersPerSeries); empty means all of them.
	Counters []string `json:"counters,omitempty"`
	// Interval is the sampling interval, in seconds, of the missing
	// samples (20 for vCenter's realtime data); 0 if unknown.
	Interval int32 `json:"interval,omitempty"`
}

// MaxGapEntities bounds Gap.EntityIDs; a sender splits larger sets into
// several gap records.
const MaxGapEntities = 1 << 16

// maxGapInterval bounds Gap.Interval: a year, beyond vSphere's coarsest
// interval (a day).
const maxGapInterval = 366 * 24 * 3600

// Hello is the first message an agent sends on the control stream.
type Hello struct {
	AgentID      string   `json:"agent_id"`
	AgentVersion string   `json:"agent_version"`
	MinVersion   uint16   `json:"min_version"`
	MaxVersion   uint16   `json:"max_version"`
	Epoch        uint64   `json:"epoch"`
	Sources      []string `json:"sources,omitempty"`
}

// Welcome answers Hello with the negotiated version and the configuration
// the aggregator pushes to the agent.
type Welcome struct {
	Version           uint16        `json:"version"`
	AgentID           string        `json:"agent_id"`
	Site              string        `json:"site"`
	HeartbeatInterval time.Duration `json:"heartbeat_interval"`
	MaxInFlight       int           `json:"max_in_flight"` // unacked batches per data stream
	ServerTime        int64         `json:"server_time"`   // Unix ms, lets the agent see clock skew
	// Collection is the collection configuration the aggregator's settings
	// push to the agent; nil leaves the agent's own configuration in force
	// (and is what an aggregator that predates the field sends).
	Collection *CollectionSettings `json:"collection,omitempty"`
}

// CollectionSettings is what the aggregator's settings decide about an
// agent's collection, sent in the Welcome and again, in a Command named
// CommandApplyCollection, whenever the settings change. The agent applies
// it without restarting; a zero field keeps the agent's own value.
type CollectionSettings struct {
	// Revision increases with every change of the settings; an agent
	// ignores a revision older than the one it applied.
	Revision           int64         `json:"revision"`
	RealtimeInterval   time.Duration `json:"realtime_interval,omitempty"`
	HistoricalInterval time.Duration `json:"historical_interval,omitempty"`
	EventsPoll         time.Duration `json:"events_poll,omitempty"`
	TagInterval        time.Duration `json:"tag_interval,omitempty"`
	// Counters maps an entity kind ("vm", "host", "cluster", "datastore")
	// to the vCenter counters ("cpu.usage.average") collected for it; a
	// kind not present keeps the agent's own set.
	Counters map[string][]string `json:"counters,omitempty"`
}

// Limits of CollectionSettings, checked by ReadMessage and WriteMessage.
const (
	MaxCollectionKinds    = 16
	MaxCountersPerKind    = 1024
	MaxCollectionInterval = 24 * time.Hour
)

// CommandApplyCollection is the Command that carries new CollectionSettings.
const CommandApplyCollection = "apply_collection"

// Heartbeat carries the agent's health on the control stream.
type Heartbeat struct {
	SpoolDepth      uint64 `json:"spool_depth"` // batches not yet acked
	SpoolBytes      uint64 `json:"spool_bytes"`
	OldestUnsentAge int64  `json:"oldest_unsent_ms"`  // age of the oldest unacked batch
	CollectionLag   int64  `json:"collection_lag_ms"` // now − newest collected sample
	Dropped         uint64 `json:"dropped_batches"`   // dropped by quota since start
	SentAt          int64  `json:"sent_at"`           // Unix ms
	// Plugins is the state of each configured collector plugin (absent
	// from agents without any, and from agents older than the field: an
	// aggregator reads its absence as "no plugins").
	Plugins []PluginStatus `json:"plugins,omitempty"`
	// SpoolMaxBytes is the spool's quota (spool.max_bytes); 0 from agents
	// older than the field.
	SpoolMaxBytes uint64 `json:"spool_max_bytes,omitempty"`
	// VCenters is the reachability of each vCenter/ESXi endpoint the agent
	// polls (absent from agents older than the field).
	VCenters []VCenterStatus `json:"vcenters,omitempty"`
}

// MaxVCenters bounds Heartbeat.VCenters.
const MaxVCenters = 256

// VCenterStatus is whether the agent can reach one endpoint it polls.
type VCenterStatus struct {
	Source    string `json:"source"` // as in SeriesKey.Source and Inventory.Source
	Reachable bool   `json:"reachable"`
	Since     int64  `json:"since,omitempty"`      // Unix ms of the last change of Reachable
	LastOK    int64  `json:"last_ok,omitempty"`    // Unix ms of the last successful call
	LastError string `json:"last_error,omitempty"` // at most MaxPluginErrorBytes; the agent truncates
}

// Limits of Heartbeat.Plugins, checked by ReadMessage and WriteMessage.
const (
	MaxPlugins          = 256  // plugins per heartbeat
	MaxPluginErrorBytes = 1024 // PluginStatus.LastError; the agent truncates longer ones
)

// PluginStatus is one collector plugin's state as the agent reports it.
type PluginStatus struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"` // as the plugin reports it
	// State is the plugin host's state: starting, running, restarting,
	// refused or stopped.
	State       string `json:"state"`
	Restarts    int64  `json:"restarts"` // after crashes, failed health checks or hangs
	LastError   string `json:"last_error,omitempty"`
	LastErrorAt int64  `json:"last_error_at,omitempty"` // Unix ms
	LastCollect int64  `json:"last_collect,omitempty"`  // Unix ms of the last successful Collect
	Collects    uint64 `json:"collects"`                // successful Collect calls since the agent started
	Failures    uint64 `json:"failures"`                // failed ones (error, timeout, plugin down)
	Samples     uint64 `json:"samples"`                 // samples spooled since the agent started
}

// Command is sent by the aggregator on the control stream.
type Command struct {
	Name string            `json:"name"` // "resync_inventory", CommandApplyCollection
	Args map[string]string `json:"args,omitempty"`
	// Collection is set for CommandApplyCollection.
	Collection *CollectionSettings `json:"collection,omitempty"`
}

// AckStatus is the aggregator's verdict on a batch.
type AckStatus uint8

// Ack statuses.
const (
	AckStored    AckStatus = 0 // committed now
	AckDuplicate AckStatus = 1 // already committed earlier; drop it
	AckRejected  AckStatus = 2 // will never be accepted (see Code); drop it and record a gap
)

// Ack acknowledges one batch on the data stream it arrived on. It is sent
// only after the batch is durably committed (or known to be).
type Ack struct {
	Epoch  uint64
	Seq    uint64
	Status AckStatus
	Code   ErrorCode // for AckRejected
}

// EnrollRequest is sent once by a new agent with its single-use token.
type EnrollRequest struct {
	Token   string `json:"token"`
	CSR     []byte `json:"csr"` // DER PKCS#10
	Name    string `json:"name"`
	Version string `json:"version"`
}

// EnrollResponse returns the agent's identity and certificates.
type EnrollResponse struct {
	AgentID string `json:"agent_id"`
	Site    string `json:"site"`
	Cert    []byte `json:"cert"` // DER client certificate
	CACert  []byte `json:"ca_cert"`
}

// RenewRequest asks, on a stream of its own over an authenticated
// connection, for a new client certificate before the current one expires.
// The aggregator signs CSR for the agent and site of the connection's
// certificate; the CSR's own subject is ignored.
type RenewRequest struct {
	CSR []byte `json:"csr"` // DER PKCS#10, for a new key pair
}

// RenewResponse returns the renewed client certificate. The certificate
// the connection was opened with stays valid until the agent connects with
// the new one.
type RenewResponse struct {
	Cert   []byte `json:"cert"` // DER client certificate
	CACert []byte `json:"ca_cert"`
}

// ErrorCode is a numeric error code, used both in Error messages and as the
// QUIC stream/application error code when a stream is closed.
type ErrorCode uint32

// Error codes. Values are stable: never renumber.
const (
	ErrCodeNone            ErrorCode = 0
	ErrCodeInternal        ErrorCode = 1
	ErrCodeMalformed       ErrorCode = 2 // a frame or payload failed to decode
	ErrCodeTooLarge        ErrorCode = 3
	ErrCodeUnsupported     ErrorCode = 4 // version, kind or codec not supported
	ErrCodeUnauthenticated ErrorCode = 5 // unknown or revoked agent
	ErrCodeForbidden       ErrorCode = 6 // e.g. data for another site
	ErrCodeBadToken        ErrorCode = 7 // enrollment token unknown, used or expired
	ErrCodeUnavailable     ErrorCode = 8 // aggregator cannot store now; retry later
	ErrCodeProtocol        ErrorCode = 9 // message out of order
	ErrCodeShutdown        ErrorCode = 10
	// ErrCodeSeqReuse rejects a batch whose (epoch, seq) the aggregator
	// already committed with different content: the agent's spool was rolled
	// back (VM snapshot revert, commits lost to a power failure) and is
	// reusing seqs. The agent keeps the batch, moves its spool to a new
	// epoch and sends it again; nothing is lost.
	ErrCodeSeqReuse ErrorCode = 11
	// ErrCodeGoingAway is not a failure: the aggregator is shutting down
	// or restarting on purpose. It has stopped reading the stream, has
	// committed and acknowledged every batch it read, and closes the stream
	// (an Error frame after the last Ack, then STOP_SENDING with this code)
	// and then the connection with it. Batches without an Ack were not
	// read; the agent keeps them, reconnects at once (to this aggregator
	// when it is back, or to another replica) and sends them again, as new.
	ErrCodeGoingAway ErrorCode = 12
)

// Error is sent before a stream or connection is closed for a reason the
// peer should log.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}
