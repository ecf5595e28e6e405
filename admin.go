package caddypush

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddypush/caddy-push/pushstore"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the admin.api.push module: it serves the channel store on
// Caddy's admin endpoint. It finds the store when a request arrives and
// never creates the push app.
//
//	GET    /push/stats                  store size and lifetime counters
//	GET    /push/channels               channels: ?group= &prefix= &after= &limit=
//	GET    /push/channels/{id}?group=   one channel (404 if missing)
//	POST   /push/channels/{id}?group=   publish the body, as push_publisher does
//	DELETE /push/channels/{id}?group=   delete it; its waiters get 410
//
// {id} is path-escaped, so ids with "/" and other reserved characters work
// (a/b is a%2Fb).
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.push",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes of the push store.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/push/stats", Handler: caddy.AdminHandlerFunc(a.serveStats)},
		{Pattern: "/push/channels", Handler: caddy.AdminHandlerFunc(a.serveChannels)},
		{Pattern: "/push/channels/", Handler: caddy.AdminHandlerFunc(a.serveChannel)},
	}
}

// runningPushStore returns the store of the running config, without
// creating one, and its inspection.
func runningPushStore() (pushstore.Store, pushstore.Inspector, error) {
	ref := runningStore.Load()
	if ref == nil {
		return nil, nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no push store: the push app is not running")}
	}
	insp, ok := ref.Store.(pushstore.Inspector)
	if !ok {
		return nil, nil, caddy.APIError{HTTPStatus: http.StatusNotImplemented, Err: fmt.Errorf("the push store cannot be inspected")}
	}
	return ref.Store, insp, nil
}

func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// adminStats is the body of GET /push/stats.
type adminStats struct {
	pushstore.Stats
	pushstore.Counters
	Publishes map[string]uint64 `json:"publishes_by_status"`
	Refusals  map[string]uint64 `json:"refusals_by_status"`
	// The publication bodies being received, their buffers' bytes and the
	// cap on those (max_body_memory).
	ReceivingBodies int64 `json:"receiving_bodies"`
	BodyBytes       int64 `json:"body_bytes"`
	MaxBodyMemory   int64 `json:"max_body_memory"`
	// The subscribers this process serves now, by transport (waiting
	// long-polls and open streams).
	Subscribers map[string]int64 `json:"subscribers_by_transport"`
	// The WebSockets open on publisher locations, publishing.
	PublishingWebSockets int `json:"publishing_websockets"`
}

// subscribersByTransport returns the open subscribers of each transport.
func subscribersByTransport() map[string]int64 {
	m := make(map[string]int64, numTransports)
	for t := range numTransports {
		m[t.String()] = streams[t].Load()
	}
	return m
}

func (AdminAPI) serveStats(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, "GET")
	}
	store, insp, err := runningPushStore()
	if err != nil {
		return err
	}
	st, err := insp.Stats()
	if err != nil {
		return adminStoreError(err)
	}
	return writeJSON(w, adminStats{st, store.Counters(), byStatus(&counters.publishes), byStatus(&counters.refusals),
		bodies.receiving.Load(), bodies.used.Load(), bodies.max.Load(), subscribersByTransport(), publishingSockets.len()})
}

// adminChannel is one channel in admin API answers.
type adminChannel struct {
	Group string `json:"group"`
	ID    string `json:"id"`
	pushstore.ChannelStat
}

func toAdmin(st pushstore.ChannelStat) adminChannel {
	group, id, _ := strings.Cut(st.Key, "/")
	st.Key = ""
	return adminChannel{Group: group, ID: id, ChannelStat: st}
}

// maxAdminPage is the most channels one listing returns.
const maxAdminPage = 1000

func (AdminAPI) serveChannels(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, "GET")
	}
	_, insp, err := runningPushStore()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxAdminPage {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest,
				Err: fmt.Errorf("limit must be a number from 1 to %d, got %q", maxAdminPage, v)}
		}
	}
	group, err := adminGroup(q)
	if err != nil {
		return err
	}
	after := ""
	if v := q.Get("after"); v != "" {
		after = group + "/" + v
	}
	page, next, err := insp.Channels(group+"/"+q.Get("prefix"), after, limit)
	if err != nil {
		return adminStoreError(err)
	}
	out := struct {
		Channels []adminChannel `json:"channels"`
		Next     string         `json:"next,omitempty"`
	}{Channels: make([]adminChannel, 0, len(page))}
	for _, st := range page {
		out.Channels = append(out.Channels, toAdmin(st))
	}
	if next != "" {
		// The last channel looked at, which may be gone (as may every
		// channel of the page: it is then empty, with a next).
		out.Next = strings.TrimPrefix(next, group+"/")
	}
	return writeJSON(w, out)
}

// adminGroup is a request's ?group=, which, as a location's
// channel_group, may not contain a '/' (it would be another spelling of a
// group's id with a '/').
func adminGroup(q url.Values) (string, error) {
	g := q.Get("group")
	if strings.Contains(g, "/") {
		return "", caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("group %q must not contain '/'", g)}
	}
	return g, nil
}

func (AdminAPI) serveChannel(w http.ResponseWriter, r *http.Request) error {
	store, insp, err := runningPushStore()
	if err != nil {
		return err
	}
	id, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/push/channels/"))
	if err != nil || id == "" || len(id) > DefaultMaxChannelIDLength {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest,
			Err: fmt.Errorf("want /push/channels/{id} with a path-escaped id of 1 to %d bytes", DefaultMaxChannelIDLength)}
	}
	group, err := adminGroup(r.URL.Query())
	if err != nil {
		return err
	}
	key := group + "/" + id
	switch r.Method {
	case http.MethodGet:
		st, err := insp.Channel(key)
		if err != nil {
			return adminStoreError(err)
		}
		return writeJSON(w, toAdmin(st))
	case http.MethodPost:
		opts, err := insp.LastPublishOptions(key, defaultPublishOptions())
		if err != nil {
			return adminStoreError(err)
		}
		status, err := publishRequest(w, r, store, key, bodyLimits{DefaultMaxMessageSize, DefaultBodyTimeout}, opts, caddy.Log().Named("admin.api.push"))
		if err != nil {
			return caddy.APIError{HTTPStatus: status, Err: err}
		}
		return nil
	case http.MethodDelete:
		info, err := store.Delete(key)
		if err != nil {
			return adminStoreError(err)
		}
		writeInfo(w, r, http.StatusOK, info)
		return nil
	}
	return methodNotAllowed(w, "GET, POST, DELETE")
}

// adminStoreError turns a store error into the admin API's answer: 404 for
// a missing channel, 503 when the store's backend is down.
func adminStoreError(err error) error {
	if errors.Is(err, pushstore.ErrChannelNotFound) {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no such channel")}
	}
	return caddy.APIError{HTTPStatus: refusalStatus(err), Err: err}
}

// Interface guards
var _ caddy.AdminRouter = AdminAPI{}
