// Package protocol is the wire protocol between a vmpulse agent and the
// aggregator: message types, framing, batch and sample encodings,
// compression and version negotiation. Both sides import it; it imports
// neither.
//
// # Transport
//
// An agent dials the aggregator over QUIC with TLS 1.3 and ALPN "vmpulse/1"
// (ALPN). Once enrolled, the agent presents its client certificate (mutual
// TLS): the certificate binds the agent ID and its site, and the aggregator
// refuses unknown or revoked certificates and data for another site.
//
// Every QUIC stream carries a sequence of frames:
//
//	+---------+------------------------+-------------------+
//	| type u8 | length u32 big-endian  | payload[length]   |
//	+---------+------------------------+-------------------+
//
// The type is a MsgType. A reader bounds length (MaxControlSize for JSON
// messages, MaxFrameSize for batches) before reading the payload; a frame
// that fails to decode closes its stream with the ErrorCode from CodeOf,
// preceded where possible by an Error frame. Nothing a peer sends can make a
// decoder panic or allocate beyond the Max* limits.
//
// # Enrollment
//
// An agent that has no certificate yet connects without a client
// certificate, opens one bidirectional stream and sends
//
//	agent → EnrollRequest{Token, CSR, Name, Version}
//	aggregator → EnrollResponse{AgentID, Site, Cert, CACert}  or  Error
//
// The token is single-use and expiring (ErrCodeBadToken otherwise). Having
// no certificate yet, the agent authenticates the aggregator by the CA hash
// pinned in the token (see FormatEnrollToken and VerifyPinnedCA). The
// aggregator then closes the connection; the agent reconnects with its new
// certificate. An unauthenticated connection may do nothing else.
//
// # Control stream
//
// The first stream an enrolled agent opens is the bidirectional control
// stream:
//
//	agent → Hello{AgentID, AgentVersion, MinVersion, MaxVersion, Epoch, Sources}
//	aggregator → Welcome{Version, AgentID, Site, HeartbeatInterval, MaxInFlight, ServerTime}
//	           or Error (e.g. ErrCodeUnsupported when no version is shared)
//	then, for the life of the connection, in any order:
//	agent → Heartbeat every Welcome.HeartbeatInterval
//	aggregator → Command (e.g. "resync_inventory")
//
// Welcome.Version is NegotiateVersion of the Hello: the highest version both
// sides speak. No data stream is opened before Welcome arrives.
//
// # Certificate renewal
//
// Agent certificates expire (the aggregator's agent_cert_lifetime). Before
// its certificate does, an enrolled agent renews it over its authenticated
// connection: it generates a new key pair, opens a bidirectional stream of
// its own and sends
//
//	agent → RenewRequest{CSR}
//	aggregator → RenewResponse{Cert, CACert}  or  Error
//
// then both sides close the stream. The aggregator signs the CSR for the
// agent ID and site of the certificate the connection was opened with (the
// CSR's own subject is ignored, as at enrollment); it refuses a revoked
// agent (ErrCodeUnauthenticated), a connection whose certificate has been
// superseded meanwhile (ErrCodeUnauthenticated) and a CSR that does not
// parse or whose signature is wrong (ErrCodeMalformed). The certificate the
// request came with stays valid, beside the new one, until the agent's
// next hello made with the new certificate, so that an agent that stops
// before saving the new certificate is not locked out: it reconnects with
// the old one and renews again. Having saved the new certificate, the agent
// closes the connection and reconnects with it. An agent whose certificate
// expired before it could renew must be enrolled again with a new token.
// Renewal may happen any time after the handshake; it does not wait for
// the control stream.
//
// # Data streams
//
// The agent opens one or more bidirectional data streams, typically "live"
// for fresh batches and "backfill" for the spooled backlog, so that live
// data never waits behind backlog. On each, the agent writes Batch frames
// back to back, up to Welcome.MaxInFlight unacknowledged ones (pipelined);
// the aggregator answers each with an Ack frame on the same stream, in the
// order the batches arrived, and only once the batch is durably committed
// (AckStored), known to be committed already (AckDuplicate) or refused for
// good (AckRejected with a Code). (Epoch, Seq) identifies a batch forever,
// so redelivery after a lost Ack is harmless. When the aggregator cannot
// store, it stops acking; the agent keeps spooling.
//
// A batch (Batch.AppendBinary has the byte layout) carries a kind, a codec,
// (Epoch, Seq), the span [First, Last] of its data timestamps and a payload:
//
//	KindSamples    AppendSamples binary layout, columnar and delta-encoded
//	KindInventory  JSON Inventory
//	KindEvents     JSON Events
//	KindGap        JSON Gap
//
// A Gap records data the agent knows is lost, so that the loss is
// queryable rather than silent. A spool gap names the batches the spool
// dropped (Epoch, FromSeq..ToSeq). A collection gap names samples the agent
// could not read from their source (Source, EntityKind, EntityIDs,
// Counters, Interval over [First, Last]; e.g. after an agent outage longer
// than vCenter keeps the samples, Reason "beyond vCenter retention"); it
// drops no batch, so its seq fields are 0 and the aggregator keys the
// record by the (Epoch, Seq) of the batch that carries it.
//
// compressed with the batch codec (CodecZstd normally). Decompression is
// bounded by MaxDecodedPayload and a samples payload by MaxValuesPerBatch
// cells. NewBatch builds batches; Batch.Samples, Inventory, Events and Gap
// read them.
//
// # Liveness
//
// The aggregator renews an agent's liveness lease at its Hello and at each
// Heartbeat, for three Welcome.HeartbeatInterval; an agent that sends
// nothing for that long counts as disconnected, whatever became of the
// connection or the aggregator that held it.
//
// # Going away
//
// An aggregator that shuts down or restarts on purpose drains its
// connections rather than dropping them. It accepts no new connection or
// stream; it writes an Error with ErrCodeGoingAway on each control stream;
// on each data stream it stops reading (STOP_SENDING with
// ErrCodeGoingAway: what it had not read is discarded), commits the
// batches it had read, writes their Acks, then an Error with
// ErrCodeGoingAway, and ends the stream. It waits for the agent to close
// the connection, and closes it itself with ErrCodeGoingAway as the
// application error code after a grace period; the whole drain is bounded
// by a timeout. The agent, told ErrCodeGoingAway on any stream, stops
// sending, reads the Acks still due on its data streams up to that Error,
// closes the connection, and reconnects at once. Every batch without an Ack
// is sent again and is new to the aggregator: a planned restart causes no
// duplicate. ErrCodeGoingAway is not an error and needs no new Version: a
// peer that predates it sees an ordinary error and resends what was not
// acknowledged, which the ledger makes harmless.
//
// # Versions
//
// Version is the protocol version this package speaks. History:
//
//	1  initial: the frames, batch layout and samples format 1 described here.
//	   Later, without a new version (an aggregator that predates them refuses
//	   the stream with ErrCodeUnsupported, and the agent keeps its current
//	   certificate): MsgRenewRequest (10) and MsgRenewResponse (11), see
//	   Certificate renewal. Gap gained the optional collection-gap fields
//	   source, entity_kind, entity_ids, counters and interval; a reader
//	   that ignores them sees a gap of the whole site over [First, Last].
//	   Heartbeat gained spool_max_bytes and vcenters (each endpoint's
//	   reachability); Welcome and Command gained collection (settings the
//	   aggregator pushes, Command name apply_collection). Older peers ignore
//	   them: an older agent keeps its own collection configuration.
//
// A change that an older peer would misread needs a new Version; message
// types, batch kinds, codecs, column encodings and ErrorCode values are
// never renumbered. JSON messages may gain fields without a new version:
// readers ignore unknown fields.
//
// # Concurrency
//
// Every function in this package is safe for concurrent use. Messages are
// plain values owned by their caller; a *Samples from DecodeSamples shares
// backing arrays between its series (see DecodeSamples).
package protocol
