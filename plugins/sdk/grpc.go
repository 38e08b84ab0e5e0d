package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmpulse/vmpulse/plugins/sdk/pluginpb"
)

// ErrUnavailable is wrapped by the errors of calls that did not reach the
// plugin or lost it midway: the process exited or its connection broke. The
// host restarts the plugin and retries such a call once.
var ErrUnavailable = errors.New("plugin unavailable")

// PluginError is an error the plugin's own code returned from a call.
type PluginError struct {
	Method  string
	Message string
}

func (e *PluginError) Error() string { return e.Method + ": " + e.Message }

// toStatus turns an implementation's error into a gRPC status, keeping
// the context errors recognisable on the other side.
func toStatus(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// fromStatus is the inverse of toStatus on the host side.
func fromStatus(method string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", method, err)
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %s: %w", method, st.Message(), context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("%s: %s: %w", method, st.Message(), context.Canceled)
	case codes.Unavailable:
		return fmt.Errorf("%s: %s: %w", method, st.Message(), ErrUnavailable)
	}
	return &PluginError{Method: method, Message: st.Message()}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func fromTS(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func dur(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func fromDur(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

// ---- Plugin.Info

type infoPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	info Info
}

func (p *infoPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterPluginServer(s, &infoServer{info: p.info})
	return nil
}

func (p *infoPlugin) GRPCClient(done context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &InfoClient{c: pluginpb.NewPluginClient(c), done: done}, nil
}

type infoServer struct {
	pluginpb.UnimplementedPluginServer
	info Info
}

func (s *infoServer) Info(context.Context, *pluginpb.InfoRequest) (*pluginpb.InfoResponse, error) {
	r := &pluginpb.InfoResponse{
		Name:            s.info.Name,
		Version:         s.info.Version,
		Description:     s.info.Description,
		ProtocolVersion: uint32(s.info.ProtocolVersion),
	}
	for _, k := range s.info.Kinds {
		r.Kinds = append(r.Kinds, string(k))
	}
	return r, nil
}

// InfoClient asks a plugin who it is. The host dispenses it under go-plugin's
// "info" name.
type InfoClient struct {
	c    pluginpb.PluginClient
	done context.Context
}

// Exited is closed when go-plugin sees the plugin's process exit, which
// lets a host restart a crashed plugin without waiting for a call to fail.
func (c *InfoClient) Exited() <-chan struct{} { return c.done.Done() }

// Info returns the plugin's identity; host names the host for the plugin's
// logs ("vmpulse-aggregator 1.4.0").
func (c *InfoClient) Info(ctx context.Context, host string) (Info, error) {
	r, err := c.c.Info(ctx, &pluginpb.InfoRequest{ProtocolVersion: ProtocolVersion, Host: host})
	if err != nil {
		return Info{}, fromStatus("info", err)
	}
	info := Info{
		Name:            r.GetName(),
		Version:         r.GetVersion(),
		Description:     r.GetDescription(),
		ProtocolVersion: int(r.GetProtocolVersion()),
	}
	for _, k := range r.GetKinds() {
		info.Kinds = append(info.Kinds, Kind(k))
	}
	return info, nil
}

// ---- Notifier

// NotifierPlugin is go-plugin's glue for a Notifier: Impl on the plugin
// side, nothing on the host side.
type NotifierPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Notifier
}

// GRPCServer registers the Notifier service when Impl is set.
func (p *NotifierPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl != nil {
		pluginpb.RegisterNotifierServer(s, &notifierServer{impl: p.Impl})
	}
	return nil
}

// GRPCClient returns a Notifier that calls the plugin.
func (p *NotifierPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &notifierClient{c: pluginpb.NewNotifierClient(c)}, nil
}

type notifierServer struct {
	pluginpb.UnimplementedNotifierServer
	impl Notifier
}

func (s *notifierServer) Validate(ctx context.Context, req *pluginpb.ValidateRequest) (*pluginpb.ValidateResponse, error) {
	err := s.impl.Validate(ctx, req.GetConfig())
	var verr *ValidationError
	switch {
	case err == nil:
		return &pluginpb.ValidateResponse{}, nil
	case errors.As(err, &verr):
		r := &pluginpb.ValidateResponse{}
		for _, f := range verr.Fields {
			r.Errors = append(r.Errors, &pluginpb.FieldError{Field: f.Field, Message: f.Message})
		}
		return r, nil
	}
	return nil, toStatus(err)
}

func (s *notifierServer) Notify(ctx context.Context, req *pluginpb.NotifyRequest) (*pluginpb.NotifyResponse, error) {
	res, err := s.impl.Notify(ctx, notificationFromPB(req.GetNotification()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginpb.NotifyResponse{
		Outcome:    pluginpb.Outcome(res.Outcome),
		RetryAfter: dur(res.RetryAfter),
		Code:       res.Code,
		Message:    res.Message,
		ProviderId: res.ProviderID,
	}, nil
}

type notifierClient struct {
	c pluginpb.NotifierClient
}

func (c *notifierClient) Validate(ctx context.Context, config json.RawMessage) error {
	r, err := c.c.Validate(ctx, &pluginpb.ValidateRequest{Config: config})
	if err != nil {
		return fromStatus("validate", err)
	}
	if len(r.GetErrors()) == 0 {
		return nil
	}
	verr := &ValidationError{}
	for _, f := range r.GetErrors() {
		verr.Fields = append(verr.Fields, FieldError{Field: f.GetField(), Message: f.GetMessage()})
	}
	return verr
}

func (c *notifierClient) Notify(ctx context.Context, n Notification) (Result, error) {
	r, err := c.c.Notify(ctx, &pluginpb.NotifyRequest{Notification: notificationToPB(n)})
	if err != nil {
		return Result{}, fromStatus("notify", err)
	}
	res := Result{
		Outcome:    Outcome(r.GetOutcome()),
		RetryAfter: fromDur(r.GetRetryAfter()),
		Code:       r.GetCode(),
		Message:    r.GetMessage(),
		ProviderID: r.GetProviderId(),
	}
	if res.Outcome < Delivered || res.Outcome > Permanent {
		return Result{}, &PluginError{Method: "notify", Message: fmt.Sprintf("plugin answered outcome %d", r.GetOutcome())}
	}
	return res, nil
}

func notificationToPB(n Notification) *pluginpb.Notification {
	p := &pluginpb.Notification{
		Id:         n.ID,
		Channel:    n.Channel,
		Config:     n.Config,
		Locale:     n.Locale,
		Digest:     n.Digest,
		Attempt:    uint32(max(n.Attempt, 0)),
		CreatedAt:  ts(n.CreatedAt),
		Omitted:    uint32(max(n.Omitted, 0)),
		ConsoleUrl: n.ConsoleURL,
		Alerts:     make([]*pluginpb.Alert, len(n.Alerts)),
	}
	for i, a := range n.Alerts {
		p.Alerts[i] = &pluginpb.Alert{
			Id:          a.ID,
			Rule:        a.Rule,
			Severity:    a.Severity,
			State:       a.State,
			Entity:      &pluginpb.Entity{Kind: a.Entity.Kind, Id: a.Entity.ID, Name: a.Entity.Name},
			Site:        a.Site,
			Summary:     a.Summary,
			Description: a.Description,
			Value:       a.Value,
			Threshold:   a.Threshold,
			Unit:        a.Unit,
			StartsAt:    ts(a.StartsAt),
			EndsAt:      ts(a.EndsAt),
			Labels:      a.Labels,
			Url:         a.URL,
		}
	}
	return p
}

func notificationFromPB(p *pluginpb.Notification) Notification {
	n := Notification{
		ID:         p.GetId(),
		Channel:    p.GetChannel(),
		Config:     p.GetConfig(),
		Locale:     p.GetLocale(),
		Digest:     p.GetDigest(),
		Attempt:    int(p.GetAttempt()),
		CreatedAt:  fromTS(p.GetCreatedAt()),
		Omitted:    int(p.GetOmitted()),
		ConsoleURL: p.GetConsoleUrl(),
		Alerts:     make([]Alert, len(p.GetAlerts())),
	}
	for i, a := range p.GetAlerts() {
		n.Alerts[i] = Alert{
			ID:          a.GetId(),
			Rule:        a.GetRule(),
			Severity:    a.GetSeverity(),
			State:       a.GetState(),
			Entity:      Entity{Kind: a.GetEntity().GetKind(), ID: a.GetEntity().GetId(), Name: a.GetEntity().GetName()},
			Site:        a.GetSite(),
			Summary:     a.GetSummary(),
			Description: a.GetDescription(),
			Value:       a.GetValue(),
			Threshold:   a.GetThreshold(),
			Unit:        a.GetUnit(),
			StartsAt:    fromTS(a.GetStartsAt()),
			EndsAt:      fromTS(a.GetEndsAt()),
			Labels:      a.GetLabels(),
			URL:         a.GetUrl(),
		}
	}
	return n
}

// ---- Collector

// CollectorPlugin is go-plugin's glue for a Collector: Impl on the plugin
// side, nothing on the host side.
type CollectorPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Collector
}

// GRPCServer registers the Collector service when Impl is set.
func (p *CollectorPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl != nil {
		pluginpb.RegisterCollectorServer(s, &collectorServer{impl: p.Impl})
	}
	return nil
}

// GRPCClient returns a Collector that calls the plugin.
func (p *CollectorPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &collectorClient{c: pluginpb.NewCollectorClient(c)}, nil
}

type collectorServer struct {
	pluginpb.UnimplementedCollectorServer
	impl Collector
}

func (s *collectorServer) Describe(ctx context.Context, _ *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	d, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	r := &pluginpb.DescribeResponse{Interval: dur(d.Interval)}
	for _, x := range d.Series {
		r.Series = append(r.Series, &pluginpb.Series{
			Name: x.Name, Unit: x.Unit, Description: x.Description, EntityKind: x.EntityKind, Type: x.Type,
		})
	}
	return r, nil
}

func (s *collectorServer) Collect(ctx context.Context, req *pluginpb.CollectRequest) (*pluginpb.CollectResponse, error) {
	samples, err := s.impl.Collect(ctx, fromTS(req.GetSince()))
	if err != nil {
		return nil, toStatus(err)
	}
	r := &pluginpb.CollectResponse{Samples: make([]*pluginpb.Sample, len(samples))}
	for i, x := range samples {
		r.Samples[i] = &pluginpb.Sample{
			Series: x.Series, EntityKind: x.Entity.Kind, EntityId: x.Entity.ID,
			Labels: x.Labels, Time: ts(x.Time), Value: x.Value,
		}
	}
	return r, nil
}

type collectorClient struct {
	c pluginpb.CollectorClient
}

func (c *collectorClient) Describe(ctx context.Context) (Description, error) {
	r, err := c.c.Describe(ctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return Description{}, fromStatus("describe", err)
	}
	d := Description{Interval: fromDur(r.GetInterval())}
	for _, x := range r.GetSeries() {
		d.Series = append(d.Series, Series{
			Name: x.GetName(), Unit: x.GetUnit(), Description: x.GetDescription(),
			EntityKind: x.GetEntityKind(), Type: x.GetType(),
		})
	}
	return d, nil
}

func (c *collectorClient) Collect(ctx context.Context, since time.Time) ([]Sample, error) {
	r, err := c.c.Collect(ctx, &pluginpb.CollectRequest{Since: ts(since)})
	if err != nil {
		return nil, fromStatus("collect", err)
	}
	out := make([]Sample, len(r.GetSamples()))
	for i, x := range r.GetSamples() {
		out[i] = Sample{
			Series: x.GetSeries(),
			Entity: Entity{Kind: x.GetEntityKind(), ID: x.GetEntityId()},
			Labels: x.GetLabels(),
			Time:   fromTS(x.GetTime()),
			Value:  x.GetValue(),
		}
	}
	return out, nil
}
