package ingest

import "github.com/vmpulse/vmpulse/protocol"

// EventsPublisher receives the events of every newly committed events
// batch (not of redeliveries, which were published when first
// committed), after COMMIT and before the ack: the alert engine mirrors
// vCenter's alarms from them without reading them back from the table.
// Like Publisher it is called on the path that acknowledges batches, so
// it must not block; ev is shared and must not be modified.
type EventsPublisher interface {
	PublishEvents(site, agentID string, ev *protocol.Events)
}

// publishCommitted hands a newly committed batch to the consumers of its
// kind: samples to Config.Publisher, events to Config.Events.
func (s *Server) publishCommitted(ac *agentConn, d *decoded) {
	if d.samples != nil && s.cfg.Publisher != nil {
		s.cfg.Publisher.PublishSamples(ac.site, ac.agentID, d.samples)
	}
	if d.events != nil && s.cfg.Events != nil {
		s.cfg.Events.PublishEvents(ac.site, ac.agentID, d.events)
	}
}
