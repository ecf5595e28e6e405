package redisstore

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// This file keeps go-redis from running a script call twice. A call whose
// answer is late or lost (a read timeout, a connection reset) may have run
// in Redis, and every script but fetch and info writes: a publish script
// sent again publishes again, a subscribe script counts its subscriber
// again. The client is built without retries (Options.universal), but a
// Cluster client retries a call that failed on its own, on the same node
// and then another, up to its redirect count; on a Cluster every node's
// client gets runOnce, and publications are not pipelined (go-redis
// retries a Cluster pipeline's calls inside the pipeline).

// runOnce is a go-redis hook for a Cluster's node clients: a script call
// that failed other than with Redis's own error reply fails with
// errMaybeRan, which go-redis does not retry. Redis's replies (MOVED, ASK,
// TRYAGAIN, CLUSTERDOWN, LOADING: the script did not run) pass, and are
// redirected or retried as before.
type runOnce struct{}

var _ redis.Hook = runOnce{}

func (runOnce) DialHook(next redis.DialHook) redis.DialHook { return next }

func (runOnce) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (runOnce) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil || !strings.HasPrefix(cmd.Name(), "eval") {
			return err
		}
		if _, reply := err.(redis.Error); reply {
			return err
		}
		return &errMaybeRan{err.Error()}
	}
}

// errMaybeRan is a script call's failure after it was sent: it may have
// run. It wraps nothing, so that go-redis, which looks into errors for the
// ones it retries, does not retry it.
type errMaybeRan struct{ msg string }

func (e *errMaybeRan) Error() string { return e.msg }

// onceOnCluster gives a Cluster client's nodes runOnce.
func onceOnCluster(client redis.UniversalClient) {
	if cc, ok := client.(*redis.ClusterClient); ok {
		cc.OnNewNode(func(node *redis.Client) { node.AddHook(runOnce{}) })
	}
}
